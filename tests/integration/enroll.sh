#!/usr/bin/env bash
# Enrollment by trusted user (one-time tokens) and by claim, end to end through the AWS IoT
# stand-ins (run under tests/sim/run_sim.py): an installer station asks for a token
# (POST /v1/tokens), the device redeems it once on enroll_listen (POST /v1/enroll, CN forced to
# the token's device id) and then provisions by JITR; used, expired and unknown tokens are 401
# alike and failures from one address end in 429; a station that is not an installer is 403;
# jitrctl token issue. A claim certificate (jitrctl claim issue) enrolls an allowlisted device
# once; an unlisted id, a second enrollment, a hook that says no or does not answer in 5 s and a
# revoked claim are refused, nothing issued; everything audited. The AWS fleet provisioning
# functions of deploy/aws/lambda with AWS's event shapes: the certificate provider gets a
# certificate that verifies, the pre-provisioning hook answers from the claim's allowlist.
source "$(dirname "$0")/jitr_lib.sh"

ENROLL_PORT=$(freeport)
URL=https://localhost:$SIGN_PORT
EURL=https://localhost:$ENROLL_PORT
curl() {
  command curl --resolve "localhost:$SIGN_PORT:127.0.0.1" \
    --resolve "localhost:$ENROLL_PORT:127.0.0.1" --cacert "$T/srv.pem" "$@"
}
cat >"$T/stations.json" <<EOF
{"stations": {
  "installer1": {"cas": ["devices"], "profiles": ["device"], "installer": true},
  "line1": {"cas": ["devices"], "profiles": ["device"]}}}
EOF

# the claims' pre-provisioning hook: HTTPS with its own self-signed certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/hook.key" \
  -out "$T/hook.pem" -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -days 2 2>/dev/null
python3 "$(dirname "$0")/enroll_hook.py" --cert "$T/hook.pem" --key "$T/hook.key" \
  --port-file "$T/hook.port" --log "$T/hook.log" &
HOOK_PID=$!
trap 'rc=$?; kill "$HOOK_PID" 2>/dev/null || true; stop_all; (exit $rc); cleanup' EXIT
for _ in $(seq 50); do [ -s "$T/hook.port" ] && break; sleep 0.1; done
HOOK=https://127.0.0.1:$(cat "$T/hook.port")/hook

jq --arg l "127.0.0.1:$ENROLL_PORT" --arg h "$T/hook.pem" \
  '.enroll_listen = $l | .enroll_fail_limit = 5 | .enroll_hook_ca = $h' "$CFG" >"$T/c.json" &&
  mv "$T/c.json" "$CFG"
ok "$JITRCTL" --config "$CFG" station issue installer1 --out "$T/st"
ok "$JITRCTL" --config "$CFG" station issue line1 --out "$T/st"
jitrd_start
gateway_rule
INST=(--cert "$T/st/installer1.crt" --key "$T/st/installer1.key")

# tok BODY [STATION...]: POST /v1/tokens, the reply in $T/tok.json, the status printed
tok() {
  local body=$1; shift
  curl -s -o "$T/tok.json" -w '%{http_code}' "${@:-${INST[@]}}" \
    -H 'Content-Type: application/json' -d "$body" "$URL/v1/tokens"
}
# csr CN DIR NAME: a P-256 key DIR/NAME.key and its CSR DIR/NAME.csr with that CN
csr() {
  mkdir -p "$2"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$2/$3.key" \
    -subj "/CN=$1" -out "$2/$3.csr" 2>/dev/null
}
# enroll CSR OUT [curl args...]: POST /v1/enroll, the reply in OUT, the status printed
enroll() {
  local c=$1 out=$2; shift 2
  curl -s -D "$out.h" -o "$out" -w '%{http_code}' "$@" -H 'Content-Type: application/x-pem-file' \
    --data-binary @"$c" "$EURL/v1/enroll"
}
cn_of() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'; }
serial_of() { rcli GET "jitrca:fp:$(cert_id_of "$1")"; }

# --- trusted user: tokens ---------------------------------------------------------------------
check_eq "a station that is not an installer" \
  "$(tok '{"device":"tok-dev-1"}' --cert "$T/st/line1.crt" --key "$T/st/line1.key")" 403
