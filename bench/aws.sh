#!/usr/bin/env bash
# Benchmark of the AWS IoT client (bench/aws_load.c) against the stand-in: requests/s and CPU per
# request at several concurrencies, with 0 and 30 ms added latency, unpaced (--no-quota, stand-in
# quotas off) and paced by the client's Redis token bucket (DescribeThing at 100/s).
# Throughput should track concurrency / latency until the stand-in (one Python process) or the
# quota caps it.
#   bench/aws.sh BUILD_DIR          (needs redis-server; starts its own simulation)
set -euo pipefail
B=${1:?usage: bench/aws.sh BUILD_DIR}
LOAD=$B/tests/unit/aws/aws_load
SRC=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/jitrca-bench-aws-XXXXXX)
redis-server --port 0 --unixsocket "$D/r.sock" --daemonize yes --pidfile "$D/r.pid" --save '' >/dev/null
trap 'kill "$(cat "$D/r.pid")" 2>/dev/null || true; python3 "$SRC/tests/sim/run_sim.py" stop --dir "$D/sim" >/dev/null 2>&1 || true; rm -rf "$D"' EXIT
python3 "$SRC/tests/sim/run_sim.py" start --dir "$D/sim" >/dev/null
# shellcheck disable=SC1091
. "$D/sim/sim.env"
cfg() { curl -sf -X POST "$JITRCA_SIM_IOT_URL/_standin/config" -d "$1" >/dev/null; }
printf "%-8s %-10s %5s %6s %9s %9s %12s %6s\n" latency mode conc n "req/s" "ideal" "cpu_us/req" conns
for lat in 0 30; do
  for mode in unpaced paced; do
    if [ $mode = unpaced ]; then
      cfg "{\"quotas\": {\"enabled\": false}, \"faults\": {\"latency_ms\": $lat}}"; args=(--no-quota)
    else
      cfg "{\"quotas\": {\"enabled\": true, \"rates\": {\"DescribeThing\": 100}}, \"faults\": {\"latency_ms\": $lat}}"
      args=(--rates DescribeThing=100/10 --redis "unix://$D/r.sock")
    fi
    for c in 1 4 16 64; do
      n=$((c * 40 > 200 ? c * 40 : 200)); [ "$lat" = 30 ] && [ $c -eq 1 ] && n=100
      out=$("$LOAD" "${args[@]}" --n $n --concurrency $c)
      ideal=$([ "$lat" = 0 ] && echo "-" || echo $((c * 1000 / lat)))
      echo "$out" | jq -r --arg l "${lat}ms" --arg m $mode --arg i "$ideal" \
        '"\($l)|\($m)|\(.concurrency)|\(.n)|\(.rps)|\($i)|\(.cpu_us_per_req)|\(.connections)|\(.failed)"' |
        awk -F'|' '{printf "%-8s %-10s %5s %6s %9s %9s %12s %6s%s\n",$1,$2,$3,$4,$5,$6,$7,$8,($9>0?"  FAILED "$9:"")}'
    done
  done
done
