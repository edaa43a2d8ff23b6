#!/usr/bin/env bash
# Issuing aliases and CA rotation (docs/operations.md, "Rotating the issuing CA"), against the
# AWS IoT stand-in and two jitrd of two workers each sharing one Redis:
# - jitrctl ca alias set|list: refusals (unknown, retired or station CA, an alias with a CA's
#   name, bad names), the mapping audited (ca_alias) and in Redis, jitrctl sign --ca ALIAS;
# - ca rotate --before: nothing to do while the CA has time left;
# - ca rotate under a steady signing load on both jitrd: no failed request, every certificate
#   issued 2 s after the switch is the new CA's (the switch latency is measured per jitrd);
#   the new CA registered in AWS IoT like the old one, the old one retired here but ACTIVE with
#   auto-registration in AWS, every step audited; a station that names the old CA is refused
#   (403), readiness stays 200;
# - an interrupted rotation (AWS refuses the registration) leaves the alias as it was and is
#   finished by running the command again; --to cannot change an unfinished rotation;
# - reindex after a Redis loss restores the alias from the audit log.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jitrd_lib.sh"
: "${JITRCA_SIM_IOT_URL:?run under tests/sim/run_sim.py}"
STANDIN=$JITRCA_SIM_IOT_URL
curl -s -X POST "$STANDIN/_standin/reset" >/dev/null
awsiot() { aws --endpoint-url "$STANDIN" iot "$@"; }
fp_of() { jq -r .fingerprint "$JITRCA_DATA_DIR/ca/$1/ca.json"; }
issuer_cn() { openssl x509 -noout -issuer -nameopt multiline | awk -F' = ' '/commonName/ {print $2}'; }

ok "$JITRCTL" ca init root --subject "/CN=Rot Root/O=Acme" --days 3650
ok "$JITRCTL" ca init dev-1 --parent root --subject "/CN=Rot Devices CA 1/O=Acme"
ok "$JITRCTL" ca init stations --parent root --subject "/CN=Rot Stations CA/O=Acme"
ok "$JITRCTL" ca register dev-1

# ---- aliases: refusals, then set
expect_fail 4 "not found" "$JITRCTL" ca alias set devices nosuch
expect_fail 5 "is a CA of the store" "$JITRCTL" ca alias set dev-1 stations
echo '{"station_ca": "stations"}' >"$T/cli.json"
expect_fail 5 "is the station CA" "$JITRCTL" --config "$T/cli.json" ca alias set devices stations
expect_fail 2 "bad CA name" "$JITRCTL" ca alias set 'de/v' dev-1
expect_fail 2 "usage" "$JITRCTL" ca alias set devices
expect_fail 4 "names no CA" "$JITRCTL" ca rotate devices
check_eq "nothing audited for refusals" "$(count_records ca_alias)" 0
ok "$JITRCTL" ca alias set devices dev-1
grep -qF "alias 'devices' names CA 'dev-1'" "$T/out" && pass || fail "set output: $(cat "$T/out")"
ok "$JITRCTL" ca alias set devices dev-1
grep -qF "names CA 'dev-1' already" "$T/out" && pass || fail "set again: $(cat "$T/out")"
check_eq "one ca_alias record" "$(count_records ca_alias)" 1
check_eq "redis" "$(rcli HGET jitrca:alias:ca devices)" dev-1
ok "$JITRCTL" --json ca alias list
check_eq "alias list" "$(jq -c '[.[] | {alias, ca, status}]' "$T/out")" \
  '[{"alias":"devices","ca":"dev-1","status":"active"}]'
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/d.key" \
  -out "$T/d.csr" -subj /CN=cli-dev 2>/dev/null
ok "$JITRCTL" sign --ca devices --csr "$T/d.csr" --out "$T/d.pem"
check_eq "jitrctl sign --ca ALIAS" "$(issuer_cn <"$T/d.pem")" "Rot Devices CA 1"

# ---- --before: nothing to do
ok "$JITRCTL" ca rotate devices --before 30
grep -qF "nothing to do" "$T/out" && pass || fail "--before: $(cat "$T/out")"
check_eq "no rotation begun" "$(count_records ca_rotate_begin)" 0

# ---- two jitrd, two workers each
cat >"$T/stations.json" <<EOF
{"stations": {"line1": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
              "line2": {"cas": ["dev-1"], "profiles": ["device"], "rate": 0}}}
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srvca.key" \
  -out "$T/srvca.pem" -subj /CN=srvca -days 2 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/srv.ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/srvca.pem" -CAkey "$T/srvca.key" -CAcreateserial \
  -out "$T/srv.pem" -days 1 -extfile "$T/srv.ext" 2>/dev/null
