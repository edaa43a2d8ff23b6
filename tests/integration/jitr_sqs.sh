#!/usr/bin/env bash
# JITR through the SQS intake only (run under tests/sim/run_sim.py): the topic rule's action is
# sqs (no HTTP action, no intake secret: POST /v1/jitr/events answers 401), the reconciler is off
# so every device is provisioned from a queue message. 20 devices: 10 with JSON bodies, then
# Redis stopped while 10 more register with base64 bodies (useBase64) — the messages stay on the
# queue and come back — then Redis returns: every device ACTIVE exactly once, the queue empty. A
# garbage message and an event of a foreign CA are deleted, logged by MessageId (never the body),
# counted by reason, never enqueued, nothing provisioned for them. /metrics. SIGTERM aborts the
# pending 20 s long poll. A queue that does not exist: an error naming the URL, jitrd stays up
# and keeps retrying. Message bodies that are arrays of events (JSON and base64): every valid
# event provisioned, the never-valid ones counted, the messages deleted.
source "$(dirname "$0")/jitr_lib.sh"
unset JITRCA_JITR_SECRETS
N=20
sqs() { aws --endpoint-url "$STANDIN" sqs "$@"; }
QURL=$(sqs create-queue --queue-name jitr-events --attributes VisibilityTimeout=4 \
  --query QueueUrl --output text)
check_eq "queue URL" "$QURL" "$STANDIN/123456789012/jitr-events"
rule() { # USE_BASE64
  printf '{"sql":"SELECT * FROM '"'"'$aws/events/certificates/registered/%s'"'"'","ruleDisabled":false,"actions":[{"sqs":{"roleArn":"arn:aws:iam::123456789012:role/jitr-sqs","queueUrl":"%s","useBase64":%s}}]}' \
    "$DEV_CA_ID" "$QURL" "$1"
}
ok aws --endpoint-url "$STANDIN" iot create-topic-rule --rule-name jitr_registered \
  --topic-rule-payload "$(rule false)"
queue_depth() { sqs get-queue-attributes --queue-url "$QURL" --attribute-names \
  ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible \
  --query 'Attributes.[ApproximateNumberOfMessages,ApproximateNumberOfMessagesNotVisible]' \
  --output text | awk '{print $1 + $2}'; }
ids() { seq -f "dev-%06g" "$1" "$2" | paste -sd, -; }

sqs_config() { # QUEUE_URL: the SQS intake on, the reconciler off (every device comes from a message)
  write_config
  jq --arg q "$1" '.jitr.sqs_queue_url = $q | .jitr.reconcile_interval_s = 0' "$CFG" >"$T/cfg.tmp"
  mv "$T/cfg.tmp" "$CFG"
}
sqs_config "$QURL"
ok "$JITRD" --check-config --config "$CFG"
grep -q "SQS $QURL" "$T/out" && pass || { fail "check-config names the queue"; cat "$T/out" >&2; }
jitrd_start
check_eq "HTTP intake off" "$(curl -s -o "$T/post.out" -w '%{http_code}' -X POST "$INTAKE/v1/jitr/events" \
  -H 'x-jitr-secret: s3cret-new' -d '{}')" 401
grep -q "intake is off" "$T/post.out" && pass || { fail "401 says why"; cat "$T/post.out" >&2; }
grep -q "SQS intake on $QURL (region us-east-1" "$T/jitrd.log" && pass || fail "SQS intake started"

# --- 10 devices, JSON bodies ----------------------------------------------------------------
make_devices $N "$T/d"
gw --dir "$T/d" --ids "$(ids 1 10)" --timeout 60 >"$T/gw1.json" 2>"$T/gw1.err" && pass || {
  fail "devices 1-10 provisioned through SQS"; cat "$T/gw1.json" "$T/gw1.err" >&2; tail -30 "$T/jitrd.log" >&2; }
check_eq "1-10 refused first" "$(jq -r .first_refused "$T/gw1.json")" 10
check_eq "1-10 connected" "$(jq -r .connected "$T/gw1.json")" 10
check_eq "events came from SQS" "$(rcli XRANGE jitrca:jitr:events - + | grep -c '^sqs$')" \
  "$(rcli XLEN jitrca:jitr:events)"

# --- messages that can never be valid: deleted, counted, never enqueued -------------------------
FOREIGN_CA=$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)
FOREIGN_CERT=$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)
len0=$(rcli XLEN jitrca:jitr:events)
sqs send-message --queue-url "$QURL" --message-body 'garbage-body-7f3a{' --query MessageId \
  --output text >"$T/garbage.id"
printf '{"certificateId":"%s","caCertificateId":"%s","timestamp":1795671724146,"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"123456789012"}' \
  "$FOREIGN_CERT" "$FOREIGN_CA" >"$T/foreign.json"
sqs send-message --queue-url "$QURL" --message-body "file://$T/foreign.json" --query MessageId \
  --output text >"$T/foreign.id"