grep -q 'not an installer' "$T/tok.json" && pass || fail "403 says why: $(cat "$T/tok.json")"
check_eq "no station at all" "$(tok '{"device":"tok-dev-1"}' --no-progress-meter)" 403
check_eq "a device id that is no thing name" "$(tok '{"device":"bad id/1"}')" 400
check_eq "a ttl over an hour" "$(tok '{"device":"tok-dev-1","ttl":7200}')" 400
check_eq "an unknown key" "$(tok '{"device":"tok-dev-1","colour":"red"}')" 400
check_eq "a profile the installer may not use" "$(tok '{"device":"tok-dev-1","profile":"station"}')" 403
check_eq "token issued" "$(tok '{"device":"tok-dev-1","ttl":120}')" 201
TOKEN=$(jq -r .token "$T/tok.json")
TOKID=$(jq -r .id "$T/tok.json")
check_eq "token bound to the device" "$(jq -r .device "$T/tok.json")" tok-dev-1
[ "${#TOKEN}" -eq 43 ] && pass || fail "token of 43 characters: $TOKEN"
check_eq "only the token's hash is stored" "$(rcli --scan --pattern "jitrca:token:*" | wc -l)" 1
rcli --scan --pattern "jitrca:token:*" | grep -qF "$TOKEN" && fail "token stored in clear" || pass
grep '"type":"token_issue"' "$(audit_log)" | grep "\"token\":\"$TOKID\"" |
  grep -q '"requester":"station:installer1"' && pass || fail "token_issue audited"
grep -qF "$TOKEN" "$(audit_log)" && fail "the token itself is in the audit log" || pass

# the CSR asks for another CN: the certificate names the token's device
csr wrong-name "$T/t1" tok-dev-1
check_eq "no credentials" "$(enroll "$T/t1/tok-dev-1.csr" "$T/e0.json")" 401
grep -qi '^WWW-Authenticate: Bearer' "$T/e0.json.h" && pass || fail "401 names Bearer"
check_eq "a profile in the body" "$(curl -s -o /dev/null -w '%{http_code}' \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "$(jq -n --rawfile c "$T/t1/tok-dev-1.csr" '{csr: $c, profile: "station"}')" \
  "$EURL/v1/enroll")" 400
check_eq "redeemed" "$(enroll "$T/t1/tok-dev-1.csr" "$T/e1.json" -H "Authorization: Bearer $TOKEN")" 201
jq -r .certificate "$T/e1.json" >"$T/t1/tok-dev-1.crt"
check_eq "CN forced to the device id" "$(cn_of "$T/t1/tok-dev-1.crt")" CN=tok-dev-1
jq -r .chain "$T/e1.json" >"$T/t1/chain.pem"
verify_cert "$T/t1/tok-dev-1.crt" "$T/t1/chain.pem"
REC=$(grep '"type":"issue"' "$(audit_log)" | grep "\"serial\":\"$(serial_of "$T/t1/tok-dev-1.crt")\"")
check_eq "issue audited: token" "$(jq -r .token <<<"$REC")" "$TOKID"
check_eq "issue audited: device" "$(jq -r .device <<<"$REC")" tok-dev-1
check_eq "issue audited: source" "$(jq -r .source <<<"$REC")" 127.0.0.1
check_eq "issue audited: who asked" "$(jq -r .requester <<<"$REC")" station:installer1

# used, unknown, expired: 401 alike
csr tok-dev-1 "$T/t2" x
check_eq "second use" "$(enroll "$T/t2/x.csr" "$T/e2.json" -H "Authorization: Bearer $TOKEN")" 401
check_eq "unknown" "$(enroll "$T/t2/x.csr" "$T/e3.json" \
  -H "Authorization: Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")" 401
check_eq "tok 2 s" "$(tok '{"device":"tok-dev-2","ttl":1}')" 201
T2=$(jq -r .token "$T/tok.json")
sleep 2
check_eq "expired" "$(enroll "$T/t2/x.csr" "$T/e4.json" -H "Authorization: Bearer $T2")" 401
check_eq "no hint (used vs unknown)" "$(cat "$T/e2.json")" "$(cat "$T/e3.json")"
check_eq "no hint (used vs expired)" "$(cat "$T/e2.json")" "$(cat "$T/e4.json")"
check_eq "one certificate for the token" \
  "$(grep '"type":"issue"' "$(audit_log)" | grep -c "\"token\":\"$TOKID\"")" 1
check_eq "failures audited" "$(grep '"type":"deny"' "$(audit_log)" | grep -c '"route":"enroll"')" 3

