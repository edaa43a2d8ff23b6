#!/usr/bin/env bash
# The JITR decision through the AWS IoT stand-ins (run under tests/sim/run_sim.py, signatures
# checked): jitrca changes a certificate's status in AWS only after AWS's own record says it is
# ours and PENDING_ACTIVATION, and REVOKES only for facts about the certificate.
#   * another CA's certificate, ACTIVE in AWS, named in an event with our CA: left ACTIVE, no
#     UpdateCertificate at all; another CA's PENDING_ACTIVATION certificate: left pending; both
#     IGNORED, audited, shown by jitrctl jitr status
#   * a device of a retired CA provisions; a device of a CA marked compromised is REVOKED
#   * a template that needs Country: jitrctl policy check refuses it for the device profile,
#     --cert names the parameter the device lacks, jitrd dead-letters the device and leaves it
#     PENDING_ACTIVATION; so do an unknown profile and a subject that makes an invalid thing
#     name; after the fix, jitrctl jitr dlq retry provisions all three
#   * jitr.exclusive_thing reaches the stand-in (EXCLUSIVE_THING; a second thing is refused);
#     attribute values with = [ ] pass AWS's validation; a template with an existing policy and
#     an unnamed one attaches both, the unnamed one named by its SHA-256, and editing the
#     template makes a new policy while the old one keeps its document
export JITRD_WORKERS=1
source "$(dirname "$0")/jitr_lib.sh"

