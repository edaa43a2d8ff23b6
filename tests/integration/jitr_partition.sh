#!/usr/bin/env bash
# JITR in another partition, and jitrd's region (run under tests/sim/run_sim.py --region
# cn-north-1): the AWS stand-in is China (Beijing), whose ARNs are arn:aws-cn:... and where moto
# finds a certificate only by its exact ARN; a device signed by our CA connects, is provisioned
# (thing, policy and thing attached to arn:aws-cn:iot:cn-north-1:ACCOUNT:cert/ID) and connects.
# Before that, jitrd's AWS region: without one anywhere `jitrd --check-config` and jitrd itself
# fail at once naming where they looked (environment, profile, EC2 IMDS) instead of starting
# workers that crash-loop; EC2 IMDS's placement/region is used when nothing else names one.
source "$(dirname "$0")/jitr_lib.sh"
check_eq "the simulation is China" "$AWS_REGION" cn-north-1
check_eq "the CA's ARN is in aws-cn" "$(jq -r '.aws[0].arn' "$JITRCA_DATA_DIR/ca/devices/ca.json")" \
  "arn:aws-cn:iot:cn-north-1:123456789012:cacert/$DEV_CA_ID"

# --- no region anywhere ----------------------------------------------------------------------------
NOREGION=(env -u AWS_REGION -u AWS_DEFAULT_REGION -u AWS_EC2_METADATA_DISABLED)
expect_fail 2 \
  "JITR: no AWS region: AWS_REGION and AWS_DEFAULT_REGION unset, no region for profile 'default' in" \
  "${NOREGION[@]}" AWS_EC2_METADATA_DISABLED=true "$JITRD" --check-config --config "$CFG"
grep -qF "EC2 IMDS (AWS_EC2_METADATA_DISABLED=true)" "$T/err" && pass || { fail "IMDS named"; cat "$T/err" >&2; }
expect_fail 2 "EC2 IMDS at http://127.0.0.1:1 (cannot connect" \
  "${NOREGION[@]}" AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1 "$JITRD" --check-config \
  --config "$CFG"
# jitrd itself stops at start with the same message (no workers, no restarts)
start=$(date +%s)
rc=0
"${NOREGION[@]}" AWS_EC2_METADATA_DISABLED=true timeout 20 "$JITRD" --config "$CFG" >"$T/out" \
  2>"$T/err" || rc=$?
check_eq "jitrd without a region exits 2" "$rc" 2
grep -qF "no AWS region" "$T/err" && pass || { fail "jitrd names the missing region"; cat "$T/err" >&2; }
[ $(($(date +%s) - start)) -lt 10 ] && pass || fail "jitrd without a region took too long to stop"
grep -q "worker" "$T/err" && { fail "no worker may start without a region"; cat "$T/err" >&2; } || pass
# the region from EC2 IMDS (IMDSv2: token, then placement/region)
python3 "$JITRCA_SOURCE_DIR/tests/unit/aws/creds_server.py" --port-file "$T/imds.port" \
  >"$T/imds.log" 2>&1 &
IMDS_PID=$!
for _ in $(seq 100); do [ -s "$T/imds.port" ] && break; sleep 0.1; done
ok "${NOREGION[@]}" AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$(cat "$T/imds.port")" \
  "$JITRD" --check-config --config "$CFG"
check_eq "IMDSv2 token, then the region" \
  "$(curl -sf "http://127.0.0.1:$(cat "$T/imds.port")/_stats" | jq -c '[.counts.imds_token, .counts.imds_region]')" \
  '[1,1]'
kill "$IMDS_PID"
wait "$IMDS_PID" 2>/dev/null || true

# --- a device in cn-north-1 -----------------------------------------------------------------------
jitrd_start
gateway_rule
make_devices 1 "$T/d1"
D=$T/d1/dev-000001
gw --dir "$T/d1" --timeout 30 >"$T/gw.json" 2>"$T/gw.err" && pass ||
  { fail "device did not connect"; cat "$T/gw.json" "$T/gw.err" >&2; tail -30 "$T/jitrd.log" >&2; }
check_eq "connected after provisioning" "$(jq -r .connected "$T/gw.json")" 1
check_eq "ACTIVE in AWS" "$(aws_status "$D.crt")" ACTIVE
CID=$(cert_id_of "$D.crt")
ARN="arn:aws-cn:iot:cn-north-1:123456789012:cert/$CID"
aws --endpoint-url "$STANDIN" iot list-principal-things --principal "$ARN" >"$T/pt.json"
check_eq "thing attached to the aws-cn ARN" "$(jq -c .things "$T/pt.json")" '["dev-000001"]'
aws --endpoint-url "$STANDIN" iot list-attached-policies --target "$ARN" >"$T/pol.json"
# the template's PolicyDocument is the policy named by its SHA-256 (docs/jitr.md, "Templates")
POLICY=$(jq -j .Resources.policy.Properties.PolicyDocument "$JITRCA_SOURCE_DIR/policies/templates/default.json" | sha256sum | cut -d' ' -f1)
check_eq "policy attached to the aws-cn ARN" "$(jq -r '.policies[0].policyName' "$T/pol.json")" "$POLICY"
aws --endpoint-url "$STANDIN" iot list-principal-things \
  --principal "arn:aws:iot:cn-north-1:123456789012:cert/$CID" >"$T/pt2.json"
check_eq "nothing under the commercial partition's ARN" "$(jq -c .things "$T/pt2.json")" '[]'
check_eq "state DONE" "$(rcli HGET "jitrca:jitr:dev:$CID" state)" DONE
finish
