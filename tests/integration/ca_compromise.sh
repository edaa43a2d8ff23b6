#!/usr/bin/env bash
# jitrctl ca compromise (docs/operations.md, "A compromised CA") against the AWS IoT stand-in
# (run under tests/sim/run_sim.py, signature checks on). N certificates of the device CA
# (argument: 2000 in CI, 200 in the sanitizer build) are ACTIVE in the stand-in, U more were
# never registered there, one was revoked before. The stand-in's DescribeCertificate and
# UpdateCertificate quotas are RATE/s (100 instead of AWS's 10, to keep CI short) and jitrd
# paces them just below. Checked: refusals (no --yes, unknown CA, station CA, bad --since);
# while the response runs, a station's request for the CA and jitrctl sign are refused naming
# it; jitrd SIGKILLed twice during the revocations and started again; at the end every one of
# the N is REVOKED in AWS, the CA INACTIVE, no call throttled, the report exact (N revoked in
# AWS, U unknown to AWS, none failed), every certificate revoked (keyCompromise) in the index
# and on the CRL, each step audited once; running the command again prints the same report and
# writes nothing; a rebuild of the index after a Redis loss keeps the CA blocked. Printed:
# revocations per second.
source "$(dirname "$0")/jitr_lib.sh"
N=${COMPROMISE_N:-${1:-2000}}
U=5
RATE=${COMPROMISE_RATE:-100}
kill_jitrd() { # SIGKILL, the workers first (they are jitrd's children)
  local w
  for w in $(pgrep -P "$JPID"); do kill -KILL "$w" 2>/dev/null || true; done
  kill -KILL "$JPID" 2>/dev/null || true
  wait "$JPID" 2>/dev/null || true
  JPID=
}
jitrd_up() { # the JITR jitrd of jitr_lib.sh (jitrd_lib.sh's jitrd_start takes a config)
  "$JITRD" --config "$CFG" 2>>"$T/jitrd.log" &
  JPID=$!
  for _ in $(seq 100); do
    curl -sf "$INTAKE/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "jitrd did not come up"; tail -20 "$T/jitrd.log" >&2
}
# sign_req: a station's request for the device CA; prints the HTTP status, body in $T/sign.json
sign_req() {
  curl -sk --cert "$T/st/line1.crt" --key "$T/st/line1.key" -H 'Content-Type: application/pkcs10' \
    --data-binary @"$T/d.der" -o "$T/sign.json" -w '%{http_code}' \
    "https://127.0.0.1:$SIGN_PORT/v1/sign?ca=devices" 2>/dev/null || echo 000
}
done_jobs() { "$JITRCTL" --json jobs status | jq '.kinds[] | select(.kind == "revoke") | .done'; }

echo '{"stations": {"line1": {"cas": ["devices"], "profiles": ["device"], "rate": 0}}}' \
  >"$T/stations.json"
ADMIN_PORT=$(freeport)
jq --arg r "DescribeCertificate=$((RATE - 1)).5/1,UpdateCertificate=$((RATE - 1)).5/1" \
  --arg a "127.0.0.1:$ADMIN_PORT" \
  '.jitr.aws_rates = $r | .jitr.max_in_flight = 64 | .admin_listen = $a' "$CFG" >"$T/rate.json" &&
  mv "$T/rate.json" "$CFG"
# metric NAME: its value for CA devices in jitrd's /metrics (empty when absent)
metric() {
  { curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null || true; } |
    awk -v m="$1" 'index($0, m) == 1 { print $2; exit }'
}
phase() { echo "phase: $1 at $SECONDS s" >&2; }
ok "$JITRCTL" --config "$CFG" station issue line1 --out "$T/st"
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d "{\"quotas\": {\"rates\": {\"DescribeCertificate\": $RATE, \"UpdateCertificate\": $RATE, \"RegisterCertificate\": 1000, \"ListCertificatesByCA\": 100}}}" >/dev/null

