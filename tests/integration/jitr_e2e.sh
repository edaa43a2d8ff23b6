#!/usr/bin/env bash
# JITR end to end through the AWS IoT stand-ins (run under tests/sim/run_sim.py): one device
# signed by our CA connects to the gateway, is refused, provisioned (thing named by its CN, the
# shared least-privilege policy, attachments, ACTIVE last) and connects; four AWS calls; a
# duplicate and a reordered event change nothing; jitrctl jitr status shows the trace. Refusals
# with nothing queued: missing/wrong secret, garbage, oversized, wrong types, unknown CA, and (raw
# on a socket) a Content-Length above the limit, a malformed request line or header, a GET, an
# unknown path, each a JSON error; the old secret still works (rotation). A certificate we did
# not issue (AWS holds it without a CA) is left alone; a revoked serial → REVOKED. The destination
# confirmation is answered and confirmed. /metrics. The AWS JITP template from the documentation
# runs unchanged. The intake over TLS.
source "$(dirname "$0")/jitr_lib.sh"

# --- the "jitr" section of the one configuration file, checked by jitrd --check-config ----------
ok "$JITRD" --check-config --config "$CFG"
grep -q "JITR: intake 127.0.0.1:$JITR_PORT" "$T/out" && pass || fail "check-config names the JITR intake"
bad_jitr() { # EXPECTED-MESSAGE JITR-SECTION-JSON
  jq --argjson j "$2" '.jitr = (.jitr + $j)' "$CFG" >"$T/bad.json"
  expect_fail 2 "$1" "$JITRD" --check-config --config "$T/bad.json"
}
bad_jitr "unknown key 'jitr.bogus'" '{"bogus": 1}'
bad_jitr "key 'jitr.enabled' must be true or false" '{"enabled": "yes"}'
bad_jitr "jitr.on_reject must be revoke or leave-pending, not 'drop'" '{"on_reject": "drop"}'
bad_jitr "jitr.thing_conflict must be keep or fail" '{"thing_conflict": "merge"}'
bad_jitr "key 'jitr.max_in_flight' must be between 1 and 10000, not 0" '{"max_in_flight": 0}'
bad_jitr "jitr.backoff_max_ms must be below jitr.claim_idle_ms" '{"backoff_max_ms": 5000}'
bad_jitr "jitr.tls_cert_file and jitr.tls_key_file go together" '{"tls_cert_file": "/x.pem"}'
bad_jitr "JITR needs an intake" '{"listen": ""}'
bad_jitr "jitr.sqs_queue_url" '{"sqs_queue_url": "ftp://sqs.us-east-1.amazonaws.com/123456789012/q"}'
jq '.jitr.sqs_queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jitr-events"' "$CFG" >"$T/sqs.json"
ok "$JITRD" --check-config --config "$T/sqs.json"
grep -q "SQS https://sqs.eu-west-1.amazonaws.com/123456789012/jitr-events" "$T/out" && pass || fail "check-config names the SQS queue"
jq --arg t "$T/none.json" '.jitr.template = $t' "$CFG" >"$T/bad.json"
expect_fail 4 "$T/none.json" "$JITRD" --check-config --config "$T/bad.json"
jq '.jitr = 5' "$CFG" >"$T/bad.json"
expect_fail 2 "key 'jitr' must be an object" "$JITRD" --check-config --config "$T/bad.json"
jitrd_start
gateway_rule

