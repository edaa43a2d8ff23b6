#!/usr/bin/env bash
# A private SoftHSM2 token store for one test run, so nothing touches /var/lib/softhsm.
#   softhsm-fixture.sh init DIR LABEL SO_PIN PIN   creates DIR/softhsm2.conf and DIR/tokens/,
#                                                  initialises token LABEL in the first free slot
#                                                  and prints the conf path (for SOFTHSM2_CONF)
#   softhsm-fixture.sh add DIR LABEL SO_PIN PIN    initialises one more token in the same store
set -euo pipefail
usage() { echo "usage: $0 init|add DIR LABEL SO_PIN PIN" >&2; exit 2; }
[ $# -eq 5 ] || usage
cmd=$1 dir=$2 label=$3 sopin=$4 pin=$5
conf="$dir/softhsm2.conf"
case "$cmd" in
init)
  rm -rf "$dir/tokens"
  mkdir -p "$dir/tokens"
  chmod 700 "$dir" "$dir/tokens"
  cat >"$conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  ;;
add) [ -f "$conf" ] || { echo "$conf: run init first" >&2; exit 1; } ;;
*) usage ;;
esac
SOFTHSM2_CONF="$conf" softhsm2-util --init-token --free --label "$label" \
  --so-pin "$sopin" --pin "$pin" >/dev/null
echo "$conf"
