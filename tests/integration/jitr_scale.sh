#!/usr/bin/env bash
# JITR at scale through the gateway stand-in (run under tests/sim/run_sim.py):
#   jitr_scale.sh N [faults]
# N devices connect at once; every event is delivered twice with jitter (duplicates, out of
# order); jitrd (every process) is killed with SIGKILL at random moments and restarted; Redis is
# restarted once mid-run; with "faults", 20 % of AWS calls are throttled and 5 % fail with 5xx.
# The quotas of the provisioning calls are raised (QUOTA below), jitrd's rates half of them.
# Then: every device connected, every certificate ACTIVE exactly once (one activation record
# each), exactly N things (no duplicate), nothing left in the queue or the dead letters, and
# no AWS quota exceeded (the stand-in's stats).
source "$(dirname "$0")/jitr_lib.sh"
N=${1:-100}
FAULTS=${2:-}
# the provisioning calls at a quota of QUOTA/s at the stand-in (100 instead of AWS's 10 to 15, to
# keep CI short; SCALE_QUOTA=10 for AWS's defaults), jitrd pacing them at half of it
OPS="DescribeCertificate CreateThing AttachPolicy AttachThingPrincipal UpdateCertificate GetPolicy
 CreatePolicy ListCertificatesByCA ListPrincipalThings ListAttachedPolicies"
QUOTA=${SCALE_QUOTA:-100}
rates=$(for op in $OPS; do printf '%s=%s/1,' "$op" "$(awk -v q="$QUOTA" 'BEGIN{print q / 2}')"; done)
JITRD_WORKERS=2 write_config "\"aws_rates\": \"${rates%,}\""
quotas=$(for op in $OPS; do printf '"%s": %s,' "$op" "$QUOTA"; done)
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d "{\"quotas\": {\"rates\": {${quotas%,}}}}" >/dev/null
jitrd_start_group() {
  setsid "$JITRD" --config "$CFG" 2>>"$T/jitrd.log" &
  JPID=$!
  for _ in $(seq 100); do curl -sf "$INTAKE/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "jitrd did not come up" >&2; tail -20 "$T/jitrd.log" >&2; return 1
}
jitrd_kill() { kill -KILL -- "-$JPID" 2>/dev/null || true; wait "$JPID" 2>/dev/null || true; JPID=; }
jitrd_stop() {
  if [ -n "$JPID" ]; then
    kill -TERM -- "-$JPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$JPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$JPID" 2>/dev/null || true
  fi
  JPID=
}

make_devices "$N" "$T/d"
jitrd_start_group
gateway_rule s3cret-new '"event_duplicates": 1, "event_jitter_ms": 300, "retry_delay_ms": 300'
if [ -n "$FAULTS" ]; then
  # 25 % of the provisioning calls fail before they run: 4/5 of them ThrottlingException (20 %),
  # 1/5 a 503 (5 %)
  curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
    -d '{"faults": {"error_rate": 0.25, "error_statuses": ["throttle", "throttle", "throttle", "throttle", 503], "operations": ["DescribeCertificate", "CreateThing", "AttachPolicy", "AttachThingPrincipal", "UpdateCertificate", "CreatePolicy", "GetPolicy"]}}' >/dev/null
fi
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
t0=$(date +%s.%N)
gw --dir "$T/d" --threads 64 --timeout $((N / 2 + 240)) >"$T/gw.json" 2>"$T/gw.err" &
GW=$!

# chaos while the devices connect: SIGKILL jitrd twice, restart Redis once
sleep $((RANDOM % 3 + 2)); jitrd_kill; sleep 0.5; jitrd_start_group
sleep $((RANDOM % 3 + 2)); redis_stop; sleep 1; redis_start
sleep $((RANDOM % 3 + 2)); jitrd_kill; sleep 0.5; jitrd_start_group

wait "$GW" && pass || { fail "devices did not all connect"; cat "$T/gw.json" >&2; tail -20 "$T/gw.err" >&2; }
t1=$(date +%s.%N)
check_eq "devices connected" "$(jq -r .connected "$T/gw.json")" "$N"
# let the last flows record their outcome
for _ in $(seq 100); do
  [ "$(rcli XINFO GROUPS jitrca:jitr:events | awk 'f{print; exit} /^pending$/{f=1}')" = 0 ] && break; sleep 0.2
done
stats >"$T/st.json"
aws --endpoint-url "$STANDIN" iot list-things --max-items 100000 >"$T/things.json"
check_eq "exactly N things" "$(jq '.things | length' "$T/things.json")" "$N"
check_eq "distinct things" "$(jq '[.things[].thingName] | unique | length' "$T/things.json")" "$N"
aws --endpoint-url "$STANDIN" iot list-certificates-by-ca --ca-certificate-id "$DEV_CA_ID" --max-items 100000 >"$T/certs.json"
check_eq "every certificate ACTIVE" "$(jq '[.certificates[] | select(.status == "ACTIVE")] | length' "$T/certs.json")" "$N"
# an activation record per device; a crash (or Redis lost) between the audit append and the state
# write replays RECORD, so a record may repeat (audit readers treat records as possibly repeated)
check_eq "an activation record for every device" "$(grep '"type":"jitr_activate"' "$(audit_log)" | jq -r .certificate_id | sort -u | wc -l)" "$N"
echo "activation records: $(count_records jitr_activate) for $N devices"
check_eq "no dead letters" "$(rcli XLEN jitrca:jitr:dlq)" 0
# the shared policy: created once by whichever worker won, never re-versioned for the same
# document (two workers race to create it; restarts and a lost Redis make them look again)
POLICY=$(jq -j .Resources.policy.Properties.PolicyDocument "$JITRCA_SOURCE_DIR/policies/templates/default.json" | sha256sum | cut -d' ' -f1)
aws --endpoint-url "$STANDIN" iot list-policy-versions --policy-name "$POLICY" >"$T/pv.json"
check_eq "one policy version" "$(jq '.policyVersions | length' "$T/pv.json")" 1
# every device's state, in one redis-cli (the ids from the certificates' DER)
python3 - "$T/d" >"$T/ids" <<'EOF'
import glob, hashlib, ssl, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.crt")):
    print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(f).read())).hexdigest())
EOF
check_eq "a certificate id per device" "$(sort -u "$T/ids" | wc -l)" "$N"
done_n=$(sed 's/^/HGET jitrca:jitr:dev:/; s/$/ state/' "$T/ids" | rcli | grep -cx DONE || true)
check_eq "every state DONE" "$done_n" "$N"
# the quota: the stand-in's per-API token buckets (AWS's quotas) never refused a call; the
# largest number admitted in a sliding second is reported (the Redis outage makes each process
# pace alone for a moment)
for op in DescribeCertificate CreateThing AttachPolicy AttachThingPrincipal UpdateCertificate; do
  echo "$op: max admitted in one second $(jq -r ".operations.$op.max_admitted_1s // 0" "$T/st.json"), quota $(jq -r ".quotas.rates.$op // .quotas.default" <(curl -sf "$STANDIN/_standin/config"))"
done
check_eq "no call refused for exceeding a quota" "$(jq -r .throttled "$T/st.json")" 0
echo "devices $N, wall $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, latency $(jq -c .latency_ms "$T/gw.json"), throttled $(jq -r .throttled "$T/st.json"), faults $(jq -r .faults "$T/st.json"), kills 2, redis restarts 1"
ok "$JITRCTL" audit verify
finish
