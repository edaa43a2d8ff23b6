#!/usr/bin/env bash
# The audit log is the source of truth: reindex after FLUSHALL gives the same index; tampering
# (edit, delete, reorder, truncate) is found and named by 'audit verify'; certificates signed on
# an offline CA host are imported (chain checked first) and then found in the index.
source "$(dirname "$0")/lib.sh"

dump_index() {
  local k
  for k in $(rcli --scan --pattern 'jitrca:*' | grep -v ':serial:\|:index:ready' | sort); do
    echo "== $k $(rcli TYPE "$k")"
    case $(rcli TYPE "$k") in
      hash) rcli HGETALL "$k" | paste - - | sort ;;
      set) rcli SMEMBERS "$k" | sort ;;
      string) rcli GET "$k" ;;
    esac
  done
}

ok "$JITRCTL" ca init online --subject "/CN=Online CA"
"$GENCSR" --count 40 --cn-prefix a- --out "$T/a.jsonl"
ok "$JITRCTL" sign-batch --in "$T/a.jsonl" --out "$T/a.out.jsonl" --quiet
ok "$JITRCTL" reindex   # sets audit:head too
dump_index >"$T/before"
check_eq "certificates in the index" "$(rcli --scan --pattern 'jitrca:cert:*' | wc -l)" 40
rcli FLUSHALL >/dev/null
ok "$JITRCTL" reindex
grep -q "reindexed 40 certificates" "$T/out" && pass || fail "reindex output: $(cat "$T/out")"
dump_index >"$T/after"
if diff -u "$T/before" "$T/after" >"$T/diff"; then pass; else fail "index differs after reindex"; head -40 "$T/diff" >&2; fi
check_eq "serial reservations rebuilt" "$(rcli --scan --pattern 'jitrca:serial:*' | wc -l)" 40
# reindex twice gives the same index
ok "$JITRCTL" reindex
dump_index >"$T/again"
cmp -s "$T/before" "$T/again" && pass || fail "second reindex differs"

# tampering
log=$(audit_log)
cp "$log" "$T/pristine"; cp "$log.head" "$T/pristine.head" 2>/dev/null || true
restore() { cp "$T/pristine" "$log"; cp "$T/pristine.head" "$log.head" 2>/dev/null || true; }
ok "$JITRCTL" audit verify
sed -i '10s/"cn":"a-0000[0-9][0-9]"/"cn":"mallory"/' "$log"
expect_fail 2 "line 10: edited" "$JITRCTL" audit verify
restore; sed -i '12d' "$log"
expect_fail 2 "line 12" "$JITRCTL" audit verify
restore; awk 'NR==14{l=$0;next} NR==15{print;print l;next}1' "$T/pristine" >"$log"
expect_fail 2 "line 15: out of order (seq 14 after 15)" "$JITRCTL" audit verify
restore; truncate -s -30 "$log"
expect_fail 2 "truncated" "$JITRCTL" audit verify
restore; head -n -3 "$T/pristine" >"$log"
expect_fail 2 "head file" "$JITRCTL" audit verify
restore
ok "$JITRCTL" audit verify
# a reindex from a damaged log stops and says so
sed -i '10s/"cn":"a-0000[0-9][0-9]"/"cn":"mallory"/' "$log"
expect_fail 2 "line 10" "$JITRCTL" reindex
restore

# an offline CA host: the same CA (copied with its encrypted key), its own audit log and Redis db
mkdir -p "$T/offline/ca"
cp -a "$JITRCA_DATA_DIR/ca/online" "$T/offline/ca/online"
"$GENCSR" --count 25 --cn-prefix off- --out "$T/off.jsonl"
JITRCA_DATA_DIR=$T/offline JITRCA_REDIS_URL="$JITRCA_TEST_REDIS_URL?db=5" \
  ok "$JITRCTL" sign-batch --in "$T/off.jsonl" --out "$T/off.out.jsonl" --quiet
offlog=$T/offline/audit/audit.log
id=$(head -1 "$T/off.out.jsonl" | jq -r .certificateId)
expect_fail 4 "no certificate with fingerprint" "$JITRCTL" cert show "$id"
# a tampered file is refused whole
sed '3s/"cn":"off-[0-9]*"/"cn":"evil"/' "$offlog" >"$T/tampered.log"
expect_fail 2 "refusing to import" "$JITRCTL" audit import "$T/tampered.log"
ok "$JITRCTL" audit import "$offlog"
grep -q "imported 25 certificates" "$T/out" && pass || fail "import output: $(cat "$T/out")"
ok "$JITRCTL" --json cert show "$id"
check_eq "imported certificate indexed" "$(jq -r .cn "$T/out")" "off-000001"
ok "$JITRCTL" audit import "$offlog"
grep -q "imported 0 certificates.*25 already present" "$T/out" && pass || fail "re-import: $(cat "$T/out")"
# certificates of a CA this store does not know are refused
mkdir -p "$T/stranger"
JITRCA_DATA_DIR=$T/stranger JITRCA_REDIS_URL="$JITRCA_TEST_REDIS_URL?db=6" \
  ok "$JITRCTL" ca init stranger
JITRCA_DATA_DIR=$T/stranger JITRCA_REDIS_URL="$JITRCA_TEST_REDIS_URL?db=6" \
  ok "$JITRCTL" sign-batch --in "$T/off.jsonl" --out "$T/s.out.jsonl" --quiet
expect_fail 3 "not signed by any CA of this store" "$JITRCTL" audit import "$T/stranger/audit/audit.log"
ok "$JITRCTL" audit verify
# the imported records survive a reindex
rcli FLUSHDB >/dev/null
ok "$JITRCTL" reindex
ok "$JITRCTL" --json cert show "$id"
finish
