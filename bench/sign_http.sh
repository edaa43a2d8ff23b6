#!/usr/bin/env bash
# jitrd HTTP signing benchmark: certs/s over many keep-alive mutual-TLS connections on loopback,
# with 1 and 2 workers, against the crypto bound measured in the same run (as bench/sign.sh:
# one ECDSA P-256 verify of the CSR plus one sign, 1/(1/sign + 1/verify), from openssl speed).
# Two kinds of requests: one PEM CSR per POST /v1/sign over CONNECTIONS connections, then BATCH
# CSRs per POST /v1/sign/batch over 8 connections (a station sending a lot at once).
#   bench/sign_http.sh [BUILD_DIR] [SECONDS] [CONNECTIONS] [BATCH]
# WORKERS="1 2" (the worker counts to run) and KINDS="sign batch" (the kinds of requests) choose
# a part of the runs, for A/B comparisons of two builds.
# Everything runs here: a throwaway redis-server (unix socket), data dir, CAs, station
# credentials, server certificate; the durable audit log is on (fdatasync per group commit).
set -euo pipefail
build=${1:-build}
secs=${2:-10}
conns=${3:-32}
batch=${4:-32}
tmp=$(mktemp -d /tmp/jitrca-bench-http-XXXXXX)
jpid=
stop() {
  [ -n "$jpid" ] && kill -TERM "$jpid" 2>/dev/null && wait "$jpid" 2>/dev/null || true
  redis-cli -s "$tmp/redis.sock" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap stop EXIT
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp" >/dev/null
for _ in $(seq 100); do redis-cli -s "$tmp/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
export JITRCA_DATA_DIR=$tmp/data JITRCA_REDIS_URL=unix://$tmp/redis.sock
export JITRCA_KEY_PASSPHRASE=bench-passphrase
ctl=$build/cli/jitrctl
$ctl ca init devices --subject "/CN=Bench Devices CA" >/dev/null
$ctl ca init stations --subject "/CN=Bench Stations CA" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/srv.key" \
  -out "$tmp/srv.pem" -subj /CN=localhost -days 1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
chmod 600 "$tmp/srv.key"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo '{"stations": {"bench": {"rate": 1000000, "burst": 1000000}}}' >"$tmp/stations.json"
config() { # config WORKERS
  cat >"$tmp/jitrd.json" <<EOC
{"default_ca": "devices", "station_ca": "stations", "stations_file": "$tmp/stations.json",
 "tls_cert_file": "$tmp/srv.pem", "tls_key_file": "$tmp/srv.key", "listen": "127.0.0.1:$port",
 "workers": $1, ${THREADS:+"worker_threads": $THREADS,} "log_level": "warn"}
EOC
}
config 1
$ctl --config "$tmp/jitrd.json" station issue bench --out "$tmp/st" >/dev/null
"$build/tests/tools/gencsr" --count 2000 --out "$tmp/csrs.jsonl" >/dev/null

jitrd_cpu() { # jitrd_cpu PID: utime+stime ticks of jitrd and its workers
  local t=0 p
  for p in "$1" $(pgrep -P "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
speed() { # speed ARGS -> "sign verify" per second for ecdsa p256 (sum over processes)
  openssl speed "$@" ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1), $NF}' | tail -1
}
read -r s1 v1 < <(speed -seconds 3)
bound1=$(awk -v s="$s1" -v v="$v1" 'BEGIN { printf "%.0f", 1 / (1/s + 1/v) }')
read -r s2 v2 < <(speed -seconds 3 -multi 2)
bound2=$(awk -v s="$s2" -v v="$v2" 'BEGIN { printf "%.0f", 1 / (1/s + 1/v) }')
echo "openssl speed ecdsap256: 1 core sign $s1/s verify $v1/s -> bound $bound1 certs/s"
echo "openssl speed -multi 2: sign $s2/s verify $v2/s -> bound $bound2 certs/s"

run() { # run WORKERS CONNECTIONS BATCH
  local workers=$1 c=$2 b=$3
  config "$workers"
  "$build/daemon/jitrd" --config "$tmp/jitrd.json" 2>>"$tmp/jitrd.log" &
  jpid=$!
  for _ in $(seq 100); do curl -s --cacert "$tmp/srv.pem" "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  cpu0=$(jitrd_cpu "$jpid")
  out=$("$build/bench/bench_sign_http" --port "$port" --cert "$tmp/st/bench.crt" \
    --key "$tmp/st/bench.key" --cacert "$tmp/srv.pem" --csrs "$tmp/csrs.jsonl" --conns "$c" \
    --seconds "$secs" --batch "$b")
  cpu1=$(jitrd_cpu "$jpid")
  rate=$(echo "$out" | awk '{print $1}')
  bound=$([ "$workers" = 1 ] && echo "$bound1" || echo "$bound2")
  # per core: certificates per CPU-second jitrd itself used (the load client and Redis share
  # these 2 cores), against the one-core bound
  # against the certificates issued (a loaded machine stretches the run beyond SECONDS)
  issued=$(echo "$out" | sed -n 's/.* \([0-9]*\) issued.*/\1/p')
  elapsed=$(echo "$out" | sed -n 's/.* connections, \([0-9.]*\) s,.*/\1/p')
  percore=$(awk -v n="$issued" -v c0="$cpu0" -v c1="$cpu1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { cpu = (c1 - c0) / hz; printf "%.0f", (cpu > 0 ? n / cpu : 0) }')
  echo "jitrd $workers worker(s), $([ "$b" = 1 ] && echo "/v1/sign" || echo "/v1/sign/batch of $b"): $out; ratio to the bound $(awk -v r="$rate" -v b="$bound" 'BEGIN { printf "%.2f", r / b }')"
  echo "  jitrd CPU $(awk -v c0="$cpu0" -v c1="$cpu1" -v hz="$(getconf CLK_TCK)" -v s="$elapsed" 'BEGIN { printf "%.2f", (c1 - c0) / hz / s }') cores; per core of jitrd CPU: $percore certs/s, ratio to the one-core bound $(awk -v p="$percore" -v b="$bound1" 'BEGIN { printf "%.2f", p / b }')"
  kill -TERM "$jpid"; wait "$jpid" 2>/dev/null || true; jpid=
}
for kind in ${KINDS:-sign batch}; do
  for workers in ${WORKERS:-1 2}; do
    case $kind in
    sign) run "$workers" "$conns" 1 ;;
    batch) run "$workers" 8 "$batch" ;;
    *) echo "KINDS: sign or batch, not '$kind'" >&2; exit 2 ;;
    esac
  done
done
"$ctl" audit verify >/dev/null && echo "audit log verified"
