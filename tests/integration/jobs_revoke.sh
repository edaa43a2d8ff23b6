#!/usr/bin/env bash
# Revocation reaches AWS IoT through the job engine (run under tests/sim/run_sim.py, signature
# checks on): a provisioned device revoked with jitrctl revoke is REVOKED at the stand-in within
# seconds (and `aws iot describe-certificate` agrees; jitrctl cert show and the audit log say
# so); with jitrd SIGKILLed before the revoke, and again while the job's UpdateCertificate is in
# flight, it still ends REVOKED after a restart; certificateHold → INACTIVE and on the CRL,
# release → ACTIVE and off it, then a permanent revocation → REVOKED; a certificate AWS never
# saw is recorded "unknown" and JITR refuses it when it appears; a held certificate is not
# provisioned (a dead letter, not REVOKED) until released; a job made to fail (stand-in faults)
# is dead-lettered, listed and retried with jitrctl jobs; jitrctl jitr still works; after Redis
# restarted empty, only the changes whose jobs had not run reach AWS again.
source "$(dirname "$0")/jitr_lib.sh"
write_config '"max_attempts": 2'
jitrd_start
gateway_rule

serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'; }
# wait_aws CERT STATUS [SECONDS]: the stand-in's status becomes STATUS
# (a deadline in seconds: each look is an aws CLI process, a second or more on a busy machine)
wait_aws() {
  local end=$((SECONDS + ${3:-15}))
  while :; do
    [ "$(aws_status "$1")" = "$2" ] && return 0
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.2
  done
}
kill_jitrd() { # SIGKILL, the workers first (they are jitrd's children)
  local w
  for w in $(pgrep -P "$JPID"); do kill -KILL "$w" 2>/dev/null || true; done
  kill -KILL "$JPID" 2>/dev/null || true
  wait "$JPID" 2>/dev/null || true
  JPID=
}

make_devices 6 "$T/d"
# the four connect at once (each retries with backoff until provisioned)
gw --dir "$T/d" --ids dev-000001,dev-000002,dev-000003,dev-000005 --threads 4 --timeout 30 \
  >"$T/gw.json" 2>"$T/gw.err" && pass || { fail "devices did not connect"; cat "$T/gw.json" "$T/gw.err" >&2; }
for i in 1 2 3 5; do check_eq "device $i ACTIVE" "$(aws_status "$T/d/dev-00000$i.crt")" ACTIVE; done

# --- 1. jitrctl revoke: REVOKED in AWS within seconds, printed, shown, audited ---------------------
D1=$T/d/dev-000001.crt
CID1=$(cert_id_of "$D1")
start=$(date +%s%N)
ok "$JITRCTL" revoke "$(serial_of "$D1")" --reason keyCompromise
took=$((($(date +%s%N) - start) / 1000000))
grep -q "^AWS IoT: revoked (status REVOKED)" "$T/out" && pass || { fail "revoke prints AWS's outcome"; cat "$T/out" "$T/err" >&2; }
check_eq "REVOKED at the stand-in" "$(aws_status "$D1")" REVOKED
[ "$took" -lt 5000 ] && pass || fail "revoke with the AWS outcome took $took ms"
echo "revoke to REVOKED in AWS: $took ms" >&2
aws --endpoint-url "$STANDIN" iot describe-certificate --certificate-id "$CID1" >"$T/dc.json" && pass || fail "aws iot describe-certificate"
check_eq "aws CLI agrees" "$(jq -r .certificateDescription.status "$T/dc.json")" REVOKED
ok "$JITRCTL" cert show "$(serial_of "$D1")"
grep -Eq '^aws_status +REVOKED' "$T/out" && pass || { fail "cert show: AWS status"; cat "$T/out" >&2; }
grep -Eq '^status +revoked' "$T/out" && pass || { fail "cert show: our status"; cat "$T/out" >&2; }
ok "$JITRCTL" --json cert show "$CID1"
check_eq "cert show --json aws.status" "$(jq -r .aws.status "$T/out")" REVOKED
check_eq "cert show --json revoke job" "$(jq -r .aws.revoke_job.outcome "$T/out")" revoked
check_eq "audited once" "$(grep -c "\"type\":\"aws_status\".*$CID1\|$CID1.*\"type\":\"aws_status\"" "$(audit_log)")" 1
# again: nothing changes, the outcome is the recorded one
ok "$JITRCTL" --json revoke "$(serial_of "$D1")"
check_eq "already revoked" "$(jq -r .already_revoked "$T/out")" true
check_eq "already: AWS outcome" "$(jq -r .aws.aws_status "$T/out")" REVOKED

