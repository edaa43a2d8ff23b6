#!/usr/bin/env bash
# Conformance of the AWS IoT stand-ins, driven by the real `aws` CLI and openssl.
#
# Usage: tests/sim/conformance.sh            (starts and stops the simulation itself)
#        run_sim.py run -- bash conformance.sh (uses the running simulation's environment)
# Prints one line per check and a summary "N passed, M failed"; exits non-zero on any failure,
# 77 (skip) when the aws CLI, openssl, jq, curl or moto is missing.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in aws openssl jq curl; do
    command -v "$tool" >/dev/null || { echo "$tool not found: skipped"; exit 77; }
done
python3 -c 'import moto, boto3, cryptography' 2>/dev/null \
    || { echo "moto not installed (pip install 'moto[server]'): skipped"; exit 77; }
if [ -z "${JITRCA_SIM_IOT_URL:-}" ]; then
    exec python3 "$HERE/run_sim.py" run -- bash "$0" "$@"
fi

# Exact outcomes: no client-side retries, no pager, no user profile (run_sim sets the files).
export AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=1 AWS_PAGER=""
URL=$JITRCA_SIM_IOT_URL
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1: $2"; }
iot() { aws --endpoint-url "$URL" --region us-east-1 --output json iot "$@"; }
jget() { jq -r "$1" "$W/out"; }
admin() { curl -sf -X POST -H 'Content-Type: application/json' -d "$2" "$URL$1"; }

# run NAME CMD... : the command must succeed; its stdout is left in $W/out
run() {
    local name=$1
    shift
    if "$@" >"$W/out" 2>"$W/err"; then ok "$name"; return 0; fi
    bad "$name" "exit $?: $(head -c 300 "$W/err")"
    return 1
}
# fails NAME CODE CMD... : the command must fail with AWS error code CODE
fails() {
    local name=$1 code=$2
    shift 2
    if "$@" >"$W/out" 2>"$W/err"; then bad "$name" "succeeded, expected $code"; return 1; fi
    if grep -q "($code)" "$W/err"; then ok "$name"; return 0; fi
    bad "$name" "expected ($code), got: $(head -c 300 "$W/err")"
    return 1
}
# check NAME ACTUAL EXPECTED
check() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "got '$2', expected '$3'"; fi
}
der_id() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }

# --- registration code and CA --------------------------------------------------------------
run "get-registration-code" iot get-registration-code
CODE=$(jget .registrationCode)
[[ $CODE =~ ^[0-9a-f]{64}$ ]] && ok "registration code is 64 hex" || bad "registration code" "$CODE"
run "get-registration-code again" iot get-registration-code
check "registration code is stable" "$(jget .registrationCode)" "$CODE"

cd "$W"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=Conformance Issuing CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out ver.key 2>/dev/null
openssl req -new -key ver.key -subj "/CN=$CODE" -out ver.csr 2>/dev/null
openssl x509 -req -in ver.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 -out ver.pem 2>/dev/null
openssl req -new -key ver.key -subj "/CN=not-the-code" -out bad.csr 2>/dev/null
openssl x509 -req -in bad.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 -out badver.pem 2>/dev/null
CAID=$(der_id ca.pem)
cd - >/dev/null

fails "register-ca-certificate: wrong CN refused" RegistrationCodeValidationException \
    iot register-ca-certificate --ca-certificate "file://$W/ca.pem" \
    --verification-certificate "file://$W/badver.pem"
run "register-ca-certificate" iot register-ca-certificate --ca-certificate "file://$W/ca.pem" \
    --verification-certificate "file://$W/ver.pem" --set-as-active --allow-auto-registration
check "CA certificateId = SHA-256 of DER" "$(jget .certificateId)" "$CAID"
check "CA ARN" "$(jget .certificateArn)" "arn:aws:iot:us-east-1:123456789012:cacert/$CAID"
fails "register-ca-certificate: duplicate" ResourceAlreadyExistsException \
    iot register-ca-certificate --ca-certificate "file://$W/ca.pem" \
    --verification-certificate "file://$W/ver.pem"
run "describe-ca-certificate" iot describe-ca-certificate --certificate-id "$CAID"
check "CA status/auto-registration/mode" \
    "$(jget '.certificateDescription | [.status, .autoRegistrationStatus, .certificateMode] | join(",")')" \
    "ACTIVE,ENABLE,DEFAULT"
