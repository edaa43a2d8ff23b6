#!/usr/bin/env bash
# with-redis.sh CMD [ARGS...]: runs one test with a redis-server of its own (unix socket in a fresh
# temporary directory, no persistence, no TCP listener), named to it by JITRCA_TEST_REDIS_URL, and
# stops that server afterwards. Every test that needs Redis gets its own, so ctest runs them in
# parallel: no test can see another's keys, and a test that restarts or flushes its Redis
# disturbs nobody else. The exit status is the command's.
set -uo pipefail
dir=$(mktemp -d "${TMPDIR:-/tmp}/jitrca-redis-XXXXXX")
"$(dirname "$0")/redis-fixture.sh" start "$dir" || { rm -rf "$dir"; exit 1; }
export JITRCA_TEST_REDIS_URL="unix://$dir/redis.sock"
"$@" &
child=$!
# ctest's timeout sends SIGTERM to this script: pass it on, then clean up
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
rc=$?
if kill -0 "$child" 2>/dev/null; then wait "$child"; rc=$?; fi
"$(dirname "$0")/redis-fixture.sh" stop "$dir"
rm -rf "$dir"
exit "$rc"