ev() { # cert_id [ca_id]
  printf '{"certificateId":"%s","caCertificateId":"%s","timestamp":1795671724146,"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"123456789012"}' \
    "$1" "${2:-$DEV_CA_ID}"
}
post() { # body -> status
  curl -s -o "$T/post.out" -w '%{http_code}' -X POST "$INTAKE/v1/jitr/events" \
    -H 'content-type: application/json' -H "x-jitr-secret: s3cret-new" --data-binary "$1"
}
state_of() { rcli HGET "jitrca:jitr:dev:$1" state; }
wait_state() { # CERT_ID STATE
  for _ in $(seq 100); do [ "$(state_of "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}
iot() { aws --endpoint-url "$STANDIN" iot "$@"; }
arn_of() { echo "arn:aws:iot:us-east-1:123456789012:cert/$(cert_id_of "$1")"; }
sha_of() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
# signed DIR NAME SUBJECT [jitrctl options]: a device key and certificate of the device CA
signed() {
  mkdir -p "$1"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/$2.key" \
    -out "$1/$2.csr" -subj "$3" 2>/dev/null
  local dir=$1 name=$2; shift 3
  ok "$JITRCTL" sign --csr "$dir/$name.csr" --out "$dir/$name.crt" "$@"
}
# jitrd's own signing API needs an active default CA: the device CA is retired below
config() { # [jitr members] [profiles_dir]
  write_config "${1:-}"
  jq --arg p "${2:-$JITRCA_SOURCE_DIR/policies/profiles}" '.default_ca = "spare" | .profiles_dir = $p' \
    "$CFG" >"$T/cfg.tmp" && mv "$T/cfg.tmp" "$CFG"
}
restart() { # a new configuration, then jitrd again
  jitrd_stop
  config "$@"
  jitrd_start
}

# --- every device, made before their CAs change ------------------------------------------------
ok "$JITRCTL" ca init spare --parent root --subject "/CN=JITR Test Spare/O=Acme"
make_devices 1 "$T/ret" ret-
signed "$T/cty" nocountry-1 /CN=nocountry-1 --ca devices
signed "$T/spc" spacey-1 "/C=DE/OU=Line 1/CN=spacey-1" --ca devices
make_devices 1 "$T/x" polx-
make_devices 1 "$T/y" poly-
# a profile only jitrctl knows at first (jitrd's profiles lack it: "unknown profile")
mkdir -p "$T/p1" "$T/p2"
cp "$JITRCA_SOURCE_DIR"/policies/profiles/*.json "$T/p1/"
jq '.description = "Sensors"' "$JITRCA_SOURCE_DIR/policies/profiles/device.json" >"$T/p1/sensor.json"
echo "{\"profiles_dir\": \"$T/p1\"}" >"$T/ctl.json"
signed "$T/sen" sensor-1 /CN=sensor-1 --config "$T/ctl.json" --profile sensor --ca devices
# a second device CA, registered, that will be marked compromised
ok "$JITRCTL" ca init batch2 --parent root --subject "/CN=JITR Test Devices 2/O=Acme"
ok "$JITRCTL" ca register batch2
signed "$T/cmp" comp-1 /CN=comp-1 --ca batch2

# --- retiring a CA stops its signing, not its devices -----------------------------------------
ok "$JITRCTL" ca retire devices
expect_fail 3 "is retired and issues nothing" "$JITRCTL" sign --ca devices --csr "$T/cty/nocountry-1.csr" --out "$T/no.crt"
# --- a compromised CA: its devices are revoked, it never signs again ---------------------------
expect_fail 2 "cannot be undone" "$JITRCTL" ca mark-compromised batch2
ok "$JITRCTL" ca mark-compromised batch2 --yes
check_eq "audited" "$(count_records ca_compromised)" 1
expect_fail 5 "is marked compromised" "$JITRCTL" ca activate batch2
ok "$JITRCTL" --json ca list
check_eq "listed as compromised" "$(jq -r '.[] | select(.name == "batch2") | .compromised' "$T/out")" true

config
jitrd_start
gateway_rule

# --- another CA's certificates: AWS's record decides, the event's caCertificateId is a claim -----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
  -out "$T/other.pem" -subj "/CN=Someone Else CA" -days 5 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
iot register-ca-certificate --ca-certificate "file://$T/other.pem" --certificate-mode SNI_ONLY \
  --set-as-active >/dev/null
for n in active pending; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$n.key" \
    -out "$T/$n.csr" -subj "/CN=foreign-$n" 2>/dev/null
  openssl x509 -req -in "$T/$n.csr" -CA "$T/other.pem" -CAkey "$T/other.key" -set_serial 42 \
    -days 2 -out "$T/$n.crt" 2>/dev/null
done
iot register-certificate --certificate-pem "file://$T/active.crt" --ca-certificate-pem "file://$T/other.pem" \
  --set-as-active >/dev/null
iot register-certificate --certificate-pem "file://$T/pending.crt" --ca-certificate-pem "file://$T/other.pem" \
  --status PENDING_ACTIVATION >/dev/null
check_eq "foreign: ACTIVE before" "$(aws_status "$T/active.crt")" ACTIVE
check_eq "foreign: PENDING before" "$(aws_status "$T/pending.crt")" PENDING_ACTIVATION
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
for n in active pending; do
  check_eq "foreign $n: event with our CA accepted" "$(post "$(ev "$(cert_id_of "$T/$n.crt")")")" 202
done
for n in active pending; do
  wait_state "$(cert_id_of "$T/$n.crt")" IGNORED && pass || { fail "foreign $n: left alone"; rcli HGETALL "jitrca:jitr:dev:$(cert_id_of "$T/$n.crt")" >&2; }
done
stats >"$T/st.json"
check_eq "foreign: no UpdateCertificate at all" "$(jq -r '.operations.UpdateCertificate.requests // 0' "$T/st.json")" 0
check_eq "foreign: no CreateThing" "$(jq -r '.operations.CreateThing.requests // 0' "$T/st.json")" 0
check_eq "foreign: one DescribeCertificate each" "$(jq -r '.operations.DescribeCertificate.requests // 0' "$T/st.json")" 2
check_eq "foreign ACTIVE stays ACTIVE" "$(aws_status "$T/active.crt")" ACTIVE
check_eq "foreign PENDING stays PENDING" "$(aws_status "$T/pending.crt")" PENDING_ACTIVATION
check_eq "audited: left alone" "$(count_records jitr_ignore)" 2
ok "$JITRCTL" jitr status "$(cert_id_of "$T/active.crt")"
grep -q "state IGNORED" "$T/out" && grep -q "reason: AWS registered it under CA .*, not under one of our CAs .*ACTIVE in AWS: left alone" "$T/out" && pass || {
  fail "jitr status shows why it was left alone"; cat "$T/out" >&2; }
# the same event again: nothing
n0=$(stats | jq -r '.operations.DescribeCertificate.requests // 0')
check_eq "again: accepted" "$(post "$(ev "$(cert_id_of "$T/active.crt")")")" 202
sleep 1
check_eq "again: no AWS call" "$(stats | jq -r '.operations.DescribeCertificate.requests // 0')" "$n0"

# --- a retired CA's device provisions; a compromised CA's device is revoked ---------------------
gw --dir "$T/ret" --timeout 30 >"$T/gw.json" && pass || { fail "retired CA's device connects"; cat "$T/gw.json" >&2; tail -20 "$T/jitrd.log" >&2; }
check_eq "retired CA's device ACTIVE" "$(aws_status "$T/ret/ret-000001.crt")" ACTIVE
gw --dir "$T/cmp" --first-only >/dev/null
wait_state "$(cert_id_of "$T/cmp/comp-1.crt")" REJECTED && pass || fail "compromised CA's device rejected"
check_eq "compromised CA's device REVOKED" "$(aws_status "$T/cmp/comp-1.crt")" REVOKED
rcli HGET "jitrca:jitr:dev:$(cert_id_of "$T/cmp/comp-1.crt")" reason | grep -q "CA 'batch2' is marked compromised" && pass || fail "compromised reason"

# --- exclusive things, attribute values AWS accepts, several policies ---------------------------
iot create-policy --policy-name fleet-ops --policy-document \
  '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/fleet/ops"}]}' >/dev/null
D1='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}]}'
D2='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect","iot:Publish"],"Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}]}'
template() { # DOC: thing named by the CN, odd attribute values, an existing and an unnamed policy
  jq -n --arg d "$1" '{Parameters: {"AWS::IoT::Certificate::CommonName": {Type: "String"},
      "jitrca::SerialHex": {Type: "String"}},
    Resources: {thing: {Type: "AWS::IoT::Thing", Properties: {
        ThingName: {Ref: "AWS::IoT::Certificate::CommonName"},
        AttributePayload: {slot: "rack=3[a]", "site/a:b": "x#y@z.w,v_u-t",
                           serial: {"Fn::Join": ["=", ["s", {Ref: "jitrca::SerialHex"}]]}}}},
      shared: {Type: "AWS::IoT::Policy", Properties: {PolicyName: "fleet-ops"}},
      own: {Type: "AWS::IoT::Policy", Properties: {PolicyDocument: $d}}}}'
}
template "$D1" >"$T/multi1.json"
template "$D2" >"$T/multi2.json"
restart "\"exclusive_thing\": true, \"template\": \"$T/multi1.json\""
gw --dir "$T/x" --timeout 30 >"$T/gw.json" && pass || { fail "device X connects"; cat "$T/gw.json" >&2; tail -20 "$T/jitrd.log" >&2; }
X=$T/x/polx-000001.crt
iot list-principal-things-v2 --principal "$(arn_of "$X")" >"$T/pt.json"
check_eq "exclusive thing" "$(jq -c '.principalThingObjects' "$T/pt.json")" '[{"thingName":"polx-000001","thingPrincipalType":"EXCLUSIVE_THING"}]'
iot create-thing --thing-name intruder >/dev/null
iot attach-thing-principal --thing-name intruder --principal "$(arn_of "$X")" >/dev/null 2>"$T/att.err" && fail "a second thing attached to an exclusive certificate" || pass
grep -q "InvalidRequestException" "$T/att.err" && pass || { fail "AWS's refusal"; cat "$T/att.err" >&2; }
iot describe-thing --thing-name polx-000001 >"$T/thing.json"
check_eq "attribute with = [ ]" "$(jq -r .attributes.slot "$T/thing.json")" "rack=3[a]"
check_eq "attribute name with / :" "$(jq -r '.attributes["site/a:b"]' "$T/thing.json")" "x#y@z.w,v_u-t"
jq -r .attributes.serial "$T/thing.json" | grep -Eq '^s=[0-9a-f]+$' && pass || fail "attribute with = from a parameter"
P1=$(sha_of "$D1")
P2=$(sha_of "$D2")
iot list-attached-policies --target "$(arn_of "$X")" >"$T/pol.json"
check_eq "X: both policies" "$(jq -c '[.policies[].policyName] | sort' "$T/pol.json")" "$(jq -nc --arg a "$P1" '[$a, "fleet-ops"] | sort')"
# editing the template: a new policy; the old one keeps its document, X keeps the old one
restart "\"exclusive_thing\": true, \"template\": \"$T/multi2.json\""
gw --dir "$T/y" --timeout 30 >"$T/gw.json" && pass || { fail "device Y connects"; cat "$T/gw.json" >&2; }
iot list-attached-policies --target "$(arn_of "$T/y/poly-000001.crt")" >"$T/pol.json"
check_eq "Y: the edited document's policy" "$(jq -c '[.policies[].policyName] | sort' "$T/pol.json")" "$(jq -nc --arg a "$P2" '[$a, "fleet-ops"] | sort')"
iot list-attached-policies --target "$(arn_of "$X")" >"$T/pol.json"
check_eq "X: still its policy" "$(jq -c '[.policies[].policyName] | sort' "$T/pol.json")" "$(jq -nc --arg a "$P1" '[$a, "fleet-ops"] | sort')"
iot get-policy --policy-name "$P1" >"$T/gp.json"
check_eq "the old policy keeps its document" "$(jq -r .policyDocument "$T/gp.json" | jq -c .)" "$(jq -c . <<<"$D1")"
check_eq "the old policy has one version" "$(iot list-policy-versions --policy-name "$P1" | jq '.policyVersions | length')" 1
check_eq "fleet-ops untouched" "$(iot list-policy-versions --policy-name fleet-ops | jq '.policyVersions | length')" 1
ok "$JITRCTL" policy check "$T/multi2.json"
grep -q "policy $P2 (named by its SHA-256)" "$T/out" && grep -q "policy fleet-ops (existing, attached)" "$T/out" && pass || {
  fail "policy check lists the policies"; cat "$T/out" >&2; }

# --- our configuration's mistakes: dead letters, nothing changed in AWS, retried after the fix ---
jq '.subject.required = ["CN", "C"]' "$JITRCA_SOURCE_DIR/policies/profiles/device.json" >"$T/p2/device.json"
cp "$JITRCA_SOURCE_DIR/policies/profiles/station.json" "$T/p2/"
jq -n '{Parameters: {"AWS::IoT::Certificate::CommonName": {Type: "String"},
    "AWS::IoT::Certificate::Country": {Type: "String"},
    "AWS::IoT::Certificate::OrganizationalUnit": {Type: "String", Default: "none"}},
  Resources: {thing: {Type: "AWS::IoT::Thing", Properties: {
      ThingName: {"Fn::Join": ["-", [{Ref: "AWS::IoT::Certificate::OrganizationalUnit"},
                                     {Ref: "AWS::IoT::Certificate::CommonName"}]]},
      AttributePayload: {country: {Ref: "AWS::IoT::Certificate::Country"}}}},
    policy: {Type: "AWS::IoT::Policy", Properties: {PolicyName: "fleet-ops"}}}}' >"$T/country.json"
# refused for the shipped device profile, which does not require C; --cert names what it lacks
expect_fail 2 "profile 'device': parameter 'AWS::IoT::Certificate::Country' has no value" "$JITRCTL" policy check "$T/country.json"
grep -q "profile 'device' does not require C: require it or give the parameter a Default" "$T/err" && pass || { fail "policy check: the fix"; cat "$T/err" >&2; }
expect_fail 2 "nocountry-1.crt: $T/country.json: parameter 'AWS::IoT::Certificate::Country' has no value (the certificate lacks it)" \
  "$JITRCTL" policy check --cert "$T/cty/nocountry-1.crt" "$T/country.json"
ok "$JITRCTL" policy check --cert "$T/spc/spacey-1.crt" "$JITRCA_SOURCE_DIR/policies/templates/default.json"
grep -q "thing spacey-1" "$T/out" && pass || { fail "policy check --cert shows the plan"; cat "$T/out" >&2; }
expect_fail 2 "thing name 'Line 1-spacey-1' is not 1..128 of [a-zA-Z0-9:_-]" "$JITRCTL" policy check --cert "$T/spc/spacey-1.crt" "$T/country.json"
# jitrd takes it with profiles that require C (a careless operator: devices issued before)
restart "\"template\": \"$T/country.json\"" "$T/p2"
for d in cty/nocountry-1 spc/spacey-1 sen/sensor-1; do gw --dir "$T/${d%/*}" --first-only >/dev/null; done
for d in cty/nocountry-1 spc/spacey-1 sen/sensor-1; do
  wait_state "$(cert_id_of "$T/$d.crt")" DEAD && pass || { fail "$d: dead letter"; rcli HGETALL "jitrca:jitr:dev:$(cert_id_of "$T/$d.crt")" >&2; }
  check_eq "$d: still PENDING_ACTIVATION" "$(aws_status "$T/$d.crt")" PENDING_ACTIVATION
done
ok "$JITRCTL" --json jitr dlq list
jq -r '.[].error' "$T/out" >"$T/dlq.txt"
grep -q "parameter 'AWS::IoT::Certificate::Country' has no value" "$T/dlq.txt" && pass || { fail "dead letter: Country"; cat "$T/dlq.txt" >&2; }
grep -q "thing name 'Line 1-spacey-1' is not" "$T/dlq.txt" && pass || { fail "dead letter: thing name"; cat "$T/dlq.txt" >&2; }
grep -q "profile 'sensor' of serial .* is unknown" "$T/dlq.txt" && pass || { fail "dead letter: profile"; cat "$T/dlq.txt" >&2; }
check_eq "no revocation for any of them" "$(count_records jitr_reject)" 1
# the fix: a Default for Country, the thing named by the CN, the sensor profile; then retry
jq '.Parameters["AWS::IoT::Certificate::Country"].Default = "XX" |
    .Resources.thing.Properties.ThingName = {Ref: "AWS::IoT::Certificate::CommonName"}' "$T/country.json" >"$T/fixed.json"
cp "$T/p1/sensor.json" "$T/p2/"
restart "\"template\": \"$T/fixed.json\"" "$T/p2"
ok "$JITRCTL" jitr dlq retry --all
for d in cty/nocountry-1 spc/spacey-1 sen/sensor-1; do
  wait_state "$(cert_id_of "$T/$d.crt")" DONE && pass || { fail "$d: provisioned after the fix"; rcli HGETALL "jitrca:jitr:dev:$(cert_id_of "$T/$d.crt")" >&2; }
  check_eq "$d: ACTIVE" "$(aws_status "$T/$d.crt")" ACTIVE
done
check_eq "country attribute" "$(iot describe-thing --thing-name spacey-1 | jq -r .attributes.country)" DE
check_eq "country default" "$(iot describe-thing --thing-name nocountry-1 | jq -r .attributes.country)" XX
check_eq "dead letters gone" "$(rcli XLEN jitrca:jitr:dlq)" 0

ok "$JITRCTL" audit verify
grep -q '"level":"error"' "$T/jitrd.log" && { fail "errors in the jitrd log"; grep '"level":"error"' "$T/jitrd.log" | head >&2; } || pass
finish