# the certificates: N registered ACTIVE under the CA (as JITR leaves provisioned ones), U never
# seen by AWS
phase "setup"
make_devices "$N" "$T/d"
make_devices "$U" "$T/u" unk-
phase "signed"
python3 - "$STANDIN" "$JITRCA_DATA_DIR/ca/devices/cert.pem" "$T/d" <<'EOF' || fail "register the certificates"
import concurrent.futures, glob, sys, boto3
url, ca, d = sys.argv[1:4]
iot = boto3.client("iot", endpoint_url=url)
capem = open(ca).read()
def reg(f):
    iot.register_certificate(certificatePem=open(f).read(), caCertificatePem=capem, status="ACTIVE")
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    list(ex.map(reg, sorted(glob.glob(d + "/*.crt"))))
EOF
phase "registered in AWS"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/d.key" \
  -out "$T/d.csr" -subj /CN=late-device 2>/dev/null
openssl req -in "$T/d.csr" -outform DER -out "$T/d.der"
jitrd_up
check_eq "a station signs with the CA before" "$(sign_req)" 201
# one certificate revoked before the response (unspecified): revoked again by nothing, REVOKED
# in AWS by its own job
S1=$(openssl x509 -in "$T/d/dev-000001.crt" -noout -serial | cut -d= -f2)
ok "$JITRCTL" revoke "$S1" --no-wait
# the late device's certificate is in the index too: N + U + 1 certificates of the CA in all
ALL=$((N + U + 1))

# ---- refusals: nothing written
expect_fail 2 "cannot be undone" "$JITRCTL" ca compromise devices
expect_fail 4 "not found" "$JITRCTL" ca compromise nosuch --yes
expect_fail 5 "is the station CA" "$JITRCTL" --config "$CFG" ca compromise stations --yes
expect_fail 2 "not an RFC 3339 time" "$JITRCTL" ca compromise devices --since yesterday --yes
expect_fail 2 "unknown option" "$JITRCTL" ca compromise devices --yes --no-such-option
check_eq "nothing audited" "$(count_records ca_compromise)" 0
check_eq "not blocked" "$(rcli SISMEMBER jitrca:ca:blocked devices)" 0

# ---- the response, jitrd SIGKILLed twice during the revocations
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
base=$(done_jobs)
start=$(date +%s%N)
"$JITRCTL" --config "$CFG" ca compromise devices --yes >"$T/cmp.out" 2>"$T/cmp.err" &
CPID=$!
for _ in $(seq 100); do grep -q "^1/4 blocked" "$T/cmp.out" && break; sleep 0.1; done
t_blocked=$(date +%s%N)
grep -q "^1/4 blocked" "$T/cmp.out" && pass || { fail "blocked step not printed"; cat "$T/cmp.out" "$T/cmp.err" >&2; }
# every jitrd worker refuses at once (the serial reservation checks the block)
code=$(sign_req)
took=$((($(date +%s%N) - t_blocked) / 1000000))
check_eq "a station's request for the CA refused" "$code" 403
grep -q "CA 'devices' is compromised" "$T/sign.json" && pass || { fail "refusal names the CA"; cat "$T/sign.json" >&2; }
[ "$took" -lt 2000 ] && pass || fail "refused $took ms after the block"
expect_fail 3 "CA 'devices' is compromised" "$JITRCTL" sign --ca devices --csr "$T/d.csr" --out "$T/x.pem"
for k in 1 2; do
  want=$((base + (N * k) / 3))
  for _ in $(seq 1200); do
    [ "$(done_jobs)" -ge "$want" ] && break
    kill -0 "$CPID" 2>/dev/null || break
    sleep 0.05
  done
  echo "kill $k of jitrd at $(( $(done_jobs) - base )) jobs done" >&2
  kill_jitrd
  sleep 0.5
  jitrd_up
done
# the progress in /metrics while it runs (worker 0 counts every 2 s)
seen=
for _ in $(seq 50); do
  p=$(metric 'jitrd_ca_compromise_certificates{ca="devices",outcome="pending"}')
  t=$(metric 'jitrd_ca_compromise_total{ca="devices"}')
  if [ -n "$p" ] && [ "$t" = "$ALL" ]; then seen=$p; break; fi
  sleep 0.1
