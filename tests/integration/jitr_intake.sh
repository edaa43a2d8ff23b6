#!/usr/bin/env bash
# The JITR HTTP intake with what AWS really sends (run under tests/sim/run_sim.py), the reconciler
# off throughout, so a device is ACTIVE only if the intake took its event:
#   - events with "certificateRegistrationTimestamp": null and a sourceIp member, through the
#     gateway: provisioned;
#   - one batched array of 10 such events (the devices registered, their events lost): 10 ACTIVE;
#   - the gateway in batching mode (an HTTP action with enableBatching): the events arrive as
#     arrays, every device ACTIVE;
#   - an array mixing good and never-valid elements: 202, the good ones stored and provisioned,
#     the bad ones counted in /metrics; bodies refused whole (empty array, nested, 11 events,
#     above 131,072 bytes, nothing valid) with nothing queued; a 131,072-byte array accepted;
#   - destination confirmations: the real one confirmed once; 200 forged posts (random tokens,
#     and one token replayed) make at most 1 AWS call; a foreign ARN none; a confirmation AWS
#     fails is retried until it succeeds; jitr.destination_arns and the ARN's region.
source "$(dirname "$0")/jitr_lib.sh"
PY=python3
config() { # [extra members of the "jitr" section]: the reconciler off
  write_config "${1:-}"
  jq '.jitr.reconcile_interval_s = 0' "$CFG" >"$T/cfg.tmp" && mv "$T/cfg.tmp" "$CFG"
}
config
jitrd_start
AWS_NULL_TS='"event_extra": {"certificateRegistrationTimestamp": null, "sourceIp": "198.51.100.7"}'
gateway_rule s3cret-new "$AWS_NULL_TS"
metric() { curl -sf "$INTAKE/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
post_file() { # FILE [SECRET] -> status; reply in $T/post.out
  curl -s -o "$T/post.out" -w '%{http_code}' -X POST "$INTAKE/v1/jitr/events" \
    -H 'content-type: application/json' -H "x-jitr-secret: ${2:-s3cret-new}" --data-binary "@$1"
}
wait_done() { # N CERT_IDS_FILE: every certificate DONE within 30 s
  for _ in $(seq 150); do
    n=0
    while read -r id; do [ "$(rcli HGET "jitrca:jitr:dev:$id" state)" = DONE ] && n=$((n + 1)); done <"$2"
    [ "$n" -ge "$1" ] && break
    sleep 0.2
  done
  echo "$n"
}
ids_of() { for f in "$1"/*.crt; do cert_id_of "$f"; done; }
# count_status STATUS IDS_FILE: certificates in that status in AWS (the stand-in's registry: the
# aws CLI takes seconds per call)
count_status() {
  local n=0 id
  while read -r id; do
    [ "$(curl -sf "$STANDIN/_standin/internal/cert/$id" | jq -r .status)" = "$1" ] && n=$((n + 1))
  done <"$2"
  echo "$n"
}
# events_json IDS_FILE: an array of the events of those certificates, as AWS sends them
events_json() {
  $PY - "$DEV_CA_ID" "$1" <<'PY'
import json, sys
ca = sys.argv[1]
evs = [{"certificateId": l.strip(), "caCertificateId": ca, "timestamp": 1795671724146,
        "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
        "certificateRegistrationTimestamp": None, "sourceIp": "198.51.100.7"}
       for l in open(sys.argv[2]) if l.strip()]
print(json.dumps(evs))
PY
}
# settle: wait until no event arrives for a second (the gateway's deliveries still in flight)
settle() {
  local a b
  a=$(rcli XLEN jitrca:jitr:events)
  for _ in $(seq 20); do sleep 1; b=$(rcli XLEN jitrca:jitr:events); [ "$a" = "$b" ] && return 0; a=$b; done
}
# stream_certs ID...: the cert field of these stream entries, one per line
stream_certs() { for id in "$@"; do rcli XRANGE jitrca:jitr:events "$id" "$id" | sed -n 3p; done; }

# --- null timestamp and sourceIp, one event per request ------------------------------------------
make_devices 3 "$T/n" null-
gw --dir "$T/n" --timeout 30 >"$T/gw.json" 2>"$T/gw.err" && pass || {
  fail "devices with null-timestamp events did not connect"; cat "$T/gw.json" "$T/gw.err" >&2; tail -20 "$T/jitrd.log" >&2; }
check_eq "null timestamp: connected" "$(jq -r .connected "$T/gw.json")" 3
stats | jq -e '[.gateway_log[] | select(.kind == "event")] | length > 0 and
  all(.event.certificateRegistrationTimestamp == null and .event.sourceIp == "198.51.100.7")' >/dev/null &&
  pass || fail "the gateway sent null timestamps and sourceIp"
check_eq "no 400 for them" "$(metric 'jitr_intake_requests_total{status="400"}')" ""

# --- one batched array of 10 (events lost before: the devices wait PENDING_ACTIVATION) ----------
gateway_rule s3cret-new '"event_url": "http://127.0.0.1:1/lost"'
make_devices 10 "$T/b" batch-
gw --dir "$T/b" --first-only >/dev/null 2>&1 || true
ids_of "$T/b" >"$T/b.ids"
check_eq "10 devices pending, their events lost" "$(count_status PENDING_ACTIVATION "$T/b.ids")" 10
events_json "$T/b.ids" >"$T/batch10.json"
check_eq "array of 10 accepted" "$(post_file "$T/batch10.json")" 202
check_eq "10 stream ids in the reply" "$(jq '.queued | length' "$T/post.out")" 10
check_eq "nothing rejected" "$(jq -c .rejected "$T/post.out")" "[]"
# shellcheck disable=SC2046
check_eq "the 10 events queued, in order" "$(stream_certs $(jq -r '.queued[]' "$T/post.out") | paste -sd,)" \
  "$(paste -sd, "$T/b.ids")"
check_eq "array of 10: all provisioned" "$(wait_done 10 "$T/b.ids")" 10
check_eq "array of 10: 10 ACTIVE" "$(count_status ACTIVE "$T/b.ids")" 10
check_eq "ACTIVE, as the aws CLI sees it" "$(aws_status "$T/b/batch-000007.crt")" ACTIVE
gw --dir "$T/b" --timeout 30 >"$T/gw.json" 2>&1 && pass || { fail "batch devices connect"; cat "$T/gw.json" >&2; }

# --- the gateway batching like an HTTP action with enableBatching ----------------------------
gateway_rule s3cret-new "$AWS_NULL_TS"', "event_batching": {"maxBatchOpenMs": 200, "maxBatchSize": 10}'
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
make_devices 10 "$T/g" gwb-
gw --dir "$T/g" --timeout 60 >"$T/gw.json" 2>"$T/gw.err" && pass || {
  fail "devices through a batching rule"; cat "$T/gw.json" "$T/gw.err" >&2; tail -20 "$T/jitrd.log" >&2; }
check_eq "batching rule: connected" "$(jq -r .connected "$T/gw.json")" 10
stats >"$T/st.json"
check_eq "only arrays were sent" "$(jq '[.gateway_log[] | select(.kind == "event")] | length' "$T/st.json")" 0
jq -e '[.gateway_log[] | select(.kind == "event_batch")] | (map(.size) | add) >= 10 and
  (map(.size) | max) > 1 and all(.outcomes[-1] == 202)' "$T/st.json" >/dev/null && pass || {
  fail "events arrived in batches answered 202"; jq -c '[.gateway_log[] | select(.kind == "event_batch") | {size, outcomes}]' "$T/st.json" >&2; }
echo "batch sizes: $(jq -c '[.gateway_log[] | select(.kind == "event_batch") | .size]' "$T/st.json")"
gateway_rule s3cret-new '"event_url": "http://127.0.0.1:1/lost", "event_batching": null, "event_extra": null'
settle

# --- a mixed array: the good ones stored and 202, the never-valid ones counted -----------------
make_devices 2 "$T/m" mixed-
gw --dir "$T/m" --first-only >/dev/null 2>&1 || true
ids_of "$T/m" >"$T/m.ids"
FOREIGN_CA=$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)
$PY - "$T/m.ids" "$DEV_CA_ID" "$FOREIGN_CA" >"$T/mixed.json" <<'PY'
import json, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
ca, foreign = sys.argv[2], sys.argv[3]
def ev(cid, ca=ca, **kw):
    d = {"certificateId": cid, "caCertificateId": ca, "timestamp": 1795671724146,
         "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
         "certificateRegistrationTimestamp": None}
    d.update(kw)
    return json.dumps(d)
print("[" + ",".join([ev(ids[0]), "42", ev("ab" * 32, certificateStatus="ACTIVE"),
                      ev("cd" * 32, ca=foreign), '{"certificateId": "xyz"}', "null",
                      ev(ids[1], sourceIp="203.0.113.9")]) + "]")
PY
len0=$(rcli XLEN jitrca:jitr:events)
check_eq "mixed array accepted" "$(post_file "$T/mixed.json")" 202
check_eq "mixed: 2 queued" "$(jq '.queued | length' "$T/post.out")" 2
# shellcheck disable=SC2046
check_eq "mixed: the good ones, in order" "$(stream_certs $(jq -r '.queued[]' "$T/post.out") | paste -sd,)" \
  "$(paste -sd, "$T/m.ids")"
check_eq "mixed: rejected indexes" "$(jq -c '[.rejected[].index]' "$T/post.out")" "[1,2,3,4,5]"
check_eq "mixed: the foreign CA says so" "$(jq -r '.rejected[] | select(.index == 3) | .error.code' "$T/post.out")" denied
check_eq "mixed: only the good ones stored" "$(rcli XLEN jitrca:jitr:events)" "$((len0 + 2))"
check_eq "mixed: good ones provisioned" "$(wait_done 2 "$T/m.ids")" 2
check_eq "mixed: counted invalid" "$(metric 'jitr_intake_events_rejected_total{src="http",reason="invalid"}')" 4
check_eq "mixed: counted foreign" "$(metric 'jitr_intake_events_rejected_total{src="http",reason="foreign_ca"}')" 1
grep -q "intake refused event 4 of 7 of a batch: event: caCertificateId" "$T/jitrd.log" && pass || fail "refused element logged"

# --- bodies refused whole: 4xx, nothing queued ---------------------------------------------------
len0=$(rcli XLEN jitrca:jitr:events)
refused() { # NAME STATUS JSON-FILE [MESSAGE]
  check_eq "$1" "$(post_file "$3")" "$2"
  [ -z "${4:-}" ] || { jq -r .error.message "$T/post.out" | grep -qF -- "$4" && pass || { fail "$1: message"; cat "$T/post.out" >&2; }; }
}
echo '[]' >"$T/r.json"; refused "empty array" 400 "$T/r.json" "empty array"
echo "[$(cat "$T/batch10.json")]" >"$T/r.json"; refused "nested array" 400 "$T/r.json" "is an array"
(cat "$T/b.ids"; head -1 "$T/m.ids") >"$T/11.ids"; events_json "$T/11.ids" >"$T/r.json"; refused "11 events" 413 "$T/r.json" "more than 10 events"
$PY -c 'import sys; sys.stdout.write("[" + " " * 131072 + "]")' >"$T/r.json"; refused "above 131072 bytes" 413 "$T/r.json"
echo '[5, {"certificateId": "abc"}]' >"$T/r.json"; refused "nothing valid" 400 "$T/r.json" "no valid event in the batch of 2"
$PY - "$FOREIGN_CA" >"$T/r.json" <<'PY'
import json, sys
print(json.dumps([{"certificateId": "ef" * 32, "caCertificateId": sys.argv[1],
                   "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012"}]))
PY
refused "only foreign CAs" 403 "$T/r.json"
check_eq "nothing queued by refusals" "$(rcli XLEN jitrca:jitr:events)" "$len0"
# the largest batch AWS sends (131,072 bytes) is taken
$PY - "$T/b.ids" "$DEV_CA_ID" >"$T/max.json" <<'PY'
import json, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
body = json.dumps([{"certificateId": i, "caCertificateId": sys.argv[2],
                    "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
                    "padding": "p" * 6000} for i in ids])
sys.stdout.write(body[:-1] + " " * (131072 - len(body)) + "]")
PY
check_eq "131072-byte body" "$(stat -c %s "$T/max.json")" 131072
check_eq "131072-byte array accepted" "$(post_file "$T/max.json")" 202
check_eq "its 10 events queued (duplicates: harmless)" "$(rcli XLEN jitrca:jitr:events)" "$((len0 + 10))"

# --- destination confirmation -----------------------------------------------------------------
calls() { stats | jq '.operations.ConfirmTopicRuleDestination.requests // 0'; }
open_gate() { rcli DEL jitrca:jitr:confirm_gate >/dev/null; }
dest_status() { curl -sf "$STANDIN/_standin/internal/registry" |
  jq -r --arg a "$1" '.destinations[] | select(.arn == $a) | .status'; }
wait_enabled() { for _ in $(seq 75); do [ "$(dest_status "$1")" = ENABLED ] && break; sleep 0.2; done; dest_status "$1"; }
forge() { # ARN COUNT [TOKEN]: COUNT confirmation posts in parallel; prints "status count" lines
  $PY - "$INTAKE" "$1" "$2" "${3:-}" <<'PY'
import collections, concurrent.futures, json, secrets, sys, urllib.request, urllib.error
url, arn, n, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def one(_):
    t = token or secrets.token_hex(48)
    body = json.dumps({"arn": arn, "confirmationToken": t, "messageType": "DestinationConfirmation",
                       "enableUrl": "https://iot.us-east-1.amazonaws.com/confirmdestination/" + t})
    req = urllib.request.Request(url + "/v1/jitr/events/?confirmationToken=" + t, body.encode(),
        {"content-type": "application/json", "x-amz-rules-engine-message-type": "DestinationConfirmation",
         "x-amz-rules-engine-destination-arn": arn})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    got = collections.Counter(ex.map(one, range(n)))
for k, v in sorted(got.items()):
    print(k, v)
PY
}
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
aws --endpoint-url "$STANDIN" iot create-topic-rule-destination \
  --destination-configuration "httpUrlConfiguration={confirmationUrl=$INTAKE/v1/jitr/events}" >"$T/dest.json"
ARN=$(jq -r .topicRuleDestination.arn "$T/dest.json")
check_eq "destination confirmed" "$(wait_enabled "$ARN")" ENABLED
check_eq "one ConfirmTopicRuleDestination" "$(calls)" 1
check_eq "in the destination's region" "$(stats | jq -c .operations.ConfirmTopicRuleDestination.regions)" '{"us-east-1":1}'
grep -q "topic rule destination confirmed: $ARN" "$T/jitrd.log" && pass || fail "confirmation logged"

# 200 forged posts for our destination with random tokens: at most one gets through to AWS
open_gate
forge "$ARN" 200 >"$T/forge.txt"
sleep 1
echo "forged, random tokens: $(tr '\n' ' ' <"$T/forge.txt")"
c=$(calls); [ "$c" -le 2 ] && pass || fail "200 forged confirmations made $((c - 1)) AWS calls"
check_eq "forged: 429 for the rest" "$(awk '$1 == 429 {print $2}' "$T/forge.txt")" 199
check_eq "the destination is still ENABLED" "$(dest_status "$ARN")" ENABLED
# 200 replays of one token: one call at most
open_gate
before=$(calls)
TOKEN=$(head -c 24 /dev/urandom | xxd -p | tr -d '\n')
forge "$ARN" 200 "$TOKEN" >"$T/forge.txt"
sleep 1
echo "forged, one token: $(tr '\n' ' ' <"$T/forge.txt")"
c=$(calls); [ "$((c - before))" -le 1 ] && pass || fail "200 replays of one token made $((c - before)) AWS calls"
check_eq "replays answered 200" "$(awk '$1 == 200 {print $2}' "$T/forge.txt")" 200
# a foreign destination (another account, another region, another partition): none
open_gate
before=$(calls)
forge "arn:aws:iot:us-east-1:999999999999:ruledestination/http/x" 50 >"$T/forge.txt"
forge "arn:aws:iot:eu-west-1:123456789012:ruledestination/http/x" 50 >>"$T/forge.txt"
forge "arn:aws-cn:iot:cn-north-1:123456789012:ruledestination/http/x" 50 >>"$T/forge.txt"
sleep 1
check_eq "foreign ARNs: no AWS call" "$(calls)" "$before"
check_eq "foreign ARNs: 403" "$(awk '$1 == 403 {s += $2} END {print s}' "$T/forge.txt")" 150
check_eq "refusals counted" "$(metric 'jitr_destination_confirmations_total{result="foreign"}')" 150
[ "$(metric 'jitr_destination_confirmations_total{result="rate_limited"}')" -ge 199 ] && pass || fail "rate-limited counted"
[ "$(grep -c 'destination confirmation refused' "$T/jitrd.log")" -le 4 ] && pass || fail "refusals flooded the log"

# AWS fails the confirmation (3 x 503: the client's attempts): jitrd tries again and succeeds
open_gate
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"next_faults": {"ConfirmTopicRuleDestination": ["503", "503", "503"]}}' >/dev/null
before=$(calls)
aws --endpoint-url "$STANDIN" iot update-topic-rule-destination --arn "$ARN" --status IN_PROGRESS
check_eq "confirmed after AWS failed" "$(wait_enabled "$ARN")" ENABLED
check_eq "3 failed attempts + 1" "$(($(calls) - before))" 4
grep -q "ConfirmTopicRuleDestination for $ARN failed (call 1 of 6), again in" "$T/jitrd.log" && pass || fail "retry logged"
check_eq "retry counted" "$(metric 'jitr_destination_confirmations_total{result="retry"}')" 1

# jitr.destination_arns: only those; each confirmed in its own region
jitrd_stop
EU_ARN=arn:aws:iot:eu-west-1:123456789012:ruledestination/http/eu-1
config "\"destination_arns\": \"$EU_ARN, $ARN\""
jitrd_start
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"extra_regions": ["eu-west-1"]}' >/dev/null
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
open_gate
forge "$EU_ARN" 1 >"$T/forge.txt"
for _ in $(seq 50); do [ "$(stats | jq '.operations.ConfirmTopicRuleDestination.requests // 0')" -ge 1 ] && break; sleep 0.2; done
check_eq "eu-west-1 destination: signed for eu-west-1" "$(stats | jq -c .operations.ConfirmTopicRuleDestination.regions)" '{"eu-west-1":1}'
grep -q "ConfirmTopicRuleDestination for $EU_ARN failed after 1 call(s): .*Invalid confirmation token" "$T/jitrd.log" && pass || fail "AWS refused the forged token, not retried"
open_gate
before=$(calls)
forge "arn:aws:iot:us-east-1:123456789012:ruledestination/http/other" 20 >"$T/forge.txt"
check_eq "not in the list: 403" "$(awk '$1 == 403 {print $2}' "$T/forge.txt")" 20
check_eq "not in the list: no call" "$(calls)" "$before"
aws --endpoint-url "$STANDIN" iot update-topic-rule-destination --arn "$ARN" --status IN_PROGRESS
check_eq "listed destination confirmed" "$(wait_enabled "$ARN")" ENABLED
check_eq "in us-east-1" "$(stats | jq -c .operations.ConfirmTopicRuleDestination.regions)" '{"eu-west-1":1,"us-east-1":1}'
bad_arns() {
  jq --arg a "$1" '.jitr.destination_arns = $a' "$CFG" >"$T/bad.json"
  expect_fail 2 "$2" "$JITRD" --check-config --config "$T/bad.json"
}
bad_arns "arn:aws:iot:us-east-1:123456789012:thing/x" "jitr.destination_arns: 'arn:aws:iot:us-east-1:123456789012:thing/x' is not the ARN of an AWS IoT topic rule destination"
bad_arns "arn:aws:iot:cn-north-1:123456789012:ruledestination/http/1" "region cn-north-1 is in partition aws-cn, not aws"
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' -d '{"extra_regions": []}' >/dev/null

jitrd_stop
grep -q '"level":"error"' "$T/jitrd.log" && { fail "errors in the jitrd log"; grep '"level":"error"' "$T/jitrd.log" | head >&2; } || pass
grep -q "Sanitizer\|runtime error" "$T/jitrd.log" && { fail "sanitizer report"; grep -A5 "Sanitizer\|runtime error" "$T/jitrd.log" | head -30 >&2; } || pass
finish