run "update-ca-certificate" iot update-ca-certificate --certificate-id "$CAID" \
    --new-auto-registration-status DISABLE
iot describe-ca-certificate --certificate-id "$CAID" >"$W/out" 2>"$W/err"
check "auto-registration disabled" "$(jget .certificateDescription.autoRegistrationStatus)" DISABLE
run "update-ca-certificate back" iot update-ca-certificate --certificate-id "$CAID" \
    --new-status ACTIVE --new-auto-registration-status ENABLE

# --- devices: one by JITR through the gateway (openssl s_client), two registered ------------
for i in 1 2 3; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$W/dev$i.key" 2>/dev/null
    openssl req -new -key "$W/dev$i.key" -subj "/CN=dev-$i" -out "$W/dev$i.csr" 2>/dev/null
    openssl x509 -req -in "$W/dev$i.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
        -days 10 -sha256 -out "$W/dev$i.pem" 2>/dev/null
done
DEV1=$(der_id "$W/dev1.pem")
GW="$JITRCA_SIM_GATEWAY_HOST:$JITRCA_SIM_GATEWAY_PORT"
device() {  # device N BYTES: TLS to the gateway with device N's certificate, send BYTES, print hex
    printf "$2" | timeout 15 openssl s_client -quiet -connect "$GW" -servername localhost \
        -CAfile "$JITRCA_SIM_GATEWAY_CA" -cert "$W/dev$1.pem" -key "$W/dev$1.key" 2>/dev/null \
        | od -An -tx1 | tr -d ' \n'
}
CONNECT='\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05dev-1'
DISCONNECT='\xe0\x00'
device 1 "$CONNECT$DISCONNECT" >/dev/null
run "describe-certificate (JITR)" iot describe-certificate --certificate-id "$DEV1"
check "JITR certificate pending, under the CA" \
    "$(jget '.certificateDescription | [.status, .caCertificateId] | join(",")')" \
    "PENDING_ACTIVATION,$CAID"
for i in 2 3; do
    run "register-certificate dev-$i" iot register-certificate \
        --certificate-pem "file://$W/dev$i.pem" --ca-certificate-pem "file://$W/ca.pem" --status INACTIVE
done
SEEN=""
MARKER=()
for _ in 1 2 3 4; do
    iot list-certificates-by-ca --ca-certificate-id "$CAID" --page-size 1 --no-paginate \
        "${MARKER[@]}" >"$W/out" 2>"$W/err" || break
    SEEN="$SEEN $(jget '.certificates[].certificateId')"
    NEXT=$(jget '.nextMarker // empty')
    [ -z "$NEXT" ] && break
    MARKER=(--marker "$NEXT")
done
check "list-certificates-by-ca pages of 1 cover 3 certificates" \
    "$(echo $SEEN | tr ' ' '\n' | sort | tr '\n' ' ')" \
    "$(for i in 1 2 3; do der_id "$W/dev$i.pem"; done | sort | tr '\n' ' ')"

# --- provisioning, in the JITR handler's order -----------------------------------------------
ARN="arn:aws:iot:us-east-1:123456789012:cert/$DEV1"
run "create-thing" iot create-thing --thing-name dev-1 --attribute-payload '{"attributes":{"batch":"B7"}}'
TID=$(jget .thingId)
run "create-thing again, same attributes" iot create-thing --thing-name dev-1 \
    --attribute-payload '{"attributes":{"batch":"B7"}}'
check "idempotent thingId" "$(jget .thingId)" "$TID"
fails "create-thing, different attributes" ResourceAlreadyExistsException \
    iot create-thing --thing-name dev-1 --attribute-payload '{"attributes":{"batch":"B8"}}'
run "describe-thing" iot describe-thing --thing-name dev-1
check "thing attributes kept" "$(jget .attributes.batch)" B7
fails "create-thing, bad name" InvalidRequestException iot create-thing --thing-name "bad name"
DOC='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}'
run "create-policy" iot create-policy --policy-name jitr-device --policy-document "$DOC"
fails "create-policy, existing" ResourceAlreadyExistsException \
    iot create-policy --policy-name jitr-device --policy-document "$DOC"
run "get-policy" iot get-policy --policy-name jitr-device
check "default version" "$(jget .defaultVersionId)" 1
run "create-policy-version" iot create-policy-version --policy-name jitr-device \
    --policy-document "$DOC" --set-as-default
