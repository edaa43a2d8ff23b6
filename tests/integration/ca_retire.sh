#!/usr/bin/env bash
# The end of a CA's life against the AWS IoT stand-in (docs/operations.md, "Retiring a CA"):
# jitrctl ca impact counts what depends on a CA (issued, valid, revoked, superseded, expiring,
# provisioned as JITR recorded it, never provisioned by station and month, the last first
# connection); ca deactivate is refused while the CA signs, and while devices are ACTIVE in AWS or
# never provisioned (nothing changes in AWS); ca retire --aws disables auto-registration and
# keeps the CA ACTIVE; deactivate --force sets it INACTIVE; every change audited.
source "$(dirname "$0")/lib.sh"
: "${JITRCA_SIM_IOT_URL:?run under tests/sim/run_sim.py}"
STANDIN=$JITRCA_SIM_IOT_URL
curl -s -X POST "$STANDIN/_standin/reset" >/dev/null
awsdesc() {
  aws --endpoint-url "$STANDIN" iot describe-ca-certificate \
    --certificate-id "$(jq -r .fingerprint "$JITRCA_DATA_DIR/ca/$1/ca.json")" |
    jq -r ".certificateDescription.$2"
}

ok "$JITRCTL" ca init root --subject "/CN=Life Root"
ok "$JITRCTL" ca init dev-1 --parent root --subject "/CN=Life Devices CA 1"
ok "$JITRCTL" ca register dev-1
for i in 1 2 3 4; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$i.key" \
    -out "$T/$i.csr" -subj "/CN=dev$i" 2>/dev/null
  ok "$JITRCTL" sign --ca dev-1 --csr "$T/$i.csr" --out "$T/$i.pem"
  fp[$i]=$(openssl x509 -in "$T/$i.pem" -outform DER | sha256sum | cut -d' ' -f1)
  sn[$i]=$(openssl x509 -in "$T/$i.pem" -noout -serial | cut -d= -f2)
done
ok "$JITRCTL" revoke "${sn[4]}" --reason keyCompromise --no-wait
# JITR's records (jitr/flow.c writes them when a device first connects): dev1 ACTIVE, dev2 seen
# but INACTIVE, dev3 never connected
rcli HSET "jitrca:jitr:dev:${fp[1]}" state DONE aws_status ACTIVE first_ms 1796000000000 >/dev/null
rcli HSET "jitrca:jitr:dev:${fp[2]}" state DONE aws_status INACTIVE first_ms 1795000000000 >/dev/null
month=$(date -u +%Y-%m)

ok "$JITRCTL" --json ca impact dev-1
check_eq "impact" "$(jq -c '[.issued, .valid, .revoked, .superseded, .expired, .provisioned_active, .never_provisioned]' "$T/out")" \
  '[4,3,1,0,0,1,1]'
check_eq "by AWS status" "$(jq -cS .aws_status "$T/out")" '{"ACTIVE":1,"INACTIVE":1}'
check_eq "by month" "$(jq -c .never_provisioned_by_month "$T/out")" "{\"$month\":1}"
check_eq "by station" "$(jq -r '.never_provisioned_by_station | keys[0]' "$T/out" | cut -d: -f1)" cli
check_eq "last first connection" "$(jq -r .last_first_connection "$T/out")" "2026-11-30T00:53:20Z"
ok "$JITRCTL" ca impact dev-1
grep -qF "provisioned (ACTIVE in AWS IoT) 1; never provisioned 1" "$T/out" && pass || fail "text: $(cat "$T/out")"
expect_fail 4 "not found" "$JITRCTL" ca impact nosuch
expect_fail 2 "takes one NAME" "$JITRCTL" ca impact

# deactivate: refused while the CA signs, then while devices depend on it
expect_fail 5 "still signs" "$JITRCTL" ca deactivate dev-1
ok "$JITRCTL" ca retire dev-1 --aws
grep -qF "auto-registration DISABLE" "$T/out" && pass || fail "retire --aws: $(cat "$T/out")"
check_eq "retired here" "$(jq -r .status "$JITRCA_DATA_DIR/ca/dev-1/ca.json")" retired
check_eq "AWS: still ACTIVE" "$(awsdesc dev-1 status)" ACTIVE
check_eq "AWS: auto-registration off" "$(awsdesc dev-1 autoRegistrationStatus)" DISABLE
check_eq "ca.json records it" "$(jq -r '.aws[0].autoRegistrationStatus' "$JITRCA_DATA_DIR/ca/dev-1/ca.json")" DISABLE
expect_fail 5 "1 valid certificates ACTIVE in AWS IoT and 1 never provisioned" "$JITRCTL" ca deactivate dev-1
check_eq "AWS unchanged" "$(awsdesc dev-1 status)" ACTIVE
check_eq "one AWS change audited" "$(count_records ca_aws_update)" 1
# wrong credentials: audited attempt, nothing changed, a clear error
AWS_SECRET_ACCESS_KEY=wrong expect_fail 3 "InvalidSignatureException" "$JITRCTL" ca deactivate dev-1 --force
check_eq "AWS unchanged after a refused call" "$(awsdesc dev-1 status)" ACTIVE
ok "$JITRCTL" --json ca deactivate dev-1 --force
check_eq "forced" "$(jq -r .forced "$T/out")" true
check_eq "AWS: INACTIVE" "$(awsdesc dev-1 status)" INACTIVE
check_eq "ca.json: INACTIVE" "$(jq -r '.aws[0].status' "$JITRCA_DATA_DIR/ca/dev-1/ca.json")" INACTIVE
ok "$JITRCTL" ca retire dev-1 --aws
check_eq "retire --aws again is harmless" "$(awsdesc dev-1 autoRegistrationStatus)" DISABLE
# a CA never registered
ok "$JITRCTL" ca init dev-9 --parent root
expect_fail 5 "not registered in AWS IoT" "$JITRCTL" ca retire dev-9 --aws
ok "$JITRCTL" audit verify
finish
