#!/usr/bin/env bash
# Three jitrd nodes (separate data directories and audit logs, node_id n1..n3, each other's logs
# as audit_peer_logs) on one Redis found through Sentinel: a primary, a replica and three
# redis-sentinel (tests/harness/sentinel-fixture.sh). Stations sign against all three nodes;
# the primary is SIGKILLed mid-run; the sentinels promote the replica and every node carries on
# by itself. Then: clients only ever saw 201 or 503 (with Retry-After); the gap in service is
# measured and printed; every certificate served is audited on the node that served it (its
# records carry the node) and is in the index with its serial reserved (each node replays its
# own audit tail after the failover); no serial twice; each log verifies; jitrctl works through
# Sentinel; jitrctl reindex with the three logs gives the same certificates.
source "$(dirname "$0")/lib.sh"
if [ "${JITRCA_TEST_SCALE:-}" = small ]; then LOAD_S=3; else LOAD_S=6; fi
GAP_LIMIT_S=20  # fail above this; the figure printed is what to compare with the 10 s target
JITRD=${JITRD:-$JITRCA_BUILD_DIR/daemon/jitrd}
FIX=$JITRCA_SOURCE_DIR/tests/harness/sentinel-fixture.sh

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PIDS=() LOADPIDS=()
stop_all() {
  touch "$T/stop"
  for p in "${LOADPIDS[@]}" "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  bash "$FIX" stop "$T/sentinel" || true
}
trap 'rc=$?; stop_all; (exit $rc); cleanup' EXIT

bash "$FIX" start "$T/sentinel"
. "$T/sentinel/env"
export JITRCA_REDIS_URL=$SENTINEL_URL # jitrctl goes through Sentinel too
primary_cli() {
  local p
  p=$(redis-cli -p "${SENTINEL_PORTS%% *}" SENTINEL get-master-addr-by-name "$MASTER" | sed -n 2p)
  redis-cli -p "$p" "$@"
}

# one PKI, copied to every node; stations issued through node 1
D1=$T/n1
export JITRCA_DATA_DIR=$D1 JITRCA_NODE_ID=n1 # what the setup writes is node 1's
ok "$JITRCTL" ca init root --subject "/CN=Test Root/O=Acme" --days 3650
ok "$JITRCTL" ca init devices --parent root --subject "/CN=Test Devices CA/O=Acme"
ok "$JITRCTL" ca init stations --parent root --subject "/CN=Test Stations CA/O=Acme"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.pem" -subj /CN=localhost -days 2 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
chmod 600 "$T/srv.key"
cat >"$T/stations.json" <<EOF
{"stations": {
  "line1": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
  "line2": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
  "line3": {"cas": ["devices"], "profiles": ["device"], "rate": 0}
}}
EOF
for n in 1 2 3; do
  # every node's log directory exists from the start (a share mounted on each node): a log not
  # written yet is an empty one, a directory missing fails a rebuild
  mkdir -p "$T/n$n/audit"
  if [ "$n" != 1 ]; then cp -a "$D1/ca" "$T/n$n/ca"; fi
done
for n in 1 2 3; do
  port[$n]=$(free_port)
  aport[$n]=$(free_port)
  peers=""
  for m in 1 2 3; do
    [ "$m" = "$n" ] || peers="$peers${peers:+,}$T/n$m/audit/audit.log"
  done
  cat >"$T/n$n.json" <<EOF
{"data_dir": "$T/n$n", "redis_url": "$SENTINEL_URL", "node_id": "n$n",
 "audit_peer_logs": "$peers", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json", "default_profile": "device",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:${port[$n]}",
 "admin_listen": "127.0.0.1:${aport[$n]}",
 "workers": 1, "worker_threads": 2, "request_timeout": 5, "drain_timeout": 5}
EOF
done
for s in line1 line2 line3; do
  ok "$JITRCTL" --config "$T/n1.json" station issue "$s" --out "$T/st"
done
"$GENCSR" --count 8 --cn-prefix dev- --out "$T/csr"
unset JITRCA_NODE_ID JITRCA_DATA_DIR # each node's from its configuration

for n in 1 2 3; do
  "$JITRD" --config "$T/n$n.json" 2>"$T/jitrd$n.log" &
  PIDS+=($!)
