# Shared helpers of the shell integration tests. Each test sources this file: it gets a private
# temporary directory ($T), a data dir and config in it, a clean Redis database, and assertions
# that print what was expected and what happened.
set -euo pipefail

: "${JITRCTL:?JITRCTL must name the jitrctl binary}"
: "${GENCSR:?GENCSR must name the gencsr binary}"
: "${JITRCA_TEST_REDIS_URL:?run under ctest (tests/harness/with-redis.sh starts a Redis)}"
: "${JITRCA_SOURCE_DIR:?}"

T=$(mktemp -d "${TMPDIR:-/tmp}/jitrca-it-XXXXXX")
cleanup() {
  local rc=$?
  if [ "${TT_KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then
    echo "test files kept in $T" >&2
  else
    rm -rf "$T"
  fi
}
trap cleanup EXIT
# a command that stops the test (set -e) says which one: otherwise a failed curl in an assignment
# ends the test without a word
trap 'rc_=$?; echo "FAIL: $(basename "$0") line $LINENO: \"$BASH_COMMAND\" exited $rc_; the test stops here" >&2' ERR

export JITRCA_DATA_DIR=$T/data
export JITRCA_REDIS_URL=$JITRCA_TEST_REDIS_URL
export JITRCA_KEY_PASSPHRASE='correct horse battery staple'
unset JITRCA_CONFIG
REDIS_SOCK=${JITRCA_TEST_REDIS_URL#unix://}
rcli() { redis-cli -s "$REDIS_SOCK" "$@"; }
rcli FLUSHALL >/dev/null

PASSED=0
FAILED=0
fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); }
pass() { PASSED=$((PASSED + 1)); }

# ok CMD...: the command must succeed.
ok() {
  if ! "$@" >"$T/out" 2>"$T/err"; then
    fail "expected success: $*"; cat "$T/err" >&2; return 0
  fi
  pass
}

# expect_fail EXIT "message part" CMD...: the command must exit with EXIT and say the message.
expect_fail() {
  local want=$1 msg=$2; shift 2
  local rc=0
  "$@" >"$T/out" 2>"$T/err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "expected exit $want, got $rc: $*"; cat "$T/err" >&2; return 0
  fi
  if ! grep -qF -- "$msg" "$T/err"; then
    fail "expected message '$msg' from: $*"; echo "got:" >&2; cat "$T/err" >&2; return 0
  fi
  pass
}

audit_log() { echo "$JITRCA_DATA_DIR/audit/audit.log"; }
# count_records TYPE: records of that type in the audit log
count_records() {
  local f; f=$(audit_log)
  if [ -f "$f" ]; then grep -c "\"type\":\"$1\"" "$f" || true; else echo 0; fi
}

# check_eq WHAT GOT WANT
# index_serial FILE: a certificate's serial as the index keys it (cert:<serial>, docs/redis.md):
# lower-case hex of the INTEGER's content octets, with the 00 sign octet openssl's -serial leaves
# out when the first byte is 0x80 or more (one serial in 256 of ours)
index_serial() {
  local s
  s=$(openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr A-F a-f)
  case $s in [89a-f]*) s=00$s ;; esac
  echo "$s"
}
check_eq() {
  if [ "$2" != "$3" ]; then fail "$1: got '$2', want '$3'"; else pass; fi
}

# verify_cert CERT CHAIN: openssl, GnuTLS certtool, purpose sslclient
verify_cert() {
  local cert=$1 chain=$2
  if openssl verify -purpose sslclient -CAfile "$chain" "$cert" >"$T/v.out" 2>&1; then pass; else
    fail "openssl verify $cert"; cat "$T/v.out" >&2; fi
  if certtool --verify --load-ca-certificate "$chain" --infile "$cert" >"$T/v.out" 2>&1 &&
     grep -q "Chain verification output: Verified" "$T/v.out"; then pass; else
    fail "certtool --verify $cert"; cat "$T/v.out" >&2; fi
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