chmod 600 "$T/srv.key"
ports=()
for i in 1 2; do
  p=$(free_port); ports+=("$p")
  cat >"$T/jitrd$i.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$p",
 "admin_listen": "", "workers": 2, "worker_threads": 2, "request_timeout": 10,
 "drain_timeout": 5}
EOF
done
stations_issue "$T/jitrd1.json" line1 line2
PIDS=()
for i in 1 2; do
  URL=https://127.0.0.1:${ports[$((i - 1))]}
  "$JITRD" --config "$T/jitrd$i.json" 2>>"$T/jitrd$i.log" &
  PIDS+=($!)
  for _ in $(seq 150); do curl -s --cacert "$T/srvca.pem" "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done
LOADPIDS=()
stop_extra() {
  for p in "${LOADPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
# load I: line1 signs one certificate after the other on jitrd I; each line: end time, HTTP
# status, issuer CN
load() {
  local url=https://127.0.0.1:${ports[$(($1 - 1))]} n=0
  while :; do
    n=$((n + 1))
    local c
    c=$(curl -sS --cacert "$T/srvca.pem" --cert "$T/st/line1.crt" --key "$T/st/line1.key" \
      -H 'Content-Type: application/pkcs10' --data-binary @"$T/d.der" -o "$T/load$1.pem" \
      -w '%{http_code}' "$url/v1/sign" 2>/dev/null || echo 000)
    printf '%s %s %s\n' "$(date +%s.%N)" "$c" \
      "$(jq -r .certificate "$T/load$1.pem" 2>/dev/null | issuer_cn 2>/dev/null | tr ' ' _)" \
      >>"$T/load$1.txt"
  done
}
openssl req -in "$T/d.csr" -outform DER -out "$T/d.der"
load 1 & LOADPIDS+=($!)
load 2 & LOADPIDS+=($!)
sleep 2

# ---- rotate under the load
ok "$JITRCTL" ca rotate devices
t_done=$(date +%s.%N)
cat "$T/out"
for s in begin create register switch retire; do
  grep -q "^$s " "$T/out" && pass || fail "step $s not printed"
done
grep -qF "done: alias 'devices' rotated from 'dev-1' to 'dev-2'" "$T/out" && pass || fail "done line"
grep -qF "next:" "$T/out" && pass || fail "next step not printed"
# each jitrd signs with dev-2 (waited for at most 10 s)
for i in 1 2; do
  for _ in $(seq 100); do
    awk -v t="$t_done" '$1 > t && $3 == "Rot_Devices_CA_2" { f = 1; exit } END { exit !f }' \
      "$T/load$i.txt" && break
    sleep 0.1
  done
done
sleep 2.5
for p in "${LOADPIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
LOADPIDS=()
for i in 1 2; do
  total=$(wc -l <"$T/load$i.txt")
  bad=$(awk '$2 != 201' "$T/load$i.txt" | wc -l)
  [ "$bad" = 0 ] || awk '$2 != 201' "$T/load$i.txt" | head -5 >&2
  check_eq "jitrd $i: no failed request ($total signed)" "$bad" 0
  late=$(awk -v t="$t_done" '$1 > t + 2 && $3 != "Rot_Devices_CA_2"' "$T/load$i.txt" | wc -l)
  check_eq "jitrd $i: every certificate 2 s after the rotation is the new CA's" "$late" 0
  check_eq "jitrd $i signs with dev-2" "$(awk '$3 == "Rot_Devices_CA_2"' "$T/load$i.txt" | grep -c . || true)" \
    "$(awk '$3 == "Rot_Devices_CA_2"' "$T/load$i.txt" | grep -c . | awk '$1 > 0')"
  echo "jitrd $i: $total requests during the rotation, $bad failed"
  grep -q "issuing alias 'devices' now names CA 'dev-2' (was 'dev-1')" "$T/jitrd$i.log" && pass ||
    fail "jitrd $i did not log the switch"
done
check_eq "alias" "$(rcli HGET jitrca:alias:ca devices)" dev-2
# the switch latency of every worker: from the ca_alias audit record to its log line
python3 - "$JITRCA_DATA_DIR/audit/audit.log" "$T/jitrd1.log" "$T/jitrd2.log" >"$T/lat" <<'PY' || fail "switch latency: $(cat "$T/lat")"
import json, sys
from datetime import datetime
ts = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
t0 = [ts(r["ts"]) for r in map(json.loads, open(sys.argv[1]))
      if r.get("type") == "ca_alias" and r.get("ca") == "dev-2"][0]
lat = {}
for f in sys.argv[2:]:
    for l in open(f):
        if l.startswith("{") and "now names CA 'dev-2'" in l:
            r = json.loads(l)
            lat[r["pid"]] = ts(r["ts"]) - t0
print("switch latency per worker (s):", " ".join("%.3f" % v for v in sorted(lat.values())))
sys.exit(0 if len(lat) == 4 and max(lat.values()) < 2.0 else 1)
PY
cat "$T/lat"
check_eq "dev-1 retired" "$(jq -r .status "$JITRCA_DATA_DIR/ca/dev-1/ca.json")" retired
check_eq "dev-2 parent" "$(jq -r .parent "$JITRCA_DATA_DIR/ca/dev-2/ca.json")" root
check_eq "dev-2 subject" "$(jq -r .subject "$JITRCA_DATA_DIR/ca/dev-2/ca.json")" \
  "/CN=Rot Devices CA 2/O=Acme"
awsiot describe-ca-certificate --certificate-id "$(fp_of dev-2)" >"$T/d2.json"
check_eq "dev-2 ACTIVE in AWS" "$(jq -r .certificateDescription.status "$T/d2.json")" ACTIVE
check_eq "dev-2 auto-registration" \
  "$(jq -r .certificateDescription.autoRegistrationStatus "$T/d2.json")" ENABLE
awsiot describe-ca-certificate --certificate-id "$(fp_of dev-1)" >"$T/d1.json"
check_eq "dev-1 still ACTIVE in AWS" "$(jq -r .certificateDescription.status "$T/d1.json")" ACTIVE
check_eq "dev-1 auto-registration kept" \
  "$(jq -r .certificateDescription.autoRegistrationStatus "$T/d1.json")" ENABLE
for r in ca_rotate_begin ca_rotate ca_retire; do check_eq "audit $r" "$(count_records $r)" 1; done
check_eq "audit ca_alias" "$(count_records ca_alias)" 2
check_eq "audit ca_register" "$(count_records ca_register)" 2
URL=https://127.0.0.1:${ports[0]}
jq -n --rawfile c "$T/d.csr" '{csr: $c, ca: "dev-1"}' >"$T/req.json"
req line2 -H 'Content-Type: application/json' --data-binary @"$T/req.json" "$URL/v1/sign"
expect_err 403 denied "CA 'dev-1' is retired and issues nothing"
req - "$URL/readyz"
check_eq "ready with a retired CA a station names" "$code" 200

# ---- interrupted: AWS refuses the registration; the alias stays; the rerun finishes
AWS_SECRET_ACCESS_KEY=wrong expect_fail 3 "stopped (run it again to finish)" "$JITRCTL" ca rotate devices
check_eq "alias unchanged" "$(rcli HGET jitrca:alias:ca devices)" dev-2
check_eq "dev-3 made" "$(jq -r .status "$JITRCA_DATA_DIR/ca/dev-3/ca.json")" active
check_eq "dev-2 active" "$(jq -r .status "$JITRCA_DATA_DIR/ca/dev-2/ca.json")" active
expect_fail 5 "is unfinished" "$JITRCTL" ca rotate devices --to other
ok "$JITRCTL" ca rotate devices
grep -q "^create .*(done before)" "$T/out" && pass || fail "resume: $(cat "$T/out")"
check_eq "alias dev-3" "$(rcli HGET jitrca:alias:ca devices)" dev-3
check_eq "dev-2 retired" "$(jq -r .status "$JITRCA_DATA_DIR/ca/dev-2/ca.json")" retired
check_eq "one more ca_init" "$(count_records ca_init)" 5
ok "$JITRCTL" audit verify

# ---- Redis lost: the index rebuild (jitrd's, from the audit log) restores the alias
rcli FLUSHALL >/dev/null
for _ in $(seq 100); do [ "$(rcli HGET jitrca:alias:ca devices)" = dev-3 ] && break; sleep 0.2; done
check_eq "alias restored" "$(rcli HGET jitrca:alias:ca devices)" dev-3
# each worker takes the restored alias at its next check (every 250 ms; a worker that had a later
# generation before the loss too): within the 2 s of any switch, every request signed
cn=
end=$(( $(date +%s%N) + 2000000000 ))
while [ "$(date +%s%N)" -lt "$end" ]; do
  req line1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/d.der" "$URL/v1/sign"
  [ "$code" = 201 ] || break
  cn=$(jq -r .certificate "$T/body" | issuer_cn)
  [ "$cn" = "Rot Devices CA 3" ] && break
  sleep 0.1
done
check_eq "signs after the rebuild" "$code" 201
check_eq "with dev-3 within 2 s" "$cn" "Rot Devices CA 3"
finish