# failures from one address: 5 (enroll_fail_limit), then 429 even with a good token
check_eq "tok 3" "$(tok '{"device":"tok-dev-3"}')" 201
T3=$(jq -r .token "$T/tok.json")
enroll "$T/t2/x.csr" "$T/e5.json" -H "Authorization: Bearer nonsense" >/dev/null
check_eq "fifth failure still 401" \
  "$(enroll "$T/t2/x.csr" "$T/e5.json" -H "Authorization: Basic eDp5")" 401
check_eq "then 429" "$(enroll "$T/t2/x.csr" "$T/e6.json" -H "Authorization: Bearer $T3")" 429
grep -qi '^Retry-After: [1-9]' "$T/e6.json.h" && pass || fail "429 has Retry-After"
rcli DEL jitrca:enroll:block:127.0.0.1 jitrca:enroll:fail:127.0.0.1 >/dev/null
csr tok-dev-3 "$T/t3" tok-dev-3
check_eq "the blocked attempt did not use the token" \
  "$(enroll "$T/t3/tok-dev-3.csr" "$T/e7.json" -H "Authorization: Bearer $T3")" 201

# jitrctl token issue
T4=$("$JITRCTL" --config "$CFG" token issue tok-dev-4 --ttl 60 2>/dev/null)
csr tok-dev-4 "$T/t4" tok-dev-4
check_eq "jitrctl's token" "$(enroll "$T/t4/tok-dev-4.csr" "$T/e8.json" -H "Authorization: Bearer $T4")" 201
expect_fail 2 "must be 1 to" "$JITRCTL" --config "$CFG" token issue 'no/such'
expect_fail 2 "--ttl must be" "$JITRCTL" --config "$CFG" token issue tok-dev-5 --ttl 3601
expect_fail 2 "is for claim certificates" "$JITRCTL" --config "$CFG" token issue d --profile claim

# the device provisions by JITR at the stand-in
gw --dir "$T/t1" --ids tok-dev-1 --first-only >/dev/null 2>&1 || true
for _ in $(seq 300); do [ "$(aws_status "$T/t1/tok-dev-1.crt")" = ACTIVE ] && break; sleep 0.1; done
check_eq "token device ACTIVE in AWS" "$(aws_status "$T/t1/tok-dev-1.crt")" ACTIVE
gw --dir "$T/t1" --ids tok-dev-1 --timeout 30 >"$T/gw.json" 2>"$T/gw.err" && pass ||
  { fail "tok-dev-1 connects"; cat "$T/gw.json" "$T/gw.err" >&2; }

# --- claims ------------------------------------------------------------------------------------
printf '# batch 7\nclaim-dev-1\nclaim-dev-2\ndeny-dev-1\nslow-dev-1\n\n' >"$T/allow.txt"
ok "$JITRCTL" --config "$CFG" claim issue batch7 --out "$T/claim" --devices "$T/allow.txt" \
  --hook "$HOOK" --days 30
CL=(--cert "$T/claim/batch7.crt" --key "$T/claim/batch7.key")
CLAIM_SERIAL=$(serial_of "$T/claim/batch7.crt")
check_eq "claim profile" "$("$JITRCTL" --config "$CFG" --json cert show "$CLAIM_SERIAL" | jq -r .profile)" claim
expect_fail 5 "exists already" "$JITRCTL" --config "$CFG" claim issue batch7 --out "$T/claim2"
expect_fail 2 "--hook must be an https:// URL" "$JITRCTL" --config "$CFG" claim issue b8 \
  --out "$T/claim2" --hook http://127.0.0.1/
printf 'ok-1\nnot a device\n' >"$T/bad.txt"
expect_fail 2 "bad.txt:2" "$JITRCTL" --config "$CFG" claim issue b9 --out "$T/claim2" --devices "$T/bad.txt"
issued_before=$(count_records issue)

csr claim-dev-1 "$T/c1" claim-dev-1
check_eq "allowlisted id" "$(enroll "$T/c1/claim-dev-1.csr" "$T/c1.json" "${CL[@]}")" 201
jq -r .certificate "$T/c1.json" >"$T/c1/claim-dev-1.crt"
check_eq "its CN" "$(cn_of "$T/c1/claim-dev-1.crt")" CN=claim-dev-1
check_eq "its profile" "$(jq -r .profile "$T/c1.json")" device
tail -1 "$T/hook.log" | jq -e '.device == "claim-dev-1" and .claim == "batch7" and
  .source == "127.0.0.1" and (.csrSubject | test("claim-dev-1"))' >/dev/null && pass ||
  fail "the hook was asked: $(tail -1 "$T/hook.log")"
