#!/usr/bin/env bash
# The jitrd unit's hardening: `systemd-analyze security --offline=true UNIT` must rate its
# exposure 2.0 or below (0 is the most restricted, 10 the least). Usage: unit_security.sh [UNIT]
# (default deploy/systemd/jitrd.service of the source tree).
set -euo pipefail
src=${JITRCA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
unit=${1:-$src/deploy/systemd/jitrd.service}
max=2.0
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is not installed" >&2; exit 77; }
if ! out=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1); then
  if grep -q "unrecognized option" <<<"$out"; then
    echo "SKIP: this systemd-analyze has no --offline (systemd < 250)" >&2; exit 77
  fi
  # it exits non-zero above --threshold only; any other failure is ours
  echo "$out" >&2; exit 1
fi
level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
[ -n "$level" ] || { echo "no exposure level in systemd-analyze's output:" >&2; echo "$out" >&2; exit 1; }
if awk -v l="$level" -v m="$max" 'BEGIN { exit !(l <= m) }'; then
  echo "unit: $(basename "$unit") exposure $level (at most $max)"
else
  grep "✗" <<<"$out" >&2 || true
  echo "unit: $(basename "$unit") exposure $level, above $max" >&2
  exit 1
fi
