#!/usr/bin/env bash
# jitrd heals the Redis index by itself. Under a signing load from several stations, Redis is
# (1) shut down without saving and restarted empty on the same socket, (2) flushed, (3) flushed
# while another process holds the rebuild lock (a rebuilder that died: jitrd waits for the lock
# to lapse and takes over). Each time: clients only ever see 201 or 503 (with Retry-After, never
# 403), signing resumes within seconds without any command, every returned certificate is in
# the audit log and in the rebuilt index with its serial reserved, serials stay unique, no deny
# record is written for the 503s, and a station revoked before the loss is still refused.
# Then jitrctl reindex (same code, same lock) next to a running jitrd.
source "$(dirname "$0")/lib.sh"
if [ "${JITRCA_TEST_SCALE:-}" = small ]; then LOAD_S=3; else LOAD_S=5; fi
HEAL_LIMIT_S=15 # signing must resume within this after Redis is back

source "$(dirname "$0")/jitrd_lib.sh" # Redis (redis_start), rcli, jitrd_stop, stop_all
LOADPIDS=()
stop_extra() {
  touch "$T/stop"
  for p in "${LOADPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}

ok "$JITRCTL" ca init root --subject "/CN=Test Root/O=Acme" --days 3650
ok "$JITRCTL" ca init devices --parent root --subject "/CN=Test Devices CA/O=Acme"
ok "$JITRCTL" ca init stations --parent root --subject "/CN=Test Stations CA/O=Acme"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.pem" -subj /CN=localhost -days 2 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
chmod 600 "$T/srv.key"
port=$(free_port)
URL=https://127.0.0.1:$port
aport=$(free_port)
ADMIN=http://127.0.0.1:$aport # /readyz's reasons and /metrics (admin_listen)
cat >"$T/stations.json" <<EOF
{"stations": {
  "line1": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
  "line2": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
  "gone": {"cas": ["devices"], "profiles": ["device"], "rate": 0}
}}
EOF
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json", "default_profile": "device",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport",
 "workers": 2, "worker_threads": 2, "request_timeout": 5, "drain_timeout": 5}
EOF
CFG=$T/jitrd.json
for s in line1 line2 gone; do ok "$JITRCTL" --config "$CFG" station issue "$s" --out "$T/st"; done
ok "$JITRCTL" --config "$CFG" station revoke gone
"$GENCSR" --count 16 --cn-prefix dev- --out "$T/csr"

"$JITRD" --config "$CFG" 2>"$T/jitrd.log" &
JPID=$!
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/srv.pem" "$URL/readyz")" = 200 ] && break
  sleep 0.1
done