# --- 2. jitrd SIGKILLed between the revoke and the AWS update -------------------------------------
D2=$T/d/dev-000002.crt
kill_jitrd
ok "$JITRCTL" revoke "$(serial_of "$D2")" --no-wait
grep -q "^AWS IoT: queued" "$T/out" && pass || { fail "--no-wait says queued"; cat "$T/out" >&2; }
check_eq "still ACTIVE while jitrd is down" "$(aws_status "$D2")" ACTIVE
jitrd_start
wait_aws "$D2" REVOKED 20 && pass || fail "REVOKED after the restart"
# killed while UpdateCertificate is in flight (the stand-in answers it after 3 s): the job resumes
# in its SYNC state, another worker claims the entry, DescribeCertificate tells what happened
D5=$T/d/dev-000005.crt
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"faults": {"latency_ms": 3000, "operations": ["UpdateCertificate"]}}' >/dev/null
ok "$JITRCTL" revoke "$(serial_of "$D5")" --no-wait
for _ in $(seq 50); do [ "$(rcli HGET "jitrca:jobs:revoke:$(cert_id_of "$D5")" state)" = SYNC ] && break; sleep 0.1; done
check_eq "job in SYNC" "$(rcli HGET "jitrca:jobs:revoke:$(cert_id_of "$D5")" state)" SYNC
sleep 0.5
kill_jitrd
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"faults": {"latency_ms": 0, "operations": []}}' >/dev/null
jitrd_start
wait_aws "$D5" REVOKED 30 && pass || fail "REVOKED after a kill during UpdateCertificate"
for _ in $(seq 100); do [ "$(rcli HGET "jitrca:jobs:revoke:$(cert_id_of "$D5")" state)" = DONE ] && break; sleep 0.1; done
check_eq "job DONE after the kill" "$(rcli HGET "jitrca:jobs:revoke:$(cert_id_of "$D5")" state)" DONE

# --- 3. hold → INACTIVE (on the CRL), release → ACTIVE (off it), then revoked for good -------------
D3=$T/d/dev-000003.crt
S3=$(serial_of "$D3")
ok "$JITRCTL" revoke "$S3" --reason certificateHold
grep -q "^AWS IoT: inactive (status INACTIVE)" "$T/out" && pass || { fail "hold prints INACTIVE"; cat "$T/out" "$T/err" >&2; }
check_eq "held: INACTIVE" "$(aws_status "$D3")" INACTIVE
openssl crl -in "$JITRCA_DATA_DIR/ca/devices/crl.pem" -noout -text >"$T/crl.txt"
grep -A4 -i "Serial Number: 0*$(echo "$S3" | tr a-f A-F)" "$T/crl.txt" | grep -q "Certificate Hold" && pass || { fail "held serial on the CRL with certificateHold"; cat "$T/crl.txt" >&2; }
ok "$JITRCTL" --json revoke "$S3" --reason certificateHold
check_eq "a second hold changes nothing" "$(jq -r .already_revoked "$T/out")" true
ok "$JITRCTL" release "$S3"
grep -q "^AWS IoT: active (status ACTIVE)" "$T/out" && pass || { fail "release prints ACTIVE"; cat "$T/out" "$T/err" >&2; }
check_eq "released: ACTIVE" "$(aws_status "$D3")" ACTIVE
openssl crl -in "$JITRCA_DATA_DIR/ca/devices/crl.pem" -noout -text >"$T/crl.txt"
grep -qi "Serial Number: 0*$(echo "$S3" | tr a-f A-F)\$" "$T/crl.txt" && fail "released serial still on the CRL" || pass
check_eq "audit release" "$(count_records release)" 1
expect_fail 5 "is not on hold" "$JITRCTL" release "$S3"
ok "$JITRCTL" revoke "$S3" --reason certificateHold
ok "$JITRCTL" revoke "$S3" --reason keyCompromise
grep -q "^AWS IoT: revoked (status REVOKED)" "$T/out" && pass || { fail "hold then revoked for good"; cat "$T/out" "$T/err" >&2; }
check_eq "held then revoked: REVOKED" "$(aws_status "$D3")" REVOKED
expect_fail 5 "revoked for good" "$JITRCTL" release "$S3"
check_eq "REVOKED stays" "$(aws_status "$D3")" REVOKED

