#!/usr/bin/env bash
# N revocations (argument; 200 in CI, 50 in the sanitizer build) reach AWS IoT
# at the configured quota (run under tests/sim/run_sim.py, signature checks on): the stand-in's
# DescribeCertificate and UpdateCertificate quotas are RATE/s (80 here, instead of AWS's 10, to
# keep CI short) and jitrd paces those calls at RATE - 0.5; N certificates registered ACTIVE in
# the stand-in are revoked with jitrctl while jitrd is stopped (the jobs wait in the queue), then
# jitrd starts and drains them. Checked: every one REVOKED, no call throttled, two AWS calls per
# revocation (a retried call aside); printed: revocations per second and AWS calls per
# revocation. REVOKE_N and REVOKE_RATE override N and RATE (e.g. 1000 at AWS's default 10/s:
# REVOKE_N=1000 REVOKE_RATE=10 ctest -R it_jobs_revoke_rate -V).
source "$(dirname "$0")/jitr_lib.sh"
N=${REVOKE_N:-${1:-1000}}
RATE=${REVOKE_RATE:-80}
jq --arg r "DescribeCertificate=$((RATE - 1)).5/1,UpdateCertificate=$((RATE - 1)).5/1" \
  '.jitr.aws_rates = $r | .jitr.max_in_flight = 64' "$CFG" >"$T/rate.json" && mv "$T/rate.json" "$CFG"
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d "{\"quotas\": {\"rates\": {\"DescribeCertificate\": $RATE, \"UpdateCertificate\": $RATE, \"RegisterCertificate\": 500}}}" >/dev/null

# the certificates, registered ACTIVE under our CA (as JITR leaves provisioned ones)
make_devices "$N" "$T/d"
python3 - "$STANDIN" "$JITRCA_DATA_DIR/ca/devices/cert.pem" "$T/d" <<'EOF' || fail "register the certificates"
import glob, sys, boto3
url, ca, d = sys.argv[1:4]
iot = boto3.client("iot", endpoint_url=url)
capem = open(ca).read()
for f in sorted(glob.glob(d + "/*.crt")):
    iot.register_certificate(certificatePem=open(f).read(), caCertificatePem=capem, status="ACTIVE")
EOF
check_eq "registered ACTIVE" "$(aws_status "$T/d/dev-000001.crt")" ACTIVE

# jitrd has run once (the engine's group and consumer exist), then is stopped
jitrd_start
jitrd_stop
# four jitrctl at a time: each loads the CA key and signs a CRL (the CRL lock serialises only
# that part), which is what takes the time here, not the queueing
for f in "$T"/d/*.crt; do openssl x509 -in "$f" -noout -serial | cut -d= -f2; done >"$T/serials"
export JITRCTL
xargs -P 4 -n 1 sh -c '"$JITRCTL" revoke "$1" --no-wait >/dev/null' revoke <"$T/serials" 2>"$T/err" &&
  pass || { fail "revoke: a jitrctl failed"; head -5 "$T/err" >&2; }
check_eq "all queued" "$(rcli XLEN jitrca:jobs:revoke:queue)" "$N"
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null

start=$(date +%s%N)
jitrd_start
done_n=0
for _ in $(seq $((N * 10 / RATE + 600))); do
  done_n=$("$JITRCTL" --json jobs status | jq '.kinds[] | select(.kind == "revoke") | .done')
  [ "$done_n" -ge "$N" ] && break
  sleep 0.1
done
ms=$((($(date +%s%N) - start) / 1000000))
# every job ended (a job taken over by the other worker after claim_idle_ms, while it waited for
# its turn at the quota, may run twice: idempotent, the second run describes and changes nothing,
# and both count as done), and no entry is still pending: only then are the calls all made
pending() { rcli XINFO GROUPS jitrca:jobs:revoke:queue | awk 'f{print; exit} /^pending$/{f=1}'; }
for _ in $(seq 300); do [ "$(pending)" = 0 ] && break; sleep 0.1; done
[ "$done_n" -ge "$N" ] && pass || fail "jobs done: $done_n of $N"
check_eq "nothing pending" "$(pending)" 0
stats >"$T/st.json"
calls=$(jq '[.operations.DescribeCertificate.admitted // 0, .operations.UpdateCertificate.admitted // 0] | add' "$T/st.json")
check_eq "no call throttled" "$(jq -r .throttled "$T/st.json")" 0
# two per revocation; a call the client retried (a lost response) counts twice at the stand-in
[ "$calls" -ge "$((2 * N))" ] && [ "$calls" -le "$((2 * N + N / 50 + 1))" ] && pass ||
  fail "AWS calls: $calls for $N revocations"
revoked=0
python3 - "$STANDIN" "$T/d" >"$T/statuses" <<'EOF'
import glob, hashlib, ssl, sys, boto3
url, d = sys.argv[1:3]
iot = boto3.client("iot", endpoint_url=url)
for f in sorted(glob.glob(d + "/*.crt")):
    der = ssl.PEM_cert_to_DER_cert(open(f).read())
    print(iot.describe_certificate(certificateId=hashlib.sha256(der).hexdigest())
          ["certificateDescription"]["status"])
EOF
revoked=$(grep -c '^REVOKED$' "$T/statuses" || true)
check_eq "REVOKED at the stand-in" "$revoked" "$N"
for op in DescribeCertificate UpdateCertificate; do
  echo "$op: max admitted in one second $(jq -r ".operations.$op.max_admitted_1s // 0" "$T/st.json"), quota $RATE" >&2
done
awk -v n="$N" -v ms="$ms" -v c="$calls" 'BEGIN { printf "revocations: %d in %.1f s (jitrd start included): %.1f revocations/s at a quota of %d/s per API; %.2f AWS calls per revocation\n", n, ms / 1000, n / (ms / 1000), '"$RATE"', c / n }' >&2
finish
