#!/usr/bin/env bash
# jitrctl aws register-batch (run under tests/sim/run_sim.py, signature checks on): N certificates
# we issued (argument; 200 in CI, 50 in the sanitizer build; REGISTER_N=1000 for the full size,
# which takes minutes: seven AWS calls per device through the stand-in) registered in it and
# provisioned (thing, policy, principal, ACTIVE) by jitrd's job workers at the quotas configured
# (the stand-in's and jitrd's rates raised to 100/s and 90/s to keep CI short: none throttled;
# 16 flows per worker, as many as the stand-in serves without making each call wait seconds: with
# 64 a flow's first steps outlasted its certificate lock, and the flow did CreateThing again),
# jitrd SIGKILLed once mid-run and started again; lines that are not ours (a foreign
# certificate, a revoked one, a sign-batch error line, not JSON) refused with the reason; a
# second run changes nothing in AWS and reports every one "already there"; a CA registered
# SNI_ONLY gets its certificates registered without a CA and provisioned; bulk-export writes
# AWS's bulk registration input and template for the same checked certificates.
source "$(dirname "$0")/jitr_lib.sh"
N=${REGISTER_N:-${1:-1000}}
OPS="DescribeCertificate RegisterCertificate CreateThing DescribeThing GetPolicy CreatePolicy AttachPolicy AttachThingPrincipal UpdateCertificate ListCertificatesByCA ListPrincipalThings"
rates=$(for o in $OPS; do printf '%s=89.5/1,' "$o"; done)
jq --arg r "${rates%,}" '.jitr.aws_rates = $r | .jitr.max_in_flight = 16' "$CFG" >"$T/rate.json" &&
  mv "$T/rate.json" "$CFG"
q=$(for o in $OPS; do printf '"%s": 100,' "$o"; done)
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d "{\"quotas\": {\"rates\": {${q%,}}}}" >/dev/null || fail "stand-in quotas"

make_devices "$N" "$T/d"
python3 - "$T/d" >"$T/in.jsonl" <<'EOF'
import glob, json, os, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.crt")):
    print(json.dumps({"id": os.path.basename(f)[:-4], "certificate": open(f).read()}))
EOF
# refused lines: a certificate we did not issue, one we revoked, an error line, not JSON
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/x.key" \
  -out "$T/x.pem" -subj /CN=foreign -days 2 2>/dev/null
make_devices 1 "$T/r" rev-
jitrd_start
ok "$JITRCTL" revoke "$(openssl x509 -in "$T"/r/rev-*.crt -noout -serial | cut -d= -f2)" --no-wait
cp "$T/in.jsonl" "$T/all.jsonl"
jq -cn --rawfile c "$T/x.pem" '{id: "foreign", certificate: $c}' >>"$T/all.jsonl"
jq -cn --rawfile c "$(ls "$T"/r/rev-*.crt)" '{id: "revoked", certificate: $c}' >>"$T/all.jsonl"
echo '{"id": "bad", "error": {"code": "invalid", "message": "bad CSR"}}' >>"$T/all.jsonl"
echo 'not json' >>"$T/all.jsonl"
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null

# run 1, jitrd killed once while it runs
start=$(date +%s%N)
"$JITRCTL" --json aws register-batch --in "$T/all.jsonl" --timeout 600 >"$T/r1.json" 2>"$T/r1.err" &
CPID=$!
for _ in $(seq 600); do
  d=$(rcli HGET jitrca:jobs:stats register:done)
  [ "${d:-0}" -ge $((N / 3)) ] && break
  sleep 0.1
