#!/usr/bin/env bash
# Expiry seen before it hurts: certificates issued with short validity (5, 20 days, and capped at
# a CA that expires in 60 days) are counted by days to expiry in jitrd's /metrics per CA (7/30/90
# days), a revoked one leaves the counts at once, `jitrctl report expiring` lists them (text,
# --json, --csv) with the thing and AWS status JITR recorded, `ca list` shows days left, the CA
# under 90 days is warned about once a day across workers and restarts, and after a Redis loss
# and `jitrctl reindex` everything reads the same. Bad input to the report changes nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jitrd_lib.sh" # Redis (redis_start), rcli, free_port, jitrd_start, stop_all
D=$JITRCA_DATA_DIR

ok "$JITRCTL" ca init root --subject "/CN=Test Root/O=Acme" --days 3650
ok "$JITRCTL" ca init devices --parent root --subject "/CN=Short Devices CA/O=Acme" --days 60
ok "$JITRCTL" ca init longca --parent root --subject "/CN=Long Devices CA/O=Acme" --days 1000
ok "$JITRCTL" ca init stations --parent root --subject "/CN=Test Stations CA/O=Acme"
ok "$JITRCTL" ca retire root
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.pem" -subj /CN=localhost -days 2 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
chmod 600 "$T/srv.key"
cp "$T/srv.pem" "$T/srvca.pem" # jitrd_start's curl trusts it
mkdir -p "$T/profiles"
cp "$JITRCA_SOURCE_DIR"/policies/profiles/*.json "$T/profiles/"
for d in 5 20; do
  jq --argjson d "$d" '.validity_days = $d | .backdate_seconds = 3600' \
    "$T/profiles/device.json" >"$T/profiles/d$d.json"
done
port=$(free_port)
URL=https://127.0.0.1:$port
aport=$(free_port)
ADMIN=http://127.0.0.1:$aport
cat >"$T/stations.json" <<EOF
{"stations": {"line1": {"cas": ["devices", "longca"], "profiles": ["*"], "rate": 0}}}
EOF
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$D", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "profiles_dir": "$T/profiles", "station_ca": "stations", "stations_file": "$T/stations.json",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport", "expiry_check_interval": 1,
 "workers": 2, "worker_threads": 2, "request_timeout": 5, "drain_timeout": 5}
EOF
CFG=$T/jitrd.json

"$GENCSR" --count 6 --cn-prefix ex- --out "$T/csr"
# sign N PROFILE CA: certificate $T/cN.pem, serial in S[N], certificateId in ID[N]
declare -A S ID
sign() {
  ok "$JITRCTL" --config "$CFG" --json sign --csr "$T/csr/ex-00000$1.csr" --profile "$2" --ca "$3"
  jq -r .certificate "$T/out" >"$T/c$1.pem"
  S[$1]=$(jq -r .serial "$T/out")
  ID[$1]=$(jq -r .certificateId "$T/out")
}
sign 1 d5 devices
sign 2 d5 devices
sign 3 d20 devices
sign 4 device devices # capped at the CA's notAfter: 60 days
sign 5 device longca  # 1000 days
sign 6 d20 longca
ok "$JITRCTL" --config "$CFG" revoke "${S[2]}" --reason keyCompromise
# what JITR records of a provisioned device (jitr:dev:<certificateId>)
rcli HSET "jitrca:jitr:dev:${ID[1]}" state DONE thing "dev-1,\"west\"" aws_status ACTIVE >/dev/null

# --- jitrctl ca list: days left -------------------------------------------------------------------
ok "$JITRCTL" --config "$CFG" --json ca list
dl=$(jq -r '.[] | select(.name == "devices") | .days_left' "$T/out")
[ "$dl" -ge 59 ] && [ "$dl" -le 60 ] && pass || fail "devices days_left $dl"
ok "$JITRCTL" --config "$CFG" ca list
grep -q "^devices .* 5[90] /CN=Short Devices CA" "$T/out" && pass || { fail "ca list DAYS"; cat "$T/out" >&2; }

# --- jitrctl report expiring ----------------------------------------------------------------------
report() { "$JITRCTL" --config "$CFG" report expiring "$@" 2>"$T/err"; }
report --days 7 --json >"$T/r.json"
check_eq "7 days: one" "$(jq length "$T/r.json")" 1
check_eq "7 days: serial" "$(jq -r '.[0].serial' "$T/r.json")" "${S[1]}"
check_eq "7 days: thing" "$(jq -r '.[0].thing' "$T/r.json")" 'dev-1,"west"'
check_eq "7 days: aws" "$(jq -r '.[0].aws_status' "$T/r.json")" ACTIVE
check_eq "7 days: ca" "$(jq -r '.[0].ca' "$T/r.json")" devices
check_eq "7 days: cn" "$(jq -r '.[0].cn' "$T/r.json")" ex-000001
check_eq "7 days: notAfter" "$(jq -r '.[0].not_after' "$T/r.json")" \
  "$(date -u -d "$(openssl x509 -in "$T/c1.pem" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)"
check_eq "7 days: days_left" "$(jq -r '.[0].days_left' "$T/r.json")" 4
report --days 30 --json >"$T/r.json"
# S[3] and S[6] (20 days each) are signed within a second or two: when their notAfter is the
# same second the report orders them by serial, so the expected order is computed the same way
check_eq "30 days: the 5- and 20-day ones of both CAs" \
  "$(jq -r '[.[].serial] | sort | join(" ")' "$T/r.json")" \
  "$(printf '%s\n' "${S[1]}" "${S[3]}" "${S[6]}" | sort | paste -sd' ')"
check_eq "30 days: the 5-day one first" "$(jq -r '.[0].serial' "$T/r.json")" "${S[1]}"
check_eq "30 days: sorted by notAfter, then serial" \
  "$(jq -c '[.[] | [.not_after, .serial]] | . == sort' "$T/r.json")" true
check_eq "30 days: no JITR record" "$(jq -r '.[1].thing' "$T/r.json")" null
report --days 90 --ca devices --json >"$T/r.json"
check_eq "90 days of devices" "$(jq -r '[.[].serial] | join(" ")' "$T/r.json")" \
  "${S[1]} ${S[3]} ${S[4]}"
report --days 90 --ca longca --json >"$T/r.json"
check_eq "90 days of longca" "$(jq -r '[.[].serial] | join(" ")' "$T/r.json")" "${S[6]}"
report --days 2000 >"$T/r.txt"
check_eq "text rows" "$(tail -n +2 "$T/r.txt" | wc -l)" 5
grep -q "5 certificate(s) expire within 2000 days" "$T/err" && pass || fail "text summary"
head -1 "$T/r.txt" | grep -q "NOT AFTER.*SERIAL.*CN.*THING.*CA.*AWS STATUS" && pass || fail "header"
report --days 7 --csv >"$T/r.csv"
check_eq "csv header" "$(head -1 "$T/r.csv" | tr -d '\r')" "serial,cn,thing,ca,not_after,aws_status"
check_eq "csv row" "$(sed -n 2p "$T/r.csv" | tr -d '\r')" \
  "${S[1]},ex-000001,\"dev-1,\"\"west\"\"\",devices,$(jq -r '.[0].not_after' <(report --days 7 --json)),ACTIVE"
python3 -c 'import csv,sys; r=list(csv.reader(open(sys.argv[1]))); assert r[1][2]=="dev-1,\"west\"", r' \
  "$T/r.csv" && pass || fail "csv parses"
expect_fail 2 "--days must be 1 to 36500" "$JITRCTL" --config "$CFG" report expiring --days 0
expect_fail 2 "--days must be 1 to 36500" "$JITRCTL" --config "$CFG" report expiring --days x
expect_fail 2 "needs --days N" "$JITRCTL" --config "$CFG" report expiring
expect_fail 2 "exclude each other" "$JITRCTL" --config "$CFG" --json report expiring --days 3 --csv
expect_fail 4 "not found" "$JITRCTL" --config "$CFG" report expiring --days 3 --ca nosuch
expect_fail 2 "unknown report 'revoked'" "$JITRCTL" --config "$CFG" report revoked

# --- /metrics, and the daily warning ---------------------------------------------------------------
jitrd_start "$CFG"
m() { metric "$1"; }
for _ in $(seq 50); do [ "$(m jitrd_expiry_updated_timestamp_seconds)" != 0 ] && break; sleep 0.1; done
check_eq "devices within 7" "$(m 'jitrd_certificates_expiring{ca="devices",within_days="7"}')" 1
check_eq "devices within 30" "$(m 'jitrd_certificates_expiring{ca="devices",within_days="30"}')" 2
check_eq "devices within 90" "$(m 'jitrd_certificates_expiring{ca="devices",within_days="90"}')" 3
check_eq "longca within 7" "$(m 'jitrd_certificates_expiring{ca="longca",within_days="7"}')" 0
check_eq "longca within 30" "$(m 'jitrd_certificates_expiring{ca="longca",within_days="30"}')" 1
check_eq "devices expired" "$(m 'jitrd_certificates_expired{ca="devices"}')" 0
dl=$(m 'jitrd_ca_days_left{ca="devices"}')
[ "$dl" -ge 59 ] && [ "$dl" -le 60 ] && pass || fail "jitrd_ca_days_left devices $dl"
check_eq "CAs within 90" "$(m 'jitrd_cas_expiring{within_days="90"}')" 1
check_eq "CAs within 30" "$(m 'jitrd_cas_expiring{within_days="30"}')" 0
[ "$(m 'jitrd_ca_days_left{ca="stations"}')" -gt 1000 ] && pass || fail "station CA counted"
# a revocation leaves the counts within a count interval
ok "$JITRCTL" --config "$CFG" revoke "${S[3]}" --reason superseded
for _ in $(seq 50); do
  [ "$(m 'jitrd_certificates_expiring{ca="devices",within_days="30"}')" = 1 ] && break; sleep 0.1
done
check_eq "revoked: within 30" "$(m 'jitrd_certificates_expiring{ca="devices",within_days="30"}')" 1
check_eq "revoked: within 90" "$(m 'jitrd_certificates_expiring{ca="devices",within_days="90"}')" 2
sleep 3 # several counts in both workers
warned() { grep -c "CA 'devices' expires in" "$T/jitrd.log" || true; }
check_eq "warned once" "$(warned)" 1
grep -q "CA 'longca' expires" "$T/jitrd.log" && fail "longca warned" || pass
grep "CA 'devices' expires in" "$T/jitrd.log" | grep -q '"level":"warn"' && pass ||
  fail "the warning is a warning"
jitrd_stop
jitrd_start "$CFG"
sleep 2
check_eq "a restart does not warn again the same day" "$(warned)" 1
rcli DEL "jitrca:once:ca-expiry-warning:devices" >/dev/null # a day later
for _ in $(seq 30); do [ "$(warned)" = 2 ] && break; sleep 0.2; done
check_eq "warned again the next day" "$(warned)" 2
jitrd_stop

# --- a Redis loss: reindex rebuilds the expiry sets ------------------------------------------------
report --days 90 --json >"$T/before.json"
rcli FLUSHALL >/dev/null
rcli HSET "jitrca:jitr:dev:${ID[1]}" state DONE thing "dev-1,\"west\"" aws_status ACTIVE >/dev/null
ok "$JITRCTL" --config "$CFG" reindex
report --days 90 --json >"$T/after.json"
check_eq "the same after reindex" "$(jq -c 'map(del(.days_left))' "$T/after.json")" \
  "$(jq -c 'map(del(.days_left))' "$T/before.json")"
check_eq "revoked ones stay out" "$(jq -r '[.[].serial] | join(" ")' "$T/after.json")" \
  "${S[1]} ${S[6]} ${S[4]}"

echo "jitrd_expiry: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