run "list-policy-versions" iot list-policy-versions --policy-name jitr-device
check "two versions, v2 default" "$(jget '[.policyVersions[] | "\(.versionId):\(.isDefaultVersion)"] | sort | join(",")')" \
    "1:false,2:true"
fails "delete-policy-version, default" DeleteConflictException \
    iot delete-policy-version --policy-name jitr-device --policy-version-id 2
run "delete-policy-version" iot delete-policy-version --policy-name jitr-device --policy-version-id 1
run "attach-policy" iot attach-policy --policy-name jitr-device --target "$ARN"
run "attach-thing-principal" iot attach-thing-principal --thing-name dev-1 --principal "$ARN"
run "create-thing-group" iot create-thing-group --thing-group-name fleet
run "add-thing-to-thing-group" iot add-thing-to-thing-group --thing-group-name fleet --thing-name dev-1
fails "update-certificate to PENDING_ACTIVATION" InvalidRequestException \
    iot update-certificate --certificate-id "$DEV1" --new-status PENDING_ACTIVATION
run "update-certificate ACTIVE" iot update-certificate --certificate-id "$DEV1" --new-status ACTIVE
iot describe-certificate --certificate-id "$DEV1" >"$W/out" 2>"$W/err"
check "certificate active" "$(jget .certificateDescription.status)" ACTIVE
check "device connects: CONNACK 0" "$(device 1 "$CONNECT$DISCONNECT")" 20020000
run "update-certificate REVOKED" iot update-certificate --certificate-id "$DEV1" --new-status REVOKED
check "revoked device: no CONNACK" "$(device 1 "$CONNECT$DISCONNECT")" ""

# --- topic rule destination ------------------------------------------------------------------
run "create-topic-rule-destination" iot create-topic-rule-destination \
    --destination-configuration '{"httpUrlConfiguration":{"confirmationUrl":"http://127.0.0.1:9/jitr"}}'
DARN=$(jget .topicRuleDestination.arn)
check "destination awaits confirmation" "$(jget .topicRuleDestination.status)" IN_PROGRESS
TOKEN=$(admin /_standin/destinations/send-confirmation "{\"arn\":\"$DARN\"}" | jq -r .confirmationToken)
fails "confirm-topic-rule-destination, wrong token" InvalidRequestException \
    iot confirm-topic-rule-destination --confirmation-token "0000$TOKEN"
run "confirm-topic-rule-destination" iot confirm-topic-rule-destination --confirmation-token "$TOKEN"
run "get-topic-rule-destination" iot get-topic-rule-destination --arn "$DARN"
check "destination enabled" "$(jget .topicRuleDestination.status)" ENABLED

# --- front door ------------------------------------------------------------------------------
fails "wrong secret refused" InvalidSignatureException \
    env AWS_SECRET_ACCESS_KEY=wrong-secret aws --endpoint-url "$URL" --region us-east-1 iot get-registration-code
fails "unknown access key refused" UnrecognizedClientException \
    env AWS_ACCESS_KEY_ID=AKIDUNKNOWN aws --endpoint-url "$URL" --region us-east-1 iot get-registration-code
run "temporary credentials with session token" env AWS_ACCESS_KEY_ID="$JITRCA_SIM_TEMP_ACCESS_KEY_ID" \
    AWS_SECRET_ACCESS_KEY="$JITRCA_SIM_TEMP_SECRET_ACCESS_KEY" AWS_SESSION_TOKEN="$JITRCA_SIM_TEMP_SESSION_TOKEN" \
    aws --endpoint-url "$URL" --region us-east-1 iot get-registration-code
S=$(curl -sf "$URL/_standin/stats")
check "403s counted by the front door" \
    "$(echo "$S" | jq -c '.front_door')" '{"InvalidSignatureException":1,"UnrecognizedClientException":1}'
check "no quota exceeded so far" "$(echo "$S" | jq .throttled)" 0

# --- throttling ------------------------------------------------------------------------------
admin /_standin/config '{"quotas":{"enabled":true,"burst_seconds":5,"rates":{"DescribeEndpoint":0.2}}}' >/dev/null
run "describe-endpoint within quota" iot describe-endpoint --endpoint-type iot:Data-ATS
fails "describe-endpoint over quota throttled" ThrottlingException \
    iot describe-endpoint --endpoint-type iot:Data-ATS
