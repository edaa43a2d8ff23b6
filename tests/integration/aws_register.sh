#!/usr/bin/env bash
# jitrctl ca register end to end against the AWS IoT stand-in (run under tests/sim/run_sim.py):
# a CA whose key is a file and one whose key is in SoftHSM2, each registered twice (the second
# run recognises the registration); ca.json, Redis and the audit log hold it; the stand-in
# checked the verification certificate (CN = registration code, signed by the CA key);
# `ca show` reports the live status, and the stored one when AWS is unreachable; refusals: a CA
# with children, a pending CA, bad options, no credentials (each source named), a wrong secret.
source "$(dirname "$0")/lib.sh"
: "${JITRCA_SIM_IOT_URL:?run under tests/sim/run_sim.py}"
STANDIN=$JITRCA_SIM_IOT_URL
curl -s -X POST "$STANDIN/_standin/reset" >/dev/null

ok "$JITRCTL" ca init root --subject "/CN=IT Root"
ok "$JITRCTL" ca init dev --parent root --subject "/CN=IT Device CA"

# refused: the root has a child (it does not sign device certificates itself)
expect_fail 5 "has child CAs (dev)" "$JITRCTL" ca register root
check_eq "nothing registered for a refused CA" "$(count_records ca_register)" 0
expect_fail 2 "--mode must be default or sni-only" "$JITRCTL" ca register dev --mode bogus
expect_fail 4 "not found" "$JITRCTL" ca register nosuch

# no credentials: every source is named
(
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  echo '{"log_level": "debug"}' >"$T/debug.json"
  expect_fail 4 "no AWS credentials: environment (AWS_ACCESS_KEY_ID unset), web identity (not configured), SSO" \
    "$JITRCTL" --config "$T/debug.json" ca register dev
  # the message is cut at 255 bytes; the debug log line carries the whole list
  for src in "config file" "web identity (not configured)" "container endpoint (not configured)" "EC2 IMDS"; do
    grep -qF "$src" "$T/err" && pass || { fail "source '$src' not named"; cat "$T/err" >&2; }
  done
  finish >/dev/null
) || FAILED=$((FAILED + 1))
AWS_SECRET_ACCESS_KEY=wrong expect_fail 3 "InvalidSignatureException" "$JITRCTL" ca register dev
check_eq "nothing recorded after failures" "$(jq -c '.aws // []' "$JITRCA_DATA_DIR/ca/dev/ca.json")" "[]"

# register, twice
ok "$JITRCTL" --json ca register dev
check_eq "first run registers" "$(jq -r .already_registered "$T/out")" false
fp=$(jq -r .fingerprint "$JITRCA_DATA_DIR/ca/dev/ca.json")
check_eq "certificateId = SHA-256 of the DER" "$(jq -r .caCertificateId "$T/out")" "$fp"
check_eq "status" "$(jq -r .status "$T/out")" ACTIVE
check_eq "auto-registration" "$(jq -r .autoRegistrationStatus "$T/out")" ENABLE
ok "$JITRCTL" --json ca register dev
check_eq "second run recognises it" "$(jq -r .already_registered "$T/out")" true
check_eq "one audit record" "$(count_records ca_register)" 1
check_eq "one entry in ca.json" "$(jq '.aws | length' "$JITRCA_DATA_DIR/ca/dev/ca.json")" 1
check_eq "other ca.json keys kept" "$(jq -r .fingerprint "$JITRCA_DATA_DIR/ca/dev/ca.json")" "$fp"
check_eq "arn" "$(jq -r '.aws[0].arn' "$JITRCA_DATA_DIR/ca/dev/ca.json")" \
  "arn:aws:iot:us-east-1:123456789012:cacert/$fp"
check_eq "redis index" "$(rcli HGET "jitrca:aws:cacert:$fp" ca)" dev
check_eq "redis account" "$(rcli HGET "jitrca:aws:cacert:$fp" account)" 123456789012
aws --endpoint-url "$STANDIN" iot describe-ca-certificate --certificate-id "$fp" >"$T/desc.json"
check_eq "AWS has it ACTIVE" "$(jq -r .certificateDescription.status "$T/desc.json")" ACTIVE
aws --endpoint-url "$STANDIN" iot list-ca-certificates >"$T/list.json"
check_eq "registered once in AWS" "$(jq '.certificates | length' "$T/list.json")" 1
ok "$JITRCTL" audit verify