done
[ -n "$seen" ] && pass || fail "/metrics: no compromise progress"
echo "/metrics while running: $seen pending of $ALL" >&2
rc=0
wait "$CPID" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
check_eq "ca compromise exit" "$rc" 0
[ "$rc" -eq 0 ] || { cat "$T/cmp.out" "$T/cmp.err" >&2; }
cat "$T/cmp.out" >&2
grep -q "^2/4 AWS IoT: CA 'devices' is INACTIVE" "$T/cmp.out" && pass || fail "inactive step printed"
grep -q "^3/4 index: $((ALL - 1)) certificates revoked (keyCompromise), 1 revoked before" "$T/cmp.out" && pass ||
  fail "index step printed: $(grep '^3/4' "$T/cmp.out")"
grep -Eq "^ +REVOKED in AWS IoT +$((N))$" "$T/cmp.out" && pass || fail "report: REVOKED in AWS"
grep -Eq "^ +unknown to AWS IoT +$((U + 1))$" "$T/cmp.out" && pass || fail "report: unknown to AWS"
grep -Eq "^ +failed +0$" "$T/cmp.out" && pass || fail "report: failed"
grep -q "in AWS IoT" "$T/cmp.err" && pass || fail "progress bar on stderr"

phase "compromise done"
for _ in $(seq 50); do [ "$(metric 'jitrd_ca_compromise_done{ca="devices"}')" = 1 ] && break; sleep 0.1; done
check_eq "/metrics: done" "$(metric 'jitrd_ca_compromise_done{ca="devices"}')" 1
check_eq "/metrics: revoked" "$(metric 'jitrd_ca_compromise_certificates{ca="devices",outcome="revoked"}')" "$N"
check_eq "/metrics: unknown" "$(metric 'jitrd_ca_compromise_certificates{ca="devices",outcome="unknown"}')" "$((U + 1))"
check_eq "/metrics: failed" "$(metric 'jitrd_ca_compromise_certificates{ca="devices",outcome="failed"}')" 0
check_eq "/metrics: pending" "$(metric 'jitrd_ca_compromise_certificates{ca="devices",outcome="pending"}')" 0
# days left for every CA of the store, the root that signs nothing here too
# (counted every expiry_check_interval by worker 0, which the kills restarted)
for _ in $(seq 100); do dl=$(metric 'jitrd_ca_days_left{ca="root"}'); [ -n "$dl" ] && break; sleep 0.1; done
[ -n "$dl" ] && [ "$dl" -ge 3640 ] && pass || fail "/metrics: the root's days left '$dl'"

# ---- AWS: every certificate REVOKED, the CA INACTIVE, no call throttled
python3 - "$STANDIN" "$(jq -r '.aws[0].caCertificateId' "$JITRCA_DATA_DIR/ca/devices/ca.json")" >"$T/aws.txt" <<'EOF'
import collections, sys, boto3
url, caid = sys.argv[1:3]
iot = boto3.client("iot", endpoint_url=url)
st = collections.Counter()
kw = {}
while True:
    page = iot.list_certificates_by_ca(caCertificateId=caid, pageSize=250, **kw)
    for c in page["certificates"]:
        st[c["status"]] += 1
    if not page.get("nextMarker"):
        break
    kw = {"marker": page["nextMarker"]}
print(" ".join(f"{k}={v}" for k, v in sorted(st.items())))
print(iot.describe_ca_certificate(certificateId=caid)["certificateDescription"]["status"])
EOF
check_eq "every certificate REVOKED in AWS" "$(sed -n 1p "$T/aws.txt")" "REVOKED=$N"
check_eq "the CA INACTIVE in AWS" "$(sed -n 2p "$T/aws.txt")" INACTIVE
stats >"$T/st.json"
check_eq "no call throttled" "$(jq -r .throttled "$T/st.json")" 0
for op in DescribeCertificate UpdateCertificate; do
  max=$(jq -r ".operations.$op.max_admitted_1s // 0" "$T/st.json")
  [ "$max" -le "$RATE" ] && pass || fail "$op: $max admitted in one second, quota $RATE"
done