# --- one device ---------------------------------------------------------------------------------
make_devices 1 "$T/d1"
D=$T/d1/dev-000001
check_eq "unknown to AWS before" "$(aws_status "$D.crt")" NONE
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
gw --dir "$T/d1" --timeout 30 >"$T/gw.json" 2>"$T/gw.err" && pass || { fail "device did not connect"; cat "$T/gw.json" "$T/gw.err" >&2; tail -30 "$T/jitrd.log" >&2; }
check_eq "refused the first time" "$(jq -r .first_refused "$T/gw.json")" 1
check_eq "connected after provisioning" "$(jq -r .connected "$T/gw.json")" 1
stats >"$T/st.json" # before the test's own aws CLI calls
check_eq "ACTIVE in AWS" "$(aws_status "$D.crt")" ACTIVE
CID=$(cert_id_of "$D.crt")
aws --endpoint-url "$STANDIN" iot describe-thing --thing-name dev-000001 >"$T/thing.json" 2>&1 && pass || { fail "thing dev-000001"; cat "$T/thing.json" >&2; }
check_eq "thing attribute" "$(jq -r .attributes.provisioner "$T/thing.json")" jitrca
aws --endpoint-url "$STANDIN" iot list-principal-things --principal "arn:aws:iot:us-east-1:123456789012:cert/$CID" >"$T/pt.json"
check_eq "thing attached" "$(jq -c .things "$T/pt.json")" '["dev-000001"]'
aws --endpoint-url "$STANDIN" iot list-attached-policies --target "arn:aws:iot:us-east-1:123456789012:cert/$CID" >"$T/pol.json"
# the template's PolicyDocument is the policy named by its SHA-256
POLICY=$(jq -j .Resources.policy.Properties.PolicyDocument "$JITRCA_SOURCE_DIR/policies/templates/default.json" | sha256sum | cut -d' ' -f1)
check_eq "policy attached" "$(jq -r '.policies[0].policyName' "$T/pol.json")" "$POLICY"
aws --endpoint-url "$STANDIN" iot get-policy --policy-name "$POLICY" >"$T/gp.json"
jq -r .policyDocument "$T/gp.json" | jq -e '.Statement[0].Resource | test("client/\\$\\{iot:Connection.Thing.ThingName\\}")' >/dev/null && pass || fail "policy uses the thing-name variable"
for op in CreateThing AttachPolicy AttachThingPrincipal UpdateCertificate; do
  check_eq "$op once" "$(jq -r ".operations.$op.admitted // 0" "$T/st.json")" 1