# req STATION [curl args...]: status into $code, body into $T/body, headers into $T/hdr
req() {
  local st=$1; shift
  code=$(curl -sS --cacert "$T/srv.pem" --cert "$T/st/$st.crt" --key "$T/st/$st.key" \
    -D "$T/hdr" -o "$T/body" -w '%{http_code}' "$@" || true)
}
sign() { req "$1" -H 'Content-Type: application/x-pem-file' --data-binary @"$T/csr/dev-00000$2.csr" "$URL/v1/sign"; }
metric() { curl -s "$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

sign line1 1; check_eq "sign before any loss" "$code" 201
for _ in $(seq 30); do [ "$(metric jitrd_index_complete)" = 1 ] && break; sleep 0.1; done
sign gone 1
check_eq "revoked station refused" "$code" 403
grep -q revoked "$T/body" && pass || fail "refusal says revoked: $(cat "$T/body")"
check_eq "index complete metric" "$(metric jitrd_index_complete)" 1

# --- the load: each client signs in a loop and records "start_ms status serial" ---------------
load() { # load NAME STATION
  local out=$T/load.$1 i=0 c s t0
  : >"$out"
  while [ ! -e "$T/stop" ]; do
    i=$(( i % 8 + 1 ))
    t0=$(date +%s%3N)
    c=$(curl -sS --cacert "$T/srv.pem" --cert "$T/st/$2.crt" --key "$T/st/$2.key" \
      -H 'Content-Type: application/x-pem-file' --data-binary @"$T/csr/dev-00000$i.csr" \
      -D "$T/lh.$1" -o "$T/lb.$1" -w '%{http_code}' "$URL/v1/sign" 2>/dev/null || echo 000)
    s=-
    if [ "$c" = 201 ]; then s=$(jq -r .serial "$T/lb.$1"); fi
    if [ "$c" = 503 ] && ! grep -qi '^retry-after: [0-9]' "$T/lh.$1"; then c=503-no-retry-after; fi
    echo "$t0 $c $s" >>"$out"
  done
}
rm -f "$T/stop"
for n in 1 2 3 4; do load "c$n" "line$(( (n % 2) + 1 ))" & LOADPIDS+=($!); done
sleep "$LOAD_S"

denies0=$(count_records deny)
rebuilds0=$(metric 'jitrd_index_rebuilds_total{result="ok"}')

# wait_heal WHAT SINCE_MS: a 201 for a request the load sent after SINCE_MS (one in flight
# during the loss may still end 201: its serial was reserved before), within HEAL_LIMIT_S
wait_heal() {
  local deadline=$(( $2 + HEAL_LIMIT_S * 1000 )) t
  while :; do
    t=$(cat "$T"/load.c* | awk -v s="$2" '$1 > s && $2 == 201 {print $1}' | sort -n | head -1)
    if [ -n "$t" ]; then
      echo "$1: a request sent $(( t - $2 )) ms after Redis came back was signed" >&2
      pass; return 0
    fi
    if [ "$(date +%s%3N)" -gt "$deadline" ]; then
      fail "$1: no certificate issued within ${HEAL_LIMIT_S}s after Redis came back"; return 1
    fi
    sleep 0.2
  done
}

# --- 1: Redis crashes and comes back empty on the same socket ----------------------------------
rcli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
sleep 1
redis_start
back=$(date +%s%3N)
wait_heal "SHUTDOWN NOSAVE" "$back"
sleep "$LOAD_S"

# --- 2: FLUSHALL under the load ---------------------------------------------------------------
rcli FLUSHALL >/dev/null
back=$(date +%s%3N)
wait_heal "FLUSHALL" "$back"
sleep 1

# --- 3: a rebuilder that died holding the lock: 503 with Retry-After, then jitrd takes over ----
rcli FLUSHALL >/dev/null
# the dead rebuilder's lock is kept alive while the checks run (however slow the machine is),
# then left to lapse
hold() { rcli SET jitrca:index:lock "dead-rebuilder" PX 10000 >/dev/null; }
hold
sleep 0.5
hold
sign line1 2
check_eq "signing while the index is incomplete" "$code" 503
grep -qi '^retry-after: 2' "$T/hdr" && pass || fail "no Retry-After on the 503: $(cat "$T/hdr")"
jq -r .error.message "$T/body" | grep -q "being rebuilt" && pass || fail "503 message: $(cat "$T/body")"
hold
req line1 "$URL/v1/certificates/$(grep '"type":"issue"' "$(audit_log)" | tail -1 | jq -r .serial)"
check_eq "certificate read while incomplete" "$code" 503
hold
sign gone 2
check_eq "revoked station while incomplete: 503, not a verdict" "$code" 503
hold
code=$(curl -s -o "$T/body" -w '%{http_code}' "$ADMIN/readyz")
check_eq "readyz while incomplete" "$code" 503
grep -q "incomplete" "$T/body" && pass || fail "readyz reason: $(cat "$T/body")"
check_eq "index complete metric while incomplete" "$(metric jitrd_index_complete)" 0
check_eq "the dead rebuilder still holds the lock" "$(rcli GET jitrca:index:lock)" dead-rebuilder
rcli PEXPIRE jitrca:index:lock 1000 >/dev/null   # it lapses: a worker takes over
back=$(date +%s%3N)
wait_heal "lock taken over" "$back"
sleep 1

touch "$T/stop"
for p in "${LOADPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
LOADPIDS=()

# --- what the clients saw ---------------------------------------------------------------------
cat "$T"/load.c* >"$T/all"
total=$(wc -l <"$T/all")
n201=$(awk '$2 == 201' "$T/all" | wc -l)
n503=$(awk '$2 == 503' "$T/all" | wc -l)
echo "load: $total requests, $n201 issued, $n503 answered 503" >&2
check_eq "only 201 and 503 (with Retry-After)" "$(awk '$2 != 201 && $2 != 503' "$T/all" | sort | uniq -c | head -5)" ""
[ "$n503" -gt 0 ] && pass || fail "the load never saw the index incomplete"
[ "$n201" -gt 20 ] && pass || fail "too few certificates issued: $n201"
check_eq "no deny record for the 503s" "$(count_records deny)" "$denies0"

# every certificate handed out is audited, indexed, reserved; no serial twice
awk '$2 == 201 {print $3}' "$T/all" | sort >"$T/served"
check_eq "serials unique" "$(uniq -d "$T/served" | head -3)" ""
grep '"type":"issue"' "$(audit_log)" | jq -r .serial | sort >"$T/audited"
check_eq "every certificate served is audited" "$(comm -23 "$T/served" "$T/audited" | head -3)" ""
missing=0 unreserved=0
while read -r s; do
  [ "$(rcli EXISTS "jitrca:cert:$s")" = 1 ] || missing=$((missing + 1))
  [ "$(rcli EXISTS "jitrca:serial:$s")" = 1 ] || unreserved=$((unreserved + 1))
done <"$T/audited"
check_eq "every audited certificate is in the rebuilt index" "$missing" 0
check_eq "every audited serial is reserved again (never reused)" "$unreserved" 0
check_eq "audit log intact" "$("$JITRCTL" --config "$CFG" audit verify >/dev/null 2>&1; echo $?)" 0

# a serial issued before the losses cannot be reserved again
first=$(head -1 "$T/audited")
check_eq "old serial's reservation" "$(rcli SET "jitrca:serial:$first" x NX)" ""

# the station revoked before the loss is still refused, the others sign
sign gone 3
check_eq "revoked station after the rebuild" "$code" 403
grep -q revoked "$T/body" && pass || fail "refusal after rebuild says revoked: $(cat "$T/body")"
sign line2 3
check_eq "signing after the rebuilds" "$code" 201

# metrics and logs tell what happened
rebuilds=$(metric 'jitrd_index_rebuilds_total{result="ok"}')
[ "$(( rebuilds - rebuilds0 ))" -ge 3 ] && pass || fail "rebuilds counted: $rebuilds0 -> $rebuilds"
check_eq "index complete metric after" "$(metric jitrd_index_complete)" 1
[ "$(metric jitrd_index_rebuild_records)" -ge 10 ] && pass || fail "records replayed metric: $(metric jitrd_index_rebuild_records)"
grep -q 'rebuilds it from the audit log' "$T/jitrd.log" && pass || fail "no rebuild start in the log"
grep -q 'index rebuilt from the audit log' "$T/jitrd.log" && pass || fail "no rebuild end in the log"
check_eq "worker restarts" "$(metric jitrd_worker_restarts_total)" 0

# --- jitrctl reindex next to jitrd: the same lock and marker ----------------------------------
gen0=$(rcli HGET jitrca:index:ready gen)
ok "$JITRCTL" --config "$CFG" reindex
gen1=$(rcli HGET jitrca:index:ready gen)
[ -n "$gen1" ] && [ "$gen1" != "$gen0" ] && pass || fail "jitrctl reindex did not mark a new index: $gen0 -> $gen1"
rcli SET jitrca:index:lock "someone-else" PX 5000 >/dev/null
expect_fail 5 "being rebuilt by another process (someone-else)" "$JITRCTL" --config "$CFG" reindex
rcli DEL jitrca:index:lock >/dev/null
sign line1 4
check_eq "signing after jitrctl reindex" "$code" 201

finish