for _ in $(seq 50); do [ "$(queue_depth)" = 0 ] && break; sleep 0.2; done
check_eq "invalid messages deleted" "$(queue_depth)" 0
check_eq "nothing enqueued for them" "$(rcli XLEN jitrca:jitr:events)" "$len0"
grep -q "message $(cat "$T/garbage.id") rejected and deleted (not_json)" "$T/jitrd.log" && pass || {
  fail "garbage logged by MessageId"; grep "SQS" "$T/jitrd.log" | tail >&2; }
grep -q "message $(cat "$T/foreign.id") rejected and deleted (foreign_ca)" "$T/jitrd.log" && pass || fail "foreign CA logged"
grep -q "garbage-body-7f3a" "$T/jitrd.log" && fail "a message body was logged" || pass
check_eq "no flow for the foreign certificate" "$(rcli EXISTS "jitrca:jitr:dev:$FOREIGN_CERT")" 0
rcli XRANGE jitrca:jitr:events - + | grep -q "$FOREIGN_CERT" && fail "foreign event enqueued" || pass

# --- arrays of events in message bodies (JSON and base64) ---------------------------------------
# the rule off: these devices' events reach the queue only as the arrays sent below
ok aws --endpoint-url "$STANDIN" iot replace-topic-rule --rule-name jitr_registered \
  --topic-rule-payload "$(rule false | sed 's/"ruleDisabled":false/"ruleDisabled":true/')"