done
kill -KILL "$JPID"
wait "$JPID" 2>/dev/null || true
JPID=
echo "jitrd killed after ${d:-0} registrations" >&2
sleep 0.5
jitrd_start
rc=0
wait "$CPID" || rc=$?
check_eq "run 1: exit status (refused lines)" "$rc" 2
# the report, then (exit status 2) the error naming how many were refused
jq -s '.[0]' "$T/r1.json" >"$T/r1r.json" && mv "$T/r1r.json" "$T/r1.json"
ms=$((($(date +%s%N) - start) / 1000000))
check_eq "run 1: registered" "$(jq .registered "$T/r1.json")" "$N"
check_eq "run 1: refused" "$(jq .refused "$T/r1.json")" 4
check_eq "run 1: failed" "$(jq .failed "$T/r1.json")" 0
jq -r '.items[] | select(.result == "refused") | .detail' "$T/r1.json" >"$T/why"
grep -q 'not issued by us' "$T/why" && pass || fail "foreign: $(cat "$T/why")"
grep -q 'revoked in our index' "$T/why" && pass || fail "revoked: $(cat "$T/why")"
grep -q 'error line' "$T/why" && pass || fail "error line: $(cat "$T/why")"
grep -q 'not a JSON object' "$T/why" && pass || fail "not json: $(cat "$T/why")"
stats >"$T/st1.json"
check_eq "run 1: nothing throttled" "$(jq -r .throttled "$T/st1.json")" 0
echo "run 1: AWS calls $(jq -c '[.operations | to_entries[] | {(.key): .value.admitted}] | add' "$T/st1.json")" >&2
# one CreateThing per device, but for the flows the kill interrupted (at most max_in_flight per
# worker) and that call it again when they resume
[ "$(jq '.operations.CreateThing.admitted' "$T/st1.json")" -le $((N + 2 * 16)) ] && pass ||
  fail "run 1: CreateThing called $(jq '.operations.CreateThing.admitted' "$T/st1.json") times for $N devices"
# at the stand-in: every certificate ACTIVE under our CA, things and policies on a sample
python3 - "$STANDIN" "$DEV_CA_ID" "$T/d" "$N" <<'EOF' && pass || fail "AWS state after run 1"
import glob, hashlib, ssl, sys, boto3
url, ca, d, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
iot = boto3.client("iot", endpoint_url=url)
st, kw = {}, {"caCertificateId": ca, "pageSize": 250}
while True:
    r = iot.list_certificates_by_ca(**kw)
    st.update({c["certificateId"]: c["status"] for c in r["certificates"]})
    if not r.get("nextMarker"):
        break
    kw["marker"] = r["nextMarker"]
