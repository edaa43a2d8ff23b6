#!/usr/bin/env bash
# with-sentinel.sh CMD [ARGS...]: runs one test with a Redis primary, a replica and three
# sentinels of its own (sentinel-fixture.sh, on free loopback ports), named to it by
# JITRCA_TEST_SENTINEL_DIR (its env file), and stops them afterwards. The exit status is the
# command's.
set -uo pipefail
dir=$(mktemp -d "${TMPDIR:-/tmp}/jitrca-sentinel-XXXXXX")
"$(dirname "$0")/sentinel-fixture.sh" start "$dir" || {
  "$(dirname "$0")/sentinel-fixture.sh" stop "$dir"; rm -rf "$dir"; exit 1; }
export JITRCA_TEST_SENTINEL_DIR="$dir"
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
rc=$?
if kill -0 "$child" 2>/dev/null; then wait "$child"; rc=$?; fi
"$(dirname "$0")/sentinel-fixture.sh" stop "$dir"
rm -rf "$dir"
exit "$rc"