make_devices 6 "$T/a" arr-
gw --dir "$T/a" --first-only >/dev/null 2>&1 || true
for f in "$T"/a/*.crt; do cert_id_of "$f"; done >"$T/a.ids"
python3 - "$T/a.ids" "$DEV_CA_ID" "$FOREIGN_CA" "$T" <<'PY'
import base64, json, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
ca, foreign, t = sys.argv[2], sys.argv[3], sys.argv[4]
def ev(cid, ca=ca):
    return {"certificateId": cid, "caCertificateId": ca, "timestamp": 1795671724146,
            "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
            "certificateRegistrationTimestamp": None, "sourceIp": "198.51.100.7"}
open(t + "/arr1.json", "w").write(json.dumps([ev(i) for i in ids[:4]] + [ev("ee" * 32, foreign), 42]))
open(t + "/arr2.b64", "w").write(base64.b64encode(json.dumps([ev(i) for i in ids[4:]]).encode()).decode())
PY
sqs send-message --queue-url "$QURL" --message-body "file://$T/arr1.json" --query MessageId --output text >"$T/arr1.id"
sqs send-message --queue-url "$QURL" --message-body "file://$T/arr2.b64" --query MessageId --output text >/dev/null
done_n=0
for _ in $(seq 100); do
  done_n=0; while read -r id; do [ "$(rcli HGET "jitrca:jitr:dev:$id" state)" = DONE ] && done_n=$((done_n + 1)); done <"$T/a.ids"
  [ "$done_n" = 6 ] && break; sleep 0.2
done
check_eq "arrays in SQS bodies: 6 provisioned" "$done_n" 6
active=0; while read -r id; do
  [ "$(curl -sf "$STANDIN/_standin/internal/cert/$id" | jq -r .status)" = ACTIVE ] && active=$((active + 1))
done <"$T/a.ids"
check_eq "arrays in SQS bodies: 6 ACTIVE" "$active" 6
grep -q "message $(cat "$T/arr1.id"): event 5 of 6 refused: event: caCertificateId" "$T/jitrd.log" && pass || fail "refused element logged by MessageId"
grep -q "message $(cat "$T/arr1.id"): event 6 of 6 refused: event: must be a JSON object" "$T/jitrd.log" && pass || fail "non-object element logged"
for _ in $(seq 50); do [ "$(queue_depth)" = 0 ] && break; sleep 0.2; done
check_eq "array messages deleted" "$(queue_depth)" 0
curl -sf "$INTAKE/metrics" >"$T/metrics"
# the foreign-CA message earlier and the element: every refused event is counted
grep -q '^jitr_intake_events_rejected_total{src="sqs",reason="foreign_ca"} 2$' "$T/metrics" && pass || { fail "element foreign_ca counted"; grep events "$T/metrics" >&2; }
grep -q '^jitr_intake_events_rejected_total{src="sqs",reason="invalid"} 1$' "$T/metrics" && pass || fail "element invalid counted"
rcli XRANGE jitrca:jitr:events - + | grep -q "^eeeeeeee" && fail "a foreign element was enqueued" || pass

# --- Redis down while 10 more register, base64 bodies: nothing lost ----------------------------
ok aws --endpoint-url "$STANDIN" iot replace-topic-rule --rule-name jitr_registered \
  --topic-rule-payload "$(rule true)"
redis_stop
gw --dir "$T/d" --ids "$(ids 11 20)" --first-only >/dev/null 2>&1
for _ in $(seq 50); do grep -q "SQS intake: Redis unavailable" "$T/jitrd.log" && break; sleep 0.2; done
grep -q "SQS intake: Redis unavailable, messages stay on the queue" "$T/jitrd.log" && pass || {
  fail "Redis outage logged"; tail -20 "$T/jitrd.log" >&2; }
sleep 3 # past the 4 s visibility timeout at least once: redelivered, refused again
# moto reads the clock once per message for each of the two counts (visible, in flight): a message
# whose visibility timeout ends between them is in neither, so one read can be short by the
# messages jitrd is cycling; a message lost would never come back, so read until all are there
depth=0
for _ in $(seq 25); do depth=$(queue_depth); [ "$depth" -ge 10 ] && break; sleep 0.2; done
[ "$depth" -ge 10 ] && pass || fail "the events wait on the queue while Redis is down: $depth"
redis_start
gw --dir "$T/d" --ids "$(ids 11 20)" --timeout 90 >"$T/gw2.json" 2>"$T/gw2.err" && pass || {
  fail "devices 11-20 provisioned after Redis returned"; cat "$T/gw2.json" "$T/gw2.err" >&2; tail -30 "$T/jitrd.log" >&2; }
check_eq "11-20 connected" "$(jq -r .connected "$T/gw2.json")" 10
check_eq "Redis outage logged once per worker (at most)" \
  "$( [ "$(grep -c 'SQS intake: Redis unavailable' "$T/jitrd.log")" -le 2 ] && echo yes)" yes
grep -q "SQS intake: Redis reachable again" "$T/jitrd.log" && pass || fail "recovery logged"

# --- every device ACTIVE exactly once; the queue empty -------------------------------------------
active=0
for i in $(seq 1 $N); do
  [ "$(aws_status "$T/d/$(printf 'dev-%06d' "$i").crt")" = ACTIVE ] && active=$((active + 1))
done
check_eq "all ACTIVE" "$active" $N
for _ in $(seq 50); do [ "$(rcli HGET jitrca:jitr:stats outcome:activated)" = $((N + 6)) ] && break; sleep 0.2; done
check_eq "activated once each" "$(count_records jitr_activate)" $((N + 6))
for _ in $(seq 50); do [ "$(queue_depth)" = 0 ] && break; sleep 0.2; done
check_eq "queue empty (ApproximateNumberOfMessages 0)" \
  "$(sqs get-queue-attributes --queue-url "$QURL" --attribute-names ApproximateNumberOfMessages \
     --query Attributes.ApproximateNumberOfMessages --output text)" 0

# --- metrics ------------------------------------------------------------------------------------
curl -sf "$INTAKE/metrics" >"$T/metrics"
grep -q '^jitr_sqs_messages_rejected_total{reason="not_json"} 1$' "$T/metrics" && pass || { fail "metrics not_json"; grep sqs "$T/metrics" >&2; }
grep -q '^jitr_sqs_messages_rejected_total{reason="foreign_ca"} 1$' "$T/metrics" && pass || fail "metrics foreign_ca"
metric() { awk -v m="$1" '$1 == m {print $2}' "$T/metrics"; }
[ "$(metric jitr_sqs_messages_received_total)" -ge $((N + 2)) ] && pass || fail "received $(metric jitr_sqs_messages_received_total)"
[ "$(metric jitr_sqs_messages_enqueued_total)" -ge $N ] && pass || fail "enqueued $(metric jitr_sqs_messages_enqueued_total)"
[ "$(metric jitr_sqs_messages_deleted_total)" -ge $((N + 2)) ] && pass || fail "deleted $(metric jitr_sqs_messages_deleted_total)"
grep -q '^jitr_sqs_receive_errors_total' "$T/metrics" && fail "receive errors" || pass
grep -q '"level":"error"' "$T/jitrd.log" && { fail "errors in the jitrd log"; grep '"level":"error"' "$T/jitrd.log" | head >&2; } || pass

# --- SIGTERM aborts the pending 20 s long poll --------------------------------------------------
t0=$(date +%s%N)
jitrd_stop
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 8000 ] && pass || fail "jitrd took $ms ms to stop with a long poll pending"
echo "jitrd stopped in $ms ms with a 20 s long poll pending"
grep -q "did not finish at shutdown" "$T/jitrd.log" && fail "flows left at shutdown" || pass

# --- a queue that does not exist: logged with its URL, retried, jitrd stays up --------------------
sqs_config "$STANDIN/123456789012/no-such-queue"
jitrd_start
for _ in $(seq 50); do grep -q "cannot receive from .*no-such-queue" "$T/jitrd.log" && break; sleep 0.2; done
grep -q "SQS intake: cannot receive from $STANDIN/123456789012/no-such-queue (retrying with backoff): .*QueueDoesNotExist" "$T/jitrd.log" && pass || {
  fail "missing queue logged"; tail -5 "$T/jitrd.log" >&2; }
sleep 2
kill -0 "$JPID" && curl -sf "$INTAKE/healthz" >/dev/null && pass || fail "jitrd up despite the missing queue"
curl -sf "$INTAKE/metrics" >"$T/metrics"
[ "$(metric jitr_sqs_receive_errors_total)" -ge 2 ] && pass || fail "receive errors counted: $(metric jitr_sqs_receive_errors_total)"
jitrd_stop
grep -q "Sanitizer\|runtime error" "$T/jitrd.log" && { fail "sanitizer report"; grep -A5 "Sanitizer\|runtime error" "$T/jitrd.log" | head -30 >&2; } || pass
finish