# --- 4. a certificate AWS never saw: recorded unknown; JITR refuses it when it appears -----------
D4=$T/d/dev-000004.crt
ok "$JITRCTL" revoke "$(serial_of "$D4")"
grep -q "^AWS IoT: certificate unknown to AWS" "$T/out" && pass || { fail "unknown to AWS"; cat "$T/out" "$T/err" >&2; }
ok "$JITRCTL" --json cert show "$(serial_of "$D4")"
check_eq "cert show: unknown to AWS" "$(jq -r .aws.status "$T/out")" "unknown to AWS"
# its first connection registers it (the event), then JITR decides; a connection after that is
# refused too
gw --dir "$T/d" --ids dev-000004 --first-only >"$T/gw4.json" 2>/dev/null || true
check_eq "refused" "$(jq -r .connected "$T/gw4.json")" 0
for _ in $(seq 100); do [ "$(rcli HGET "jitrca:jitr:dev:$(cert_id_of "$D4")" state)" = REJECTED ] && break; sleep 0.1; done
check_eq "JITR rejected it" "$(rcli HGET "jitrca:jitr:dev:$(cert_id_of "$D4")" state)" REJECTED
check_eq "REVOKED by JITR" "$(aws_status "$D4")" REVOKED
gw --dir "$T/d" --ids dev-000004 --first-only >"$T/gw4.json" 2>/dev/null || true
check_eq "never connects" "$(jq -r .connected "$T/gw4.json")" 0

# --- 5. a held certificate that appears later: not provisioned, not revoked, until released ------
D6=$T/d/dev-000006.crt
S6=$(serial_of "$D6")
ok "$JITRCTL" revoke "$S6" --reason certificateHold
gw --dir "$T/d" --ids dev-000006 --first-only >"$T/gw6.json" 2>/dev/null || true
check_eq "held: refused" "$(jq -r .connected "$T/gw6.json")" 0
for _ in $(seq 100); do "$JITRCTL" --json jitr dlq list >"$T/dl.json" 2>/dev/null; jq -e --arg c "$(cert_id_of "$D6")" 'map(select(.cert == $c)) | length == 1' "$T/dl.json" >/dev/null && break; sleep 0.1; done
jq -e --arg c "$(cert_id_of "$D6")" 'map(select(.cert == $c)) | .[0].error | test("on hold")' "$T/dl.json" >/dev/null && pass || { fail "held: a JITR dead letter"; cat "$T/dl.json" >&2; }
check_eq "held: left PENDING_ACTIVATION" "$(aws_status "$D6")" PENDING_ACTIVATION
ok "$JITRCTL" release "$S6"
ok "$JITRCTL" jitr dlq retry "$(cert_id_of "$D6")"
wait_aws "$D6" ACTIVE 20 && pass || fail "released, retried: provisioned"

# --- 6. a job made to fail: dead-lettered, listed, retried --------------------------------------
# first the engine idle: the release's job of section 5 may still be backing off behind JITR's
# lock, and would die of the fault too
for _ in $(seq 300); do
  "$JITRCTL" --json jobs status >"$T/js.json" 2>/dev/null &&
    jq -e '.kinds[] | select(.kind == "revoke") | .queued == 0 and .in_flight == 0' "$T/js.json" >/dev/null && break
  sleep 0.1
done
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"faults": {"error_rate": 1.0, "error_statuses": [503], "operations": ["UpdateCertificate"]}}' >/dev/null
D6S=$S6
expect_fail 6 "AWS IoT was not updated" "$JITRCTL" revoke "$D6S" --wait 60
check_eq "ACTIVE while UpdateCertificate fails" "$(aws_status "$D6")" ACTIVE
ok "$JITRCTL" --json jobs status
check_eq "jobs status: one revoke dead" "$(jq -r '.kinds[] | select(.kind == "revoke") | .dead' "$T/out")" 1
check_eq "jobs status: jitr listed" "$(jq -r '.kinds[] | select(.kind == "jitr") | .kind' "$T/out")" jitr
[ "$(jq -r '.kinds[] | select(.kind == "revoke") | .done' "$T/out")" -ge 7 ] && pass || { fail "jobs status: revoke done"; cat "$T/out" >&2; }
ok "$JITRCTL" jobs status
grep -Eq '^revoke +[0-9]+ +0 +[0-9]+ +[0-9]+ +1$' "$T/out" && pass || { fail "jobs status text"; cat "$T/out" >&2; }
ok "$JITRCTL" --json jobs dlq list --kind revoke
check_eq "dlq list: the job" "$(jq -r '.[0].key' "$T/out")" "$(cert_id_of "$D6")"
jq -r '.[0].error' "$T/out" | grep -q "UpdateCertificate" && pass || { fail "dlq list: why"; cat "$T/out" >&2; }
check_eq "dlq list: state" "$(jq -r '.[0].state' "$T/out")" SYNC
ok "$JITRCTL" jobs dlq list
grep -q "^revoke " "$T/out" && pass || fail "dlq list text"
ok "$JITRCTL" --json jobs dlq list --kind jitr
expect_fail 2 "unknown job kind 'nope'" "$JITRCTL" jobs dlq list --kind nope
expect_fail 4 "no dead letter with id or key 'feed'" "$JITRCTL" jobs dlq retry feed
expect_fail 2 "usage: jitrctl jobs dlq retry" "$JITRCTL" jobs dlq retry
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"faults": {"error_rate": 0.0, "operations": []}}' >/dev/null
ok "$JITRCTL" jobs dlq retry --all --kind revoke
grep -q "^1 dead letters re-queued" "$T/out" && pass || { fail "dlq retry"; cat "$T/out" >&2; }
wait_aws "$D6" REVOKED 20 && pass || fail "retried: REVOKED"
ok "$JITRCTL" --json jobs status
check_eq "no dead job left" "$(jq -r '.kinds[] | select(.kind == "revoke") | .dead' "$T/out")" 0