files = sorted(glob.glob(d + "/*.crt"))
ids = [hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(f).read())).hexdigest() for f in files]
bad = [i for i in ids if st.get(i) != "ACTIVE"]
assert len(ids) == n and not bad, "not ACTIVE: %d of %d" % (len(bad), n)
for i in ids[:: max(1, n // 20)]:
    arn = iot.describe_certificate(certificateId=i)["certificateDescription"]["certificateArn"]
    assert iot.list_principal_things(principal=arn)["things"], "no thing for " + i
    assert iot.list_attached_policies(target=arn)["policies"], "no policy for " + i
EOF
awk -v n="$N" -v ms="$ms" 'BEGIN { printf "register-batch: %d in %.1f s (a jitrd kill included): %.1f/s\n", n, ms / 1000, n / (ms / 1000) }' >&2

# run 2: nothing changes
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
rc=0
"$JITRCTL" --json aws register-batch --in "$T/in.jsonl" --quiet >"$T/r2.json" 2>"$T/r2.err" || rc=$?
check_eq "run 2: exit status" "$rc" 0
check_eq "run 2: already there" "$(jq .already_there "$T/r2.json")" "$N"
check_eq "run 2: registered" "$(jq .registered "$T/r2.json")" 0
stats >"$T/st2.json"
# reads only (DescribeCertificate; the reconciler's ListCertificatesByCA): no write reached AWS
check_eq "run 2: no AWS change" "$(jq '[.operations | to_entries[] | select(.key | test("^(Describe|List|Get)") | not) | .value.admitted // 0] | add // 0' "$T/st2.json")" 0
check_eq "run 2: one describe each" "$(jq '.operations.DescribeCertificate.admitted // 0' "$T/st2.json")" "$N"
check_eq "run 2: ACTIVE" "$(jq -r '.items[0].detail' "$T/r2.json")" "ACTIVE in AWS IoT"

# a CA of ours registered SNI_ONLY: RegisterCertificateWithoutCA (AWS keeps no CA for such a
# certificate), provisioned by the same flow all the same
ok "$JITRCTL" ca init sni --parent root --subject "/CN=JITR Test SNI Devices/O=Acme"
ok "$JITRCTL" ca register sni --mode sni-only
mkdir -p "$T/s"
"$GENCSR" --count 2 --out "$T/s" --cn-prefix sni- --keys >/dev/null
"$JITRCTL" sign-batch --ca sni --in "$T/s" --out "$T/s" --quiet >/dev/null || fail "sign sni"
jitrd_stop
jitrd_start # its CA table with the new CA at once (else within 10 s)
rc=0
"$JITRCTL" --json aws register-batch --in "$T/s" --quiet >"$T/r3.json" 2>"$T/r3.err" || rc=$?
check_eq "sni: exit status" "$rc" 0
check_eq "sni: registered" "$(jq .registered "$T/r3.json")" 2
python3 - "$STANDIN" "$T/s" <<'EOF' && pass || fail "sni: AWS state"
import glob, hashlib, ssl, sys, boto3
iot = boto3.client("iot", endpoint_url=sys.argv[1])
for f in sorted(glob.glob(sys.argv[2] + "/*.crt")):
    i = hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(f).read())).hexdigest()
    d = iot.describe_certificate(certificateId=i)["certificateDescription"]
    assert d["status"] == "ACTIVE" and not d.get("caCertificateId"), d
    assert iot.list_principal_things(principal=d["certificateArn"])["things"]
EOF

# bulk-export: the same checks; AWS's bulk registration input (one line of parameters each) and
# its template
rc=0
"$JITRCTL" --json aws bulk-export --in "$T/all.jsonl" --out "$T/bulk.jsonl" \
  --template-out "$T/bulk-template.json" >"$T/bx.json" 2>"$T/bx.err" || rc=$?
check_eq "bulk-export: exit status (refused lines)" "$rc" 2
check_eq "bulk-export: written" "$(jq -s '.[0].written' "$T/bx.json")" "$N"
check_eq "bulk-export: refused" "$(jq -s '.[0].refused' "$T/bx.json")" 4
python3 - "$T/bulk.jsonl" "$T/bulk-template.json" "$JITRCA_DATA_DIR/ca/devices/cert.pem" "$T/d" "$N" <<'EOF' && pass || fail "bulk-export files"
import glob, json, os, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
tpl, capem, d, n = json.load(open(sys.argv[2])), open(sys.argv[3]).read(), sys.argv[4], int(sys.argv[5])
assert len(lines) == n, len(lines)
certs = {open(f).read(): os.path.basename(f)[:-4] for f in glob.glob(d + "/*.crt")}
for l in lines:
    assert set(l) == {"ThingName", "CertificatePem", "CACertificatePem"}, l.keys()
    assert certs[l["CertificatePem"]] == l["ThingName"], l["ThingName"]
    assert l["CACertificatePem"].strip() == capem.strip()
assert set(tpl["Parameters"]) == {"ThingName", "CertificatePem", "CACertificatePem"}
r = tpl["Resources"]
assert r["thing"]["Properties"]["ThingName"] == {"Ref": "ThingName"}
assert r["certificate"]["Properties"]["CertificatePem"] == {"Ref": "CertificatePem"}
assert r["certificate"]["Properties"]["Status"] == "ACTIVE"
assert r["policy1"]["Type"] == "AWS::IoT::Policy" and r["policy1"]["Properties"]["PolicyName"]
EOF
finish
