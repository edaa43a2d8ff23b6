#!/usr/bin/env bash
# jitrctl aws register-batch across a Redis loss, and --status (run under tests/sim/run_sim.py,
# signature checks on; stand-in quotas 100/s, jitrd's rates 89.5/s: none throttled).
# 1. N certificates registered in AWS while CreateThing fails at the stand-in (every flow stuck
#    at its first step), one of them put on hold; Redis then restarts empty (jitrd stopped
#    meanwhile): the registered marks and the queued flows are gone. jitrd's rebuild marks them
#    again from the aws_register records and queues the provisioning of the N-1 valid ones (not
#    the held one); a second run, started while CreateThing still fails, provisions them once it
#    works: every valid one ACTIVE with its thing and policy, one activation record each; the
#    held one stays INACTIVE, refused by the run with the reason.
# 2. --status INACTIVE: M certificates provisioned (thing, policy, principal) and left INACTIVE;
#    Redis restarts empty again; --status ACTIVE then only activates them (UpdateCertificate,
#    nothing created); a third run reports them there. A bad --status queues nothing.
source "$(dirname "$0")/jitr_lib.sh"
N=${1:-30}
M=5
OPS="DescribeCertificate RegisterCertificate CreateThing DescribeThing GetPolicy CreatePolicy AttachPolicy AttachThingPrincipal UpdateCertificate ListCertificatesByCA ListPrincipalThings"
rates=$(for o in $OPS; do printf '%s=89.5/1,' "$o"; done)
jq --arg r "${rates%,}" '.jitr.aws_rates = $r | .jitr.max_in_flight = 16 | .jitr.max_attempts = 500' \
  "$CFG" >"$T/rate.json" && mv "$T/rate.json" "$CFG"