done
for n in 1 2 3; do
  up=0
  for _ in $(seq 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/srv.pem" \
      "https://127.0.0.1:${port[$n]}/readyz")" = 200 ] && up=1 && break
    sleep 0.1
  done
  [ "$up" = 1 ] || { fail "jitrd n$n is not ready"; tail -5 "$T/jitrd$n.log" >&2; finish; }
done

# load NODE: one station per node signs in a loop; "start_ms status serial" per request
load() {
  local n=$1 out=$T/load.$1 i=0 c s t0
  : >"$out"
  while [ ! -e "$T/stop" ]; do
    i=$(( i % 8 + 1 ))
    t0=$(date +%s%3N)
    c=$(curl -sS --cacert "$T/srv.pem" --cert "$T/st/line$n.crt" --key "$T/st/line$n.key" \
      -H 'Content-Type: application/x-pem-file' --data-binary @"$T/csr/dev-00000$i.csr" \
      -D "$T/lh.$n" -o "$T/lb.$n" -w '%{http_code}' "https://127.0.0.1:${port[$n]}/v1/sign" \
      2>/dev/null || echo 000)
    s=-
    if [ "$c" = 201 ]; then s=$(jq -r .serial "$T/lb.$n"); fi
    if [ "$c" = 503 ] && ! grep -qi '^retry-after: [0-9]' "$T/lh.$n"; then c=503-no-retry-after; fi
    echo "$t0 $c $s" >>"$out"
  done
}
rm -f "$T/stop"
for n in 1 2 3; do load "$n" & LOADPIDS+=($!); done
sleep "$LOAD_S"

killed=$(date +%s%3N)
ok bash "$FIX" kill-primary "$T/sentinel"
# until every node signed a request sent after the kill, then a little more
deadline=$(( killed + 60000 ))
while :; do
  back=0
  for n in 1 2 3; do
    awk -v k="$killed" '$1 > k && $2 == 201 { n++ } END { exit !n }' "$T/load.$n" && back=$((back + 1))
  done
  [ "$back" = 3 ] && break
  [ "$(date +%s%3N)" -lt "$deadline" ] || break
  sleep 0.2
done
sleep 2
touch "$T/stop"
for p in "${LOADPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
LOADPIDS=()

# --- what the clients saw -----------------------------------------------------------------------
for n in 1 2 3; do awk -v n="$n" '{print $0, n}' "$T/load.$n"; done | sort -n >"$T/all"
total=$(wc -l <"$T/all")
n201=$(awk '$2 == 201' "$T/all" | wc -l)
n503=$(awk '$2 == 503' "$T/all" | wc -l)
check_eq "only 201 and 503 (with Retry-After)" \
  "$(awk '$2 != 201 && $2 != 503 {print $2}' "$T/all" | sort | uniq -c | head -5)" ""
# the gap: per node, from the last request answered 201 before its first 503 to the first 201
# after; the figure is the longest of the three
gap_ms=0
for n in 1 2 3; do
  g=$(awk -v k="$killed" '
    $2 == 201 && $1 < k { last = $1 }
    $2 == 503 && !first503 { first503 = $1 }
    $2 == 201 && first503 && !after { after = $1 }
    END { if (first503 && after) print after - last; else print 0 }' "$T/load.$n")
  echo "node n$n: $(awk '$2 == 201' "$T/load.$n" | wc -l) certificates, $(awk '$2 == 503' "$T/load.$n" | wc -l) 503s, gap ${g} ms" >&2
  [ "$g" -gt "$gap_ms" ] && gap_ms=$g
done
echo "failover: $total requests, $n201 certificates, $n503 answered 503, longest gap in service ${gap_ms} ms (primary SIGKILLed at +${LOAD_S} s)" >&2
for n in 1 2 3; do
  awk -v k="$killed" '$1 > k && $2 == 201 { n++ } END { exit !n }' "$T/load.$n" && pass ||
    fail "node n$n never signed again after the failover"
done
[ "$gap_ms" -lt $(( GAP_LIMIT_S * 1000 )) ] && pass || fail "gap in service ${gap_ms} ms"

# --- every certificate served: audited on its node, indexed, reserved, unique ---------------------
awk '$2 == 201 {print $3}' "$T/all" | sort >"$T/served"
check_eq "no serial twice" "$(uniq -d "$T/served" | head -3)" ""
: >"$T/audited"
for n in 1 2 3; do
  log=$T/n$n/audit/audit.log
  awk '$2 == 201 {print $3}' "$T/load.$n" | sort >"$T/served.$n"
  grep '"type":"issue"' "$log" | jq -r .serial | sort >"$T/audited.$n"
  check_eq "n$n: every certificate it served is in its log" \
    "$(comm -23 "$T/served.$n" "$T/audited.$n" | head -3)" ""
  check_eq "n$n: every record names the node" "$(grep -vc '"node":"n'"$n"'"' "$log")" 0
  cat "$T/audited.$n" >>"$T/audited"
done
check_eq "no serial in two logs" "$(sort "$T/audited" | uniq -d | head -3)" ""
# the index converges by itself (each node replays its audit tail after the failover)
index_missing() {
  awk '{print "EXISTS jitrca:cert:" $1; print "EXISTS jitrca:serial:" $1}' "$T/audited" |
    primary_cli 2>/dev/null | grep -c '^0' || true
}
for _ in $(seq 100); do [ "$(index_missing)" = 0 ] && break; sleep 0.3; done
check_eq "every audited certificate indexed, its serial reserved" "$(index_missing)" 0
echo "index: $(wc -l <"$T/audited") certificates audited over three logs" >&2
grep -h "audit tail since" "$T"/jitrd*.log | head -3 >&2 || true

# --- jitrctl through Sentinel, several logs -------------------------------------------------------
s1=$(head -1 "$T/served.1")
ok "$JITRCTL" --config "$T/n2.json" cert show "$s1"
ok "$JITRCTL" --config "$T/n1.json" audit verify --file "$T/n1/audit/audit.log" \
  --file "$T/n2/audit/audit.log" --file "$T/n3/audit/audit.log"
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()
want=$(primary_cli --scan --pattern 'jitrca:cert:*' | wc -l)
ok "$JITRCTL" --config "$T/n1.json" --json reindex
check_eq "reindex from the three logs: certificates" "$(jq -r .certificates "$T/out")" "$want"
check_eq "reindex: every certificate" "$(primary_cli --scan --pattern 'jitrca:cert:*' | wc -l)" "$want"

finish