check "throttle counted" "$(curl -sf "$URL/_standin/stats" | jq .operations.DescribeEndpoint.throttled)" 1

# --- SQS: the front door for service "sqs", and the rules engine's sqs action --------------
sqs() { aws --endpoint-url "$URL" --region us-east-1 --output json sqs "$@"; }
admin /_standin/config '{"quotas":{"enabled":false}}' >/dev/null
run "sqs create-queue" sqs create-queue --queue-name jitr-events
QURL=$(jget .QueueUrl)
check "queue URL names the stand-in" "$QURL" "$URL/123456789012/jitr-events"
run "sqs get-queue-url" sqs get-queue-url --queue-name jitr-events
check "get-queue-url" "$(jget .QueueUrl)" "$QURL"
run "sqs receive-message, empty queue" sqs receive-message --queue-url "$QURL" --wait-time-seconds 1
check "empty queue: no messages" "$(jq -s '.[0].Messages // [] | length' "$W/out")" 0
fails "sqs receive-message, no such queue" AWS.SimpleQueueService.NonExistentQueue \
    sqs receive-message --queue-url "$URL/123456789012/nope"
fails "sqs: wrong secret refused" InvalidSignatureException \
    env AWS_SECRET_ACCESS_KEY=wrong-secret aws --endpoint-url "$URL" --region us-east-1 sqs \
    receive-message --queue-url "$QURL"
for i in 4 5; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$W/dev$i.key" 2>/dev/null
    openssl req -new -key "$W/dev$i.key" -subj "/CN=dev-$i" -out "$W/dev$i.csr" 2>/dev/null
    openssl x509 -req -in "$W/dev$i.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
        -days 10 -sha256 -out "$W/dev$i.pem" 2>/dev/null
done
rule() { # USE_BASE64
    printf '{"sql":"SELECT * FROM '"'"'$aws/events/certificates/registered/%s'"'"'","ruleDisabled":false,"actions":[{"sqs":{"roleArn":"arn:aws:iam::123456789012:role/jitr-sqs","queueUrl":"%s","useBase64":%s}}]}' \
        "$CAID" "$QURL" "$1"
}
run "create-topic-rule with an sqs action" iot create-topic-rule --rule-name jitr_sqs \
    --topic-rule-payload "$(rule false)"
device 4 "$CONNECT$DISCONNECT" >/dev/null
run "sqs receive-message: the registered event" sqs receive-message --queue-url "$QURL" \
    --wait-time-seconds 5 --max-number-of-messages 10
BODY=$(jget '.Messages[0].Body')
check "event on the queue, JSON" "$(echo "$BODY" | jq -r '[.certificateId, .caCertificateId, .certificateStatus] | join(",")')" \
    "$(der_id "$W/dev4.pem"),$CAID,PENDING_ACTIVATION"
RH=$(jget '.Messages[0].ReceiptHandle')
run "sqs delete-message" sqs delete-message --queue-url "$QURL" --receipt-handle "$RH"
run "replace-topic-rule: useBase64" iot replace-topic-rule --rule-name jitr_sqs \
    --topic-rule-payload "$(rule true)"
device 5 "$CONNECT$DISCONNECT" >/dev/null
run "sqs receive-message: base64 event" sqs receive-message --queue-url "$QURL" --wait-time-seconds 5
check "event on the queue, base64" "$(jget '.Messages[0].Body' | base64 -d | jq -r .certificateId)" \
    "$(der_id "$W/dev5.pem")"
run "sqs delete-message-batch" sqs delete-message-batch --queue-url "$QURL" \
    --entries "Id=0,ReceiptHandle=$(jget '.Messages[0].ReceiptHandle')"
check "batch delete: one successful" "$(jget '.Successful | length')" 1
run "sqs get-queue-attributes" sqs get-queue-attributes --queue-url "$QURL" \
    --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible
check "queue empty" "$(jget '.Attributes | "\(.ApproximateNumberOfMessages),\(.ApproximateNumberOfMessagesNotVisible)"')" "0,0"
run "delete-topic-rule" iot delete-topic-rule --rule-name jitr_sqs
check "SendMessage by the rules engine counted" "$(curl -sf "$URL/_standin/stats" | jq .front_door.sqs_rule_messages)" 2
check "SQS requests counted" "$(curl -sf "$URL/_standin/stats" | jq '.operations["sqs:ReceiveMessage"].requests')" 4

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