q=$(for o in $OPS; do printf '"%s": 100,' "$o"; done)
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d "{\"quotas\": {\"rates\": {${q%,}}}}" >/dev/null || fail "stand-in quotas"
create_thing_fails() { # 1.0 or 0
  curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
    -d "{\"faults\": {\"error_rate\": $1, \"error_statuses\": [503], \"operations\": [\"CreateThing\"]}}" \
    >/dev/null || fail "stand-in faults"
}
# Redis restarted with nothing (its files removed), jitrd stopped meanwhile; jitrd's rebuild
redis_lost() {
  jitrd_stop
  rcli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  sleep 0.3
  rm -rf "$T/redis/appendonlydir" "$T/redis"/*.aof "$T/redis"/*.rdb
  redis_start
  check_eq "Redis came back empty" "$(rcli DBSIZE)" 0
  jitrd_start
  for _ in $(seq 300); do [ "$(rcli EXISTS jitrca:index:ready)" = 1 ] && break; sleep 0.1; done
  check_eq "index rebuilt" "$(rcli EXISTS jitrca:index:ready)" 1
}
make_devices "$N" "$T/d"
make_devices "$M" "$T/s" ina-
jitrd_start
HELD=$T/d/dev-000001.crt
HELD_SERIAL=$(openssl x509 -in "$HELD" -noout -serial | cut -d= -f2)
mkdir -p "$T/v"
cp "$T"/d/dev-*.crt "$T/v/" && rm "$T/v/dev-000001.crt"

# --- 1. Redis lost in the middle of a batch -------------------------------------------------------
create_thing_fails 1.0
"$JITRCTL" --json aws register-batch --in "$T/d" --quiet >"$T/r1.json" 2>"$T/r1.err" &
CPID=$!
for _ in $(seq 600); do [ "$(count_records aws_register)" -ge "$N" ] && break; sleep 0.1; done
check_eq "registered in AWS, provisioning stuck" "$(count_records aws_register)" "$N"
ok "$JITRCTL" revoke "$HELD_SERIAL" --reason certificateHold --no-wait
check_eq "nothing activated before the loss" "$(count_records jitr_activate)" 0
kill "$CPID" 2>/dev/null || true # it follows jobs Redis is about to lose
wait "$CPID" 2>/dev/null || true
redis_lost
check_eq "rebuild: provisioning queued again" \
  "$(rcli XRANGE jitrca:jitr:events - + | grep -c '^reindex$')" $((N - 1))
check_eq "rebuild: the held one marked ours" \
  "$(rcli HGET "jitrca:jitr:dev:$(cert_id_of "$HELD")" registered)" 1
rc=0
"$JITRCTL" --json aws register-batch --in "$T/d" --timeout 300 --quiet >"$T/r2.json" \
  2>"$T/r2.err" &
CPID=$!
sleep 2
create_thing_fails 0
wait "$CPID" || rc=$?
check_eq "run 2: exit status (the held one refused)" "$rc" 2
jq -s '.[0]' "$T/r2.json" >"$T/r2r.json" && mv "$T/r2r.json" "$T/r2.json"
check_eq "run 2: provisioned" "$(jq '.registered + .already_there' "$T/r2.json")" $((N - 1))
check_eq "run 2: failed" "$(jq .failed "$T/r2.json")" 0
check_eq "run 2: refused" "$(jq .refused "$T/r2.json")" 1
jq -r '.items[] | select(.result == "refused") | .detail' "$T/r2.json" | grep -q certificateHold &&
  pass || fail "the held one's reason: $(jq -c '.items[] | select(.result == "refused")' "$T/r2.json")"
check_eq "run 2: every one there is ACTIVE" "$(jq '[.items[] | select(.result == "already there" and .detail != "ACTIVE in AWS IoT")] | length' "$T/r2.json")" 0
echo "run 2: $(jq .registered "$T/r2.json") registered by it, $(jq .already_there "$T/r2.json") provisioned by the rebuild's flows first" >&2
check_eq "AWS: every valid one provisioned" "$(aws_certs "$T/v" --count)" "$((N - 1)) ACTIVE things=1 policies=1"
check_eq "AWS: the held one" "$(aws_status "$HELD")" INACTIVE
check_eq "one activation record each" "$(count_records jitr_activate)" $((N - 1))
grep '"type":"jitr_activate"' "$(audit_log)" | grep -q "$(cert_id_of "$HELD")" &&
  fail "the held one activated" || pass

# --- 2. --status INACTIVE, a Redis loss, then --status ACTIVE only activates ----------------------
before=$(rcli XLEN jitrca:jobs:register:queue)
expect_fail 2 "--status takes ACTIVE or INACTIVE" "$JITRCTL" aws register-batch --in "$T/s" \
  --status active
check_eq "bad --status: nothing queued" "$(rcli XLEN jitrca:jobs:register:queue)" "$before"
rc=0
"$JITRCTL" --json aws register-batch --in "$T/s" --status INACTIVE --quiet >"$T/s1.json" \
  2>"$T/s1.err" || rc=$?
check_eq "INACTIVE: exit status" "$rc" 0
check_eq "INACTIVE: registered" "$(jq .registered "$T/s1.json")" "$M"
check_eq "INACTIVE: reported INACTIVE" \
  "$(jq '[.items[] | select(.detail | endswith(", INACTIVE"))] | length' "$T/s1.json")" "$M"
check_eq "INACTIVE: provisioned, not active" "$(aws_certs "$T/s" --count)" "$M INACTIVE things=1 policies=1"
redis_lost
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
rc=0
"$JITRCTL" --json aws register-batch --in "$T/s" --quiet >"$T/s2.json" 2>"$T/s2.err" || rc=$?
check_eq "ACTIVE: exit status" "$rc" 0
check_eq "ACTIVE: activated" "$(jq .activated "$T/s2.json")" "$M"
check_eq "ACTIVE: provisioned and active" "$(aws_certs "$T/s" --count)" "$M ACTIVE things=1 policies=1"
stats >"$T/st.json"
check_eq "ACTIVE: only activated (UpdateCertificate each, nothing else written)" \
  "$(jq -c '[.operations | to_entries[] | select(.key | test("^(Describe|List|Get)") | not) | select((.value.admitted // 0) > 0) | [.key, .value.admitted]]' "$T/st.json")" \
  "[[\"UpdateCertificate\",$M]]"
rc=0
"$JITRCTL" --json aws register-batch --in "$T/s" --quiet >"$T/s3.json" 2>"$T/s3.err" || rc=$?
check_eq "again: exit status" "$rc" 0
check_eq "again: already there" "$(jq .already_there "$T/s3.json")" "$M"
check_eq "no dead letter" "$(rcli XLEN jitrca:jobs:register:dlq)" 0
finish