done
check_eq "one DescribeCertificate (AWS's record before UpdateCertificate)" "$(jq -r '.operations.DescribeCertificate.admitted // 0' "$T/st.json")" 1
check_eq "one CreatePolicy" "$(jq -r '.operations.CreatePolicy.admitted // 0' "$T/st.json")" 1
check_eq "state DONE" "$(rcli HGET "jitrca:jitr:dev:$CID" state)" DONE
ok "$JITRCTL" --json jitr status "$CID"
check_eq "status by id" "$(jq -r .state "$T/out")" DONE
jq -r '.trace[]' "$T/out" | grep -q "CREATE_THING" && pass || { fail "trace lists CREATE_THING"; cat "$T/out" >&2; }
ok "$JITRCTL" jitr status "$CID"
grep -Eq '^  20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}[.][0-9]{3}Z .*CREATE_THING' "$T/out" && pass || { fail "text trace with UTC times"; cat "$T/out" >&2; }
SERIAL=$(openssl x509 -in "$D.crt" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//')
ok "$JITRCTL" --json jitr status "$SERIAL"
check_eq "status by serial" "$(jq -r .certificate_id "$T/out")" "$CID"
# as openssl prints it (upper case, a leading zero digit when the top nibble is 0)
ok "$JITRCTL" --json jitr status "$(openssl x509 -in "$D.crt" -noout -serial | cut -d= -f2)"
check_eq "status by openssl's serial" "$(jq -r .certificate_id "$T/out")" "$CID"
ok "$JITRCTL" --json jitr status "000$SERIAL"
check_eq "status by serial with extra zeros" "$(jq -r .certificate_id "$T/out")" "$CID"
check_eq "audit activation" "$(count_records jitr_activate)" 1

# --- duplicates and reordering: the event again (old secret, rotation) and late ------------------
ev() { # cert_id [ca_id] [status]
  printf '{"certificateId":"%s","caCertificateId":"%s","timestamp":1795671724146,"certificateStatus":"%s","awsAccountId":"123456789012","certificateRegistrationTimestamp":"1795671724001"}' \
    "$1" "${2:-$DEV_CA_ID}" "${3:-PENDING_ACTIVATION}"
}
post() { # secret body -> prints status
  curl -s -o "$T/post.out" -w '%{http_code}' -X POST "$INTAKE/v1/jitr/events" \
    -H 'content-type: application/json' ${1:+-H "x-jitr-secret: $1"} --data-binary "$2"
}
before=$(rcli XLEN jitrca:jitr:events)
check_eq "duplicate accepted (old secret)" "$(post s3cret-old "$(ev "$CID")")" 202
check_eq "duplicate accepted" "$(post s3cret-new "$(ev "$CID")")" 202
sleep 2
stats >"$T/st2.json"
check_eq "duplicates: no AWS call" "$(jq -r '.operations.CreateThing.requests' "$T/st2.json")" 1
check_eq "audit still one activation" "$(count_records jitr_activate)" 1

# --- refusals: 4xx and nothing queued --------------------------------------------------------
len0=$(rcli XLEN jitrca:jitr:events)
check_eq "missing secret" "$(post "" "$(ev "$CID")")" 401
check_eq "wrong secret" "$(post wrong "$(ev "$CID")")" 401
check_eq "garbage" "$(post s3cret-new 'garbage{')" 400
grep -q "not JSON" "$T/post.out" && pass || { fail "garbage message"; cat "$T/post.out" >&2; }
check_eq "wrong type" "$(post s3cret-new '{"certificateId":5}')" 400
check_eq "bad id" "$(post s3cret-new "$(ev abc)")" 400
check_eq "other status" "$(post s3cret-new "$(ev "$CID" "$DEV_CA_ID" ACTIVE)")" 400
check_eq "unknown CA" "$(post s3cret-new "$(ev "$CID" "$CID")")" 403
grep -q "not one of our CAs" "$T/post.out" && pass || { fail "unknown CA message"; cat "$T/post.out" >&2; }
big=$(head -c 20000 /dev/zero | tr '\0' ' ')
check_eq "oversized" "$(post s3cret-new "{$big}")" 413
check_eq "oversized: JSON error" "$(jq -r .error.code "$T/post.out")" too_large
# what curl would never send, raw on a socket: every refusal is our JSON error, nothing queued
raw_http() { # REQUEST (printf escapes) -> prints the status; the reply body in $T/raw.out
  python3 - "$JITR_PORT" "$1" "$T/raw.out" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
data = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
except OSError:
    pass
head, _, body = data.partition(b"\r\n\r\n")
open(sys.argv[3], "wb").write(body)
print(head.split(b" ")[1].decode() if head.startswith(b"HTTP/1.1 ") else "no reply")
PY
}
json_error() { # NAME CODE: $T/raw.out is {"error":{"code":CODE,"message":...}}
  jq -e --arg c "$2" '.error.code == $c and (.error.message | length > 0)' "$T/raw.out" >/dev/null &&
    pass || { fail "$1: JSON error $2"; cat "$T/raw.out" >&2; }
}
check_eq "Content-Length above the limit" "$(raw_http 'POST /v1/jitr/events HTTP/1.1\r\nHost: x\r\nx-jitr-secret: s3cret-new\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"certificateId":')" 413
json_error "Content-Length above the limit" too_large
check_eq "malformed request line" "$(raw_http 'GARBAGE\r\n\r\n')" 400
json_error "malformed request line" bad_request
grep -q "malformed request line" "$T/raw.out" && pass || fail "malformed request line: message"
check_eq "malformed header" "$(raw_http 'POST /v1/jitr/events HTTP/1.1\r\nHost: x\r\nx-jitr-secret s3cret-new\r\nContent-Length: 2\r\n\r\n{}')" 400
json_error "malformed header" bad_request
check_eq "GET on the events path" "$(raw_http 'GET /v1/jitr/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')" 405
json_error "GET on the events path" invalid
check_eq "unknown path" "$(raw_http 'POST /v1/other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')" 404
json_error "unknown path" not_found
check_eq "nothing queued by refusals" "$(rcli XLEN jitrca:jitr:events)" "$len0"

# --- a certificate we did not issue: signed by a foreign CA registered in AWS ------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil.key" \
  -out "$T/evil.pem" -subj "/CN=JITR Test Devices/O=Acme" -days 5 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
mkdir -p "$T/forged"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/forged/evil-1.key" \
  -out "$T/forged/evil-1.csr" -subj /CN=evil-1 2>/dev/null
openssl x509 -req -in "$T/forged/evil-1.csr" -CA "$T/evil.pem" -CAkey "$T/evil.key" -set_serial 99 \
  -days 2 -out "$T/forged/evil-1.crt" 2>/dev/null
# the attacker's CA is registered in the account (SNI_ONLY needs no verification certificate)
aws --endpoint-url "$STANDIN" iot register-ca-certificate --ca-certificate "file://$T/evil.pem" \
  --certificate-mode SNI_ONLY --set-as-active --allow-auto-registration >"$T/evilca.json"
EVIL_CA=$(jq -r .certificateId "$T/evilca.json")
FID=$(cert_id_of "$T/forged/evil-1.crt")
# its registration event names its CA: refused at the intake (not ours)
check_eq "forged CA refused" "$(post s3cret-new "$(ev "$FID" "$EVIL_CA")")" 403
# an event claiming our CA for a certificate AWS holds without a CA: AWS's record says it is not
# ours, so nothing is changed in AWS (it stays INACTIVE), and the reason is recorded
aws --endpoint-url "$STANDIN" iot register-certificate-without-ca --certificate-pem "file://$T/forged/evil-1.crt" \
  --status INACTIVE >/dev/null
check_eq "forged event queued" "$(post s3cret-new "$(ev "$FID")")" 202
for _ in $(seq 50); do [ "$(rcli HGET "jitrca:jitr:dev:$FID" state)" = IGNORED ] && break; sleep 0.2; done
check_eq "forged: left alone" "$(rcli HGET "jitrca:jitr:dev:$FID" state)" IGNORED
rcli HGET "jitrca:jitr:dev:$FID" reason | grep -q "AWS registered it without a CA, not under one of our CAs" && pass || { fail "forged reason"; rcli HGETALL "jitrca:jitr:dev:$FID" >&2; }
check_eq "forged: untouched in AWS" "$(aws_status "$T/forged/evil-1.crt")" INACTIVE
check_eq "audit: left alone" "$(count_records jitr_ignore)" 1

# --- a revoked serial: REVOKED in AWS, never activated ----------------------------------------
make_devices 1 "$T/rv" rev-
R=$T/rv/rev-000001
RSERIAL=$(openssl x509 -in "$R.crt" -noout -serial | cut -d= -f2)
ok "$JITRCTL" revoke "$RSERIAL" --reason keyCompromise
gw --dir "$T/rv" --first-only >/dev/null
RID=$(cert_id_of "$R.crt")
for _ in $(seq 50); do [ "$(rcli HGET "jitrca:jitr:dev:$RID" state)" = REJECTED ] && break; sleep 0.2; done
check_eq "revoked: rejected" "$(rcli HGET "jitrca:jitr:dev:$RID" state)" REJECTED
check_eq "revoked: REVOKED in AWS" "$(aws_status "$R.crt")" REVOKED
check_eq "audit rejections" "$(count_records jitr_reject)" 1
gw --dir "$T/rv" --timeout 3 >/dev/null && fail "a revoked device connected" || pass

# --- a lost event: the rule delivers nothing; the reconciler finds the pending certificate ------
gateway_rule s3cret-new '"event_url": "http://127.0.0.1:1/lost"'
make_devices 1 "$T/lost" lost-
gw --dir "$T/lost" --first-only >/dev/null
LID=$(cert_id_of "$T/lost/lost-000001.crt")
# (the reconciler may find it before this line runs on a loaded machine: the stream says who
# queued it, rather than AWS's status at a moment)
for _ in $(seq 100); do [ "$(rcli HGET "jitrca:jitr:dev:$LID" state)" = DONE ] && break; sleep 0.2; done
check_eq "lost: provisioned" "$(rcli HGET "jitrca:jitr:dev:$LID" state)" DONE
rcli --raw XRANGE jitrca:jitr:events - + | awk -v id="$LID" '
  $0 == "cert" { getline; c = $0 } $0 == "src" { getline; if (c == id) print $0 }' | sort -u >"$T/lost.src"
check_eq "lost: queued by the reconciler only" "$(tr '\n' ' ' <"$T/lost.src")" "reconciler "
check_eq "lost: ACTIVE" "$(aws_status "$T/lost/lost-000001.crt")" ACTIVE
gateway_rule

# --- destination confirmation ------------------------------------------------------------------
aws --endpoint-url "$STANDIN" iot create-topic-rule-destination \
  --destination-configuration "httpUrlConfiguration={confirmationUrl=$INTAKE/v1/jitr/events}" >"$T/dest.json"
ARN=$(jq -r .topicRuleDestination.arn "$T/dest.json")
for _ in $(seq 50); do
  st=$(aws --endpoint-url "$STANDIN" iot get-topic-rule-destination --arn "$ARN" --query topicRuleDestination.status --output text)
  [ "$st" = ENABLED ] && break; sleep 0.2
done
check_eq "destination confirmed" "$st" ENABLED
grep -q "topic rule destination confirmed" "$T/jitrd.log" && pass || fail "confirmation logged"

# --- metrics ----------------------------------------------------------------------------------
curl -sf "$INTAKE/metrics" >"$T/metrics"
grep -q '^jitr_outcomes_total{outcome="activated"} 2$' "$T/metrics" && pass || { fail "metrics activated"; cat "$T/metrics" >&2; }
grep -q 'jitr_aws_calls_total{api="CreateThing",result="ok"} 2' "$T/metrics" && pass || fail "metrics aws calls"
grep -Eq '^jitr_aws_pacing_ms_total\{api="UpdateCertificate"\} [0-9]+$' "$T/metrics" && pass || fail "metrics pacing ms"
grep -q '^jitr_queue_depth 0$' "$T/metrics" && pass || { fail "queue drained"; grep queue "$T/metrics" >&2; }
grep -q '^jitr_first_event_to_active_ms_count 2$' "$T/metrics" && pass || fail "latency histogram"

# --- the JITP template from AWS's documentation, unchanged ------------------------------------
jitrd_stop
aws --endpoint-url "$STANDIN" iot create-thing-type --thing-type-name lightBulb-versionA >/dev/null
aws --endpoint-url "$STANDIN" iot create-thing-group --thing-group-name v1-lightbulbs >/dev/null
aws --endpoint-url "$STANDIN" iot create-thing-group --thing-group-name DE >/dev/null
write_config "\"template\": \"$JITRCA_SOURCE_DIR/tests/unit/jitr/data/aws-jitp-doc-template.json\", \"policy_name\": \"jitp-doc\""
# the template needs Country and SerialNumber: jitrd refuses it while the device profile does not
# require C and serialNumber (a device without them would be a dead letter)
expect_fail 2 "for CA 'devices', profile 'device': parameter 'AWS::IoT::Certificate::" "$JITRD" --check-config --config "$CFG"
grep -q "profile 'device' does not require" "$T/err" && pass || { fail "check-config names the profile's missing requirement"; cat "$T/err" >&2; }
mkdir -p "$T/profiles"
jq '.subject.required = ["CN", "C", "serialNumber"]' "$JITRCA_SOURCE_DIR/policies/profiles/device.json" >"$T/profiles/device.json"
cp "$JITRCA_SOURCE_DIR/policies/profiles/station.json" "$T/profiles/"
jq --arg p "$T/profiles" '.profiles_dir = $p' "$CFG" >"$T/cfg.tmp" && mv "$T/cfg.tmp" "$CFG"
ok "$JITRD" --check-config --config "$CFG"
jitrd_start
mkdir -p "$T/jd"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/jd/bulb-7.key" \
  -out "$T/jd/bulb-7.csr" -subj "/C=DE/O=Acme/serialNumber=SN-7/CN=bulb-7" 2>/dev/null
ok "$JITRCTL" sign --ca devices --csr "$T/jd/bulb-7.csr" --out "$T/jd/bulb-7.crt"
gw --dir "$T/jd" --timeout 30 >"$T/gw.json" && pass || { fail "JITP-template device"; cat "$T/gw.json" >&2; tail -20 "$T/jitrd.log" >&2; }
aws --endpoint-url "$STANDIN" iot describe-thing --thing-name bulb-7 >"$T/bulb.json"
check_eq "template thing type" "$(jq -r .thingTypeName "$T/bulb.json")" lightBulb-versionA
check_eq "template attribute" "$(jq -r .attributes.serialNumber "$T/bulb.json")" SN-7
aws --endpoint-url "$STANDIN" iot list-thing-groups-for-thing --thing-name bulb-7 >"$T/groups.json"
check_eq "template groups" "$(jq -c '[.thingGroups[].groupName] | sort' "$T/groups.json")" '["DE","v1-lightbulbs"]'
aws --endpoint-url "$STANDIN" iot get-policy --policy-name jitp-doc >/dev/null 2>&1 && pass || fail "template policy created"

# --- the intake over TLS (jitr.tls_cert_file/tls_key_file; no client certificate asked for) ----
jitrd_stop
write_config "\"tls_cert_file\": \"$T/srv.pem\", \"tls_key_file\": \"$T/srv.key\""
INTAKE=https://localhost:$JITR_PORT
export CURL_CA_BUNDLE=$T/srv.pem
jitrd_start
check_eq "TLS: healthz" "$(curl -s -o /dev/null -w '%{http_code}' "$INTAKE/healthz")" 200
len0=$(rcli XLEN jitrca:jitr:events)
check_eq "TLS: wrong secret" "$(post wrong "$(ev "$CID")")" 401
check_eq "TLS: nothing queued by the refusal" "$(rcli XLEN jitrca:jitr:events)" "$len0"
check_eq "TLS: event accepted" "$(post s3cret-new "$(ev "$CID")")" 202
check_eq "TLS: queued" "$(rcli XLEN jitrca:jitr:events)" "$((len0 + 1))"
check_eq "TLS: plain HTTP is not served" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$JITR_PORT/healthz")" 000

# --- a CA registered while flows are in flight is known to the intake within seconds -----------
# (CA rotation without downtime: the CA table used to be reloaded only when a worker was idle)
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"faults": {"timeout_rate": 1.0, "timeout_ms": 60000, "operations": ["CreateThing"]}}' >/dev/null
make_devices 2 "$T/busy" busy-
for f in "$T"/busy/*.crt; do check_eq "busy device queued" "$(post s3cret-new "$(ev "$(cert_id_of "$f")")")" 202; done
ok "$JITRCTL" ca init late --subject "/CN=Late Devices CA"
ok "$JITRCTL" ca register late
LATE_ID=$(jq -r .fingerprint "$JITRCA_DATA_DIR/ca/late/ca.json")
late_code=000
for _ in $(seq 50); do
  late_code=$(post s3cret-new "$(ev "$(printf 'ab%.0s' $(seq 32))" "$LATE_ID")")
  [ "$late_code" = 202 ] && break; sleep 0.5
done
# still in flight: CreateThing hangs in the stand-in, so neither device can have reached DONE
busy_done=$(for f in "$T"/busy/*.crt; do rcli HGET "jitrca:jitr:dev:$(cert_id_of "$f")" state; done | grep -c DONE || true)
check_eq "late CA's event accepted while flows are in flight" "$late_code" 202
check_eq "the flows were still in flight then" "$busy_done" 0
check_eq "their CreateThing calls were hanging" "$(stats | jq '.operations.CreateThing.admitted >= 2')" true
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' -d '{"faults": {"timeout_rate": 0}}' >/dev/null

# --- SIGTERM drains JITR too: the intake stops accepting, the workers exit 0 -------------------
drains=$(grep -c 'jitr: draining' "$T/jitrd.log")
kill -TERM "$JPID"
rc=0; for _ in $(seq 80); do kill -0 "$JPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$JPID" 2>/dev/null && { fail "jitrd still running 8 s after SIGTERM"; jitrd_stop; } || { wait "$JPID" || rc=$?; check_eq "exit after SIGTERM" "$rc" 0; JPID=; }
check_eq "both workers drained JITR" "$(grep -c 'jitr: draining' "$T/jitrd.log")" "$((drains + 2))"
check_eq "TLS intake closed" "$(curl -s -o /dev/null -w '%{http_code}' "$INTAKE/healthz")" 000
unset CURL_CA_BUNDLE

ok "$JITRCTL" audit verify
grep -q '"level":"error"' "$T/jitrd.log" && { fail "errors in the jitrd log"; grep '"level":"error"' "$T/jitrd.log" | head >&2; } || pass
finish