phase "AWS checked"
# ---- our side: the index, the CRL, the audit log
check_eq "revoked in the index" "$(rcli HLEN jitrca:ca:devices:revoked)" "$ALL"
check_eq "keyCompromise" "$(rcli HGET "jitrca:cert:$(index_serial "$T/d/dev-000002.crt")" reason)" keyCompromise
check_eq "revoked before keeps its reason" "$(rcli HGET "jitrca:cert:$(index_serial "$T/d/dev-000001.crt")" reason)" unspecified
check_eq "on the CRL" "$(openssl crl -in "$JITRCA_DATA_DIR/ca/devices/crl.pem" -noout -text | grep -c 'Serial Number')" "$ALL"
check_eq "CRL reasons" "$(openssl crl -in "$JITRCA_DATA_DIR/ca/devices/crl.pem" -noout -text | grep -c 'Key Compromise')" "$((ALL - 1))"
check_eq "revoke records" "$(count_records revoke)" "$ALL"
for s in begin revoked done; do
  check_eq "step $s audited once" "$(grep -c "\"type\":\"ca_compromise\".*\"step\":\"$s\"\|\"step\":\"$s\".*\"type\":\"ca_compromise\"" "$(audit_log)")" 1
done
check_eq "blocked audited" "$(count_records ca_compromised)" 1
check_eq "INACTIVE audited" "$(grep -c '"newStatus":"INACTIVE"' "$(audit_log)")" 1
grep '"step":"done"' "$(audit_log)" | jq -e "select(.aws_revoked == $N and .aws_unknown == $((U + 1)) and .failed == 0)" >/dev/null &&
  pass || fail "done record's counts"
ok "$JITRCTL" ca list
grep -E "^devices " "$T/out" | grep -q compromised && pass || fail "ca list shows compromised: $(cat "$T/out")"

# ---- again: the same report, nothing written; --since cannot change it
lines=$(wc -l <"$(audit_log)")
ok "$JITRCTL" --config "$CFG" --json ca compromise devices --yes
check_eq "again: the report" "$(jq -c '[.step, .aws_revoked, .aws_unknown, .failed, .pending]' "$T/out")" "[\"done\",$N,$((U + 1)),0,0]"
check_eq "again: nothing audited" "$(wc -l <"$(audit_log)")" "$lines"
expect_fail 5 "began at" "$JITRCTL" ca compromise devices --since 2020-01-01T00:00:00Z --yes

# ---- two operators at once (a spare CA with a certificate): every step written once, every run
# ends with the report; the later runs wait for the first, then find the work done
phase "at once"
ok "$JITRCTL" ca init spare --parent root --subject "/CN=Spare/O=Acme"
ok "$JITRCTL" sign --ca spare --csr "$T/d.csr" --out "$T/spare.pem"
pids=""
for i in 1 2 3 4 5 6; do
  "$JITRCTL" --config "$CFG" ca compromise spare --yes --stall-timeout 5 >"$T/par$i.out" 2>&1 &
  pids="$pids $!"
done
bad=0
for p in $pids; do wait "$p" || bad=$((bad + 1)); done
check_eq "six runs at once: all succeed" "$bad" 0
[ "$bad" = 0 ] || cat "$T"/par*.out >&2
for s in begin revoked done; do
  check_eq "six runs at once: step $s audited once" "$(jq -c "select(.type == \"ca_compromise\" and .ca == \"spare\" and .step == \"$s\")" "$(audit_log)" | wc -l)" 1
done
check_eq "six runs at once: blocked audited once" "$(jq -c 'select(.type == "ca_compromised" and .ca == "spare")' "$(audit_log)" | wc -l)" 1
check_eq "six runs at once: one revocation" "$(jq -c 'select(.type == "revoke" and .ca == "spare")' "$(audit_log)" | wc -l)" 1
grep -l "running in another jitrctl" "$T"/par*.out >/dev/null && pass || fail "no run said it waited for another"

phase "again"
# ---- after a Redis loss and the rebuild, the CA stays blocked
jitrd_stop
rcli FLUSHALL >/dev/null
ok "$JITRCTL" reindex
check_eq "blocked again after reindex" "$(rcli SISMEMBER jitrca:ca:blocked devices)" 1
expect_fail 3 "CA 'devices' is compromised" "$JITRCTL" sign --ca devices --csr "$T/d.csr" --out "$T/x.pem"

phase "end"
awk -v n="$ALL" -v ms="$ms" 'BEGIN { printf "ca compromise: %d certificates in %.1f s, jitrd SIGKILLed twice: %.1f revocations/s at a quota of '"$RATE"'/s per API\n", n, ms / 1000, n / (ms / 1000) }' >&2
finish
