#!/usr/bin/env bash
# Issuance benchmark: certs/s against the crypto bound measured in the same run.
#   bench/sign.sh [BUILD_DIR] [COUNT]
# The bound for P-256 is one ECDSA verify (the CSR) plus one ECDSA sign (the certificate):
# 1 / (1/sign_rate + 1/verify_rate), from `openssl speed` (one core, and -multi N for all).
# Starts its own redis-server on a unix socket and uses a throwaway data dir; loopback only.
set -euo pipefail
build=${1:-build}
count=${2:-40000}
cores=$(nproc)
tmp=$(mktemp -d /tmp/jitrca-bench-XXXXXX)
trap 'redis-cli -s "$tmp/redis.sock" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp" >/dev/null
for _ in $(seq 100); do redis-cli -s "$tmp/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
export JITRCA_DATA_DIR=$tmp/data JITRCA_REDIS_URL=unix://$tmp/redis.sock
export JITRCA_KEY_PASSPHRASE=bench-passphrase
"$build/cli/jitrctl" ca init bench --subject "/CN=Bench CA" >/dev/null

speed() { # speed ARGS -> "sign verify" per second for ecdsa p256 (sum over processes)
  openssl speed "$@" ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1), $NF}' | tail -1
}
read -r s1 v1 < <(speed -seconds 3)
bound1=$(awk -v s="$s1" -v v="$v1" 'BEGIN { printf "%.0f", 1 / (1/s + 1/v) }')
read -r sN vN < <(speed -seconds 3 -multi "$cores")
boundN=$(awk -v s="$sN" -v v="$vN" 'BEGIN { printf "%.0f", 1 / (1/s + 1/v) }')
echo "openssl speed ecdsap256: 1 core sign $s1/s verify $v1/s -> bound $bound1 certs/s"
echo "openssl speed -multi $cores: sign $sN/s verify $vN/s -> bound $boundN certs/s"
"$build/bench/bench_sign" --threads 1 --count "$count" --bound "$bound1" --no-io
"$build/bench/bench_sign" --threads "$cores" --count "$count" --bound "$boundN" --no-io
redis_cpu() { # seconds of CPU redis-server used so far
  redis-cli -s "$tmp/redis.sock" info cpu | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f", s }'
}
whole() { # whole THREADS BOUND: the whole path, then redis-server's CPU per certificate
  local r0 r1
  r0=$(redis_cpu)
  "$build/bench/bench_sign" --threads "$1" --count "$count" --batch 64 --bound "$2"
  r1=$(redis_cpu)
  # the CSRs are made before the timed part, without Redis: all of its CPU is the whole path's
  awk -v a="$r0" -v b="$r1" -v n="$count" 'BEGIN { printf "  redis-server CPU %.1f us per certificate\n", (b - a) * 1e6 / n }'
}
whole 1 "$bound1"
whole "$cores" "$boundN"
# sign-batch on 100k CSRs, wall time (CSR generation not timed)
"$build/tests/tools/gencsr" --count 100000 --out "$tmp/100k.jsonl"
start=$(date +%s%N)
"$build/cli/jitrctl" sign-batch --in "$tmp/100k.jsonl" --out "$tmp/100k.out.jsonl" --quiet
end=$(date +%s%N)
echo "sign-batch 100k CSRs: $(( (end - start) / 1000000 )) ms wall on $cores threads"