# --- 7. the jobs survive a reindex (FLUSHALL): recorded done jobs are not repeated otherwise ------
before=$(stats | jq -r '.operations.DescribeCertificate.admitted // 0')
ok "$JITRCTL" reindex
sleep 3
after=$(stats | jq -r '.operations.DescribeCertificate.admitted // 0')
check_eq "reindex: no job re-run for changes AWS has" "$after" "$before"

# --- 8. Redis restarted empty: the rebuild sends AWS only the changes whose jobs had not run ------
# R1 revoked, R2 held and released, R3 held: all in AWS. Then, with jitrd down, R2 revoked and R3
# released (their jobs never run), and Redis loses everything. jitrd rebuilds the index from the
# audit log: the changes AWS heard of (every aws_status record names its change) cost no call;
# R2's revocation and R3's release are queued again, one DescribeCertificate and one
# UpdateCertificate each (R3's release finds its hold's restored record: ACTIVE again).
make_devices 3 "$T/r" rst-
gw --dir "$T/r" --ids rst-000001,rst-000002,rst-000003 --threads 3 --timeout 30 \
  >"$T/gw8.json" 2>"$T/gw8.err" && pass || { fail "rst devices did not connect"; cat "$T/gw8.json" "$T/gw8.err" >&2; }
R1=$T/r/rst-000001.crt R2=$T/r/rst-000002.crt R3=$T/r/rst-000003.crt
ok "$JITRCTL" revoke "$(serial_of "$R1")" --reason keyCompromise
ok "$JITRCTL" revoke "$(serial_of "$R2")" --reason certificateHold
ok "$JITRCTL" release "$(serial_of "$R2")"
ok "$JITRCTL" revoke "$(serial_of "$R3")" --reason certificateHold
check_eq "R1 REVOKED" "$(aws_status "$R1")" REVOKED
check_eq "R2 ACTIVE again" "$(aws_status "$R2")" ACTIVE
check_eq "R3 held: INACTIVE" "$(aws_status "$R3")" INACTIVE
grep '"type":"aws_status"' "$(audit_log)" | tail -1 | grep -q '"change_seq":[0-9]' && pass || fail "aws_status names its change"
kill_jitrd
ok "$JITRCTL" revoke "$(serial_of "$R2")" --reason keyCompromise --no-wait
ok "$JITRCTL" release "$(serial_of "$R3")" --no-wait
rcli FLUSHALL >/dev/null
u0=$(stats | jq -r '.operations.UpdateCertificate.admitted // 0')
d0=$(stats | jq -r '.operations.DescribeCertificate.admitted // 0')
jitrd_start
# waited for through their job records: a look at the stand-in is a DescribeCertificate too
for c in "$R2" "$R3"; do
  for _ in $(seq 300); do [ "$(rcli HGET "jitrca:jobs:revoke:$(cert_id_of "$c")" state)" = DONE ] && break; sleep 0.1; done
done
for _ in $(seq 100); do
  "$JITRCTL" --json jobs status >"$T/js.json" 2>/dev/null &&
    jq -e '.kinds[] | select(.kind == "revoke") | .queued == 0 and .in_flight == 0' "$T/js.json" >/dev/null && break
  sleep 0.1
done
sleep 2
u1=$(stats | jq -r '.operations.UpdateCertificate.admitted // 0')
d1=$(stats | jq -r '.operations.DescribeCertificate.admitted // 0')
echo "after Redis restarted empty: $((d1 - d0)) DescribeCertificate, $((u1 - u0)) UpdateCertificate" >&2
check_eq "Redis restarted empty: UpdateCertificate for the 2 unfinished changes only" "$((u1 - u0))" 2
check_eq "Redis restarted empty: DescribeCertificate for the 2 unfinished changes only" "$((d1 - d0))" 2
check_eq "R2's revocation reached AWS after the rebuild" "$(aws_status "$R2")" REVOKED
check_eq "R3's release reached AWS after the rebuild" "$(aws_status "$R3")" ACTIVE
ok "$JITRCTL" --json cert show "$(serial_of "$R1")"
check_eq "a finished job's record restored: cert show" "$(jq -r .aws.status "$T/out")" REVOKED

grep -q "\"level\":\"error\"" "$T/jitrd.log" && { fail "errors in jitrd's log"; grep "\"level\":\"error\"" "$T/jitrd.log" | head >&2; } || pass
finish