REC=$(grep '"type":"issue"' "$(audit_log)" | grep "\"serial\":\"$(serial_of "$T/c1/claim-dev-1.crt")\"")
check_eq "audited: claim" "$(jq -r .requester <<<"$REC")" claim:batch7
check_eq "audited: source" "$(jq -r .source <<<"$REC")" 127.0.0.1

csr claim-dev-1 "$T/c1b" claim-dev-1
check_eq "second enrollment of the id" "$(enroll "$T/c1b/claim-dev-1.csr" "$T/c2.json" "${CL[@]}")" 409
csr claim-dev-9 "$T/c9" claim-dev-9
check_eq "unlisted id" "$(enroll "$T/c9/claim-dev-9.csr" "$T/c3.json" "${CL[@]}")" 403
csr deny-dev-1 "$T/cd" deny-dev-1
check_eq "the hook says no" "$(enroll "$T/cd/deny-dev-1.csr" "$T/c4.json" "${CL[@]}")" 403
grep -q 'refused device' "$T/c4.json" && pass || fail "says the hook refused: $(cat "$T/c4.json")"
csr slow-dev-1 "$T/cs" slow-dev-1
t0=$(date +%s)
check_eq "the hook does not answer in time" "$(enroll "$T/cs/slow-dev-1.csr" "$T/c5.json" "${CL[@]}")" 403
t1=$(date +%s)
[ $((t1 - t0)) -ge 4 ] && [ $((t1 - t0)) -le 7 ] && pass || fail "hook waited $((t1 - t0)) s, want 5"
check_eq "nothing issued for the refusals" "$(count_records issue)" "$((issued_before + 1))"
check_eq "refusals audited" "$(grep '"type":"deny"' "$(audit_log)" | grep -c '"requester":"claim:batch7"')" 4
# a device certificate is no claim; the claim certificate is no station
check_eq "a device certificate" "$(enroll "$T/c9/claim-dev-9.csr" "$T/c6.json" \
  --cert "$T/c1/claim-dev-1.crt" --key "$T/c1/claim-dev-1.key")" 403
check_eq "the claim at the signing API" "$(curl -s -o /dev/null -w '%{http_code}' "${CL[@]}" \
  -H 'Content-Type: application/x-pem-file' --data-binary @"$T/c9/claim-dev-9.csr" "$URL/v1/sign")" 403
"$JITRCTL" --config "$CFG" --json claim show batch7 >"$T/show.json" 2>&1 && pass || fail "claim show"
check_eq "claim show: enrolled" "$(jq -r .enrolled "$T/show.json")" 1
# Redis loses its data: jitrd rebuilds the index from the audit log, and the claims with it (the
# claim, its allowlist, the ids that enrolled with it)
rcli FLUSHALL >/dev/null
for _ in $(seq 1 150); do [ "$(rcli EXISTS jitrca:index:ready)" = 1 ] && break; sleep 0.2; done
check_eq "index rebuilt after the loss" "$(rcli EXISTS jitrca:index:ready)" 1
check_eq "the claim rebuilt" "$(rcli HGET jitrca:claim:batch7 serial)" "$CLAIM_SERIAL"
check_eq "its allowlist rebuilt" "$(rcli SMEMBERS jitrca:claim:batch7:allow | sort | paste -sd' ')" \
  "claim-dev-1 claim-dev-2 deny-dev-1 slow-dev-1"
check_eq "after the loss, the enrolled id again" \
  "$(enroll "$T/c1b/claim-dev-1.csr" "$T/c2r.json" "${CL[@]}")" 409
check_eq "after the loss, an unlisted id" "$(enroll "$T/c9/claim-dev-9.csr" "$T/c3r.json" "${CL[@]}")" 403
"$JITRCTL" --config "$CFG" --json claim show batch7 >"$T/show.json" 2>&1 && pass || fail "claim show"
check_eq "claim show after the loss: enrolled" "$(jq -r .enrolled "$T/show.json")" 1