# ca show: live status, then AWS changed behind our back, then unreachable
ok "$JITRCTL" --json ca show dev
check_eq "show live" "$(jq -r '.aws[0].live.status' "$T/out")" ACTIVE
aws --endpoint-url "$STANDIN" iot update-ca-certificate --certificate-id "$fp" --new-status INACTIVE
ok "$JITRCTL" --json ca show dev
check_eq "show live after a change in AWS" "$(jq -r '.aws[0].live.status' "$T/out")" INACTIVE
AWS_ENDPOINT_URL_IOT=http://127.0.0.1:1 ok "$JITRCTL" --json ca show dev
check_eq "stored status when unreachable" "$(jq -r '.aws[0].status' "$T/out")" ACTIVE
jq -r '.aws[0].live_error' "$T/out" | grep -q "cannot connect" && pass ||
  { fail "live_error should say why"; cat "$T/out" >&2; }

# SNI_ONLY, inactive, no auto-registration: another CA
ok "$JITRCTL" ca init sni --subject "/CN=IT SNI CA" --pathlen 0
ok "$JITRCTL" --json ca register sni --mode sni-only --inactive --no-auto-registration
check_eq "sni mode" "$(jq -r .mode "$T/out")" SNI_ONLY
check_eq "sni inactive" "$(jq -r .status "$T/out")" INACTIVE
check_eq "sni no auto" "$(jq -r .autoRegistrationStatus "$T/out")" DISABLE

# a pending CA (CSR only) cannot be registered
ok "$JITRCTL" ca init ext --csr-only --csr-out "$T/ext.csr"
expect_fail 5 "pending" "$JITRCTL" ca register ext

# the key in SoftHSM2
export SOFTHSM2_CONF
SOFTHSM2_CONF=$("$JITRCA_SOURCE_DIR/tests/harness/softhsm-fixture.sh" init "$T/hsm" aws 12345678 87654321)
export JITRCA_PKCS11_PIN=87654321
ok "$JITRCTL" ca init hsm-dev --key "pkcs11:token=aws;object=dev" --key-type ec-p384 --parent root \
  --subject "/CN=IT HSM Device CA"
JITRCA_PKCS11_PIN=11111111 expect_fail 3 "PIN" "$JITRCTL" ca register hsm-dev
check_eq "nothing recorded after a wrong PIN" "$(jq -c '.aws // []' "$JITRCA_DATA_DIR/ca/hsm-dev/ca.json")" "[]"
ok "$JITRCTL" --json ca register hsm-dev
check_eq "hsm first run" "$(jq -r .already_registered "$T/out")" false
ok "$JITRCTL" --json ca register hsm-dev
check_eq "hsm second run" "$(jq -r .already_registered "$T/out")" true
hfp=$(jq -r .fingerprint "$JITRCA_DATA_DIR/ca/hsm-dev/ca.json")
check_eq "hsm redis" "$(rcli HGET "jitrca:aws:cacert:$hfp" ca)" hsm-dev
check_eq "three registrations audited" "$(count_records ca_register)" 3

# registered in AWS by someone else (not in ca.json): adopted, audited as such
ok "$JITRCTL" ca init dev2 --parent root --subject "/CN=IT Device CA 2"
code=$(aws --endpoint-url "$STANDIN" iot get-registration-code --query registrationCode --output text)
openssl ecparam -name prime256v1 -genkey -noout -out "$T/v.key" 2>/dev/null
openssl req -new -key "$T/v.key" -subj "/CN=$code" -out "$T/v.csr"
echo "$JITRCA_KEY_PASSPHRASE" >"$T/pass"
openssl x509 -req -in "$T/v.csr" -CA "$JITRCA_DATA_DIR/ca/dev2/cert.pem" \
  -CAkey "$JITRCA_DATA_DIR/ca/dev2/key.pem" -passin "file:$T/pass" -CAcreateserial \
  -out "$T/v.pem" -days 1 2>/dev/null
aws --endpoint-url "$STANDIN" iot register-ca-certificate \
  --ca-certificate "file://$JITRCA_DATA_DIR/ca/dev2/cert.pem" \
  --verification-certificate "file://$T/v.pem" --set-as-active >/dev/null
ok "$JITRCTL" --json ca register dev2
check_eq "adopted" "$(jq -r .already_registered "$T/out")" true
grep '"type":"ca_register"' "$(audit_log)" | grep '"ca":"dev2"' | grep -q '"adopted":true' && pass ||
  fail "adoption audited"
ok "$JITRCTL" audit verify
finish