# the AWS fleet provisioning functions (deploy/aws/lambda) with AWS's event shapes, against jitrd
LAMBDA_DIR=$JITRCA_SOURCE_DIR/deploy/aws/lambda
lambda_run() { # MODULE EVENT_JSON [ENV=VALUE...]: the handler's result as JSON, or "raised: ..."
  local mod=$1 ev=$2; shift 2
  env JITRD_URL="$URL" JITRD_CA_FILE="$T/srv.pem" JITRCA_STATION_CERT_FILE="$T/st/line1.crt" \
    JITRCA_STATION_KEY_PEM="$(cat "$T/st/line1.key")" JITRCA_CLAIM=batch7 "$@" \
    python3 -c 'import json, sys; sys.path.insert(0, sys.argv[1]); m = __import__(sys.argv[2])
try:
    print(json.dumps(m.handler(json.loads(sys.argv[3]), None)))
except Exception as e:
    print("raised: %s" % e)' "$LAMBDA_DIR" "$mod" "$ev" 2>/dev/null
}
csr fp-dev-1 "$T/fp" fp-dev-1
EV=$(jq -n --rawfile c "$T/fp/fp-dev-1.csr" \
  '{certificateSigningRequest: $c, principalId: "a1b2c3", clientId: "fp-dev-1"}')
lambda_run cert_provider "$EV" >"$T/fp.json"
jq -r .certificatePem "$T/fp.json" >"$T/fp/fp-dev-1.crt" 2>/dev/null || true
check_eq "certificate provider: CN" "$(cn_of "$T/fp/fp-dev-1.crt" 2>/dev/null)" CN=fp-dev-1
verify_cert "$T/fp/fp-dev-1.crt" "$T/t1/chain.pem"
check_eq "certificate provider: audited as the station" \
  "$(grep '"type":"issue"' "$(audit_log)" | grep "\"serial\":\"$(serial_of "$T/fp/fp-dev-1.crt")\"" |
     jq -r .requester)" station:line1
grep -q '^raised: ' <(lambda_run cert_provider '{"certificateSigningRequest": "nonsense"}') && pass ||
  fail "certificate provider: a bad event raises"
grep -q '^raised: jitrd: 403' <(lambda_run cert_provider "$EV" JITRCA_PROFILE=station) && pass ||
  fail "certificate provider: jitrd's refusal raises"
hook_event() { # DEVICE
  jq -n --arg d "$1" '{claimCertificateId: "c0ffee", certificateId: "beef",
    certificatePem: "-----BEGIN CERTIFICATE-----", clientId: "x",
    templateArn: "arn:aws:iot:us-east-1:123456789012:provisioningtemplate/T",
    parameters: {SerialNumber: $d}}'
}
check_eq "hook: allowlisted" "$(lambda_run pre_provisioning_hook "$(hook_event claim-dev-2)")" \
  '{"allowProvisioning": true}'
check_eq "hook: unlisted" "$(lambda_run pre_provisioning_hook "$(hook_event claim-dev-9)")" \
  '{"allowProvisioning": false}'
check_eq "hook: no such parameter" "$(lambda_run pre_provisioning_hook \
  '{"parameters": {"Other": "claim-dev-2"}}')" '{"allowProvisioning": false}'
check_eq "hook: jitrd unreachable" "$(lambda_run pre_provisioning_hook \
  "$(hook_event claim-dev-2)" JITRD_URL=https://localhost:1)" '{"allowProvisioning": false}'
check_eq "claims query: unknown claim" "$(curl -s -o /dev/null -w '%{http_code}' \
  --cert "$T/st/line1.crt" --key "$T/st/line1.key" "$URL/v1/claims/nope?device=a")" 404
check_eq "claims query: no station" "$(curl -s -o /dev/null -w '%{http_code}' \
  "$URL/v1/claims/batch7?device=a")" 403

# revoked: no more enrollments, at once
ok "$JITRCTL" --config "$CFG" revoke "$CLAIM_SERIAL" --reason cessationOfOperation --no-wait
csr claim-dev-2 "$T/c2" claim-dev-2
check_eq "revoked claim" "$(enroll "$T/c2/claim-dev-2.csr" "$T/c7.json" "${CL[@]}")" 403
grep -q 'revoked' "$T/c7.json" && pass || fail "says revoked: $(cat "$T/c7.json")"
check_eq "hook: revoked claim" "$(lambda_run pre_provisioning_hook "$(hook_event claim-dev-2)")" \
  '{"allowProvisioning": false}'

# a claim without allowlist or hook: any id, once
ok "$JITRCTL" --config "$CFG" claim issue open1 --out "$T/open"
csr any-id-42 "$T/o1" any-id-42
check_eq "open claim" "$(enroll "$T/o1/any-id-42.csr" "$T/o1.json" \
  --cert "$T/open/open1.crt" --key "$T/open/open1.key")" 201
check_eq "open claim, same id" "$(enroll "$T/o1/any-id-42.csr" "$T/o2.json" \
  --cert "$T/open/open1.crt" --key "$T/open/open1.key")" 409

ok "$JITRCTL" audit verify
finish
