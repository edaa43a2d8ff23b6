#!/usr/bin/env bash
# Three processes share one per-API token bucket in Redis and together never exceed it: the
# stand-in enforces DescribeThing at 20/s and counts; each process makes 40 calls, 4 at a time,
# paced by the shared bucket (20/s, burst 5). Expected: no ThrottlingException, no one-second
# window above rate + burst, and the run takes at least (120 - 5) / 20 s. The control run with
# per-process buckets (no Redis) shows the test can fail: three processes at 20/s each get
# throttled by the stand-in.
source "$(dirname "$0")/lib.sh"
: "${JITRCA_SIM_IOT_URL:?run under tests/sim/run_sim.py}"
: "${AWS_LOAD:?AWS_LOAD must name the aws_load binary}"
S=$JITRCA_SIM_IOT_URL
curl -s -X POST "$S/_standin/config" -d '{"quotas": {"enabled": true, "rates": {"DescribeThing": 20}}}' >/dev/null
"$AWS_LOAD" --no-quota --n 1 >/dev/null # creates the thing
curl -s -X POST "$S/_standin/stats/reset" >/dev/null

start=$(date +%s.%N)
for i in 1 2 3; do
  "$AWS_LOAD" --n 40 --concurrency 4 --rates DescribeThing=20/5 --redis "$JITRCA_TEST_REDIS_URL" \
    >"$T/p$i.json" 2>"$T/p$i.err" &
done
rc=0
wait %1 || rc=1; wait %2 || rc=1; wait %3 || rc=1
end=$(date +%s.%N)
[ $rc -eq 0 ] && pass || { fail "a load process failed"; cat "$T"/p*.json "$T"/p*.err >&2; }
curl -s "$S/_standin/stats" >"$T/stats.json"
check_eq "admitted" "$(jq .operations.DescribeThing.admitted "$T/stats.json")" 120
check_eq "throttled by the stand-in" "$(jq .operations.DescribeThing.throttled "$T/stats.json")" 0
check_eq "attempts (no retries needed)" "$(cat "$T"/p*.json | jq -s 'map(.attempts) | add')" 120
max=$(jq .operations.DescribeThing.max_rate_1s "$T/stats.json")
# rate + burst = 25 by Redis time; 2 of slack for arrival jitter at the stand-in
[ "$max" -le 27 ] && pass || fail "max requests in one second $max > rate + burst (25)"
elapsed=$(echo "$end - $start" | bc)
[ "$(echo "$elapsed >= 5.2" | bc)" = 1 ] && pass || fail "120 calls at 20/s took only $elapsed s"
echo "shared bucket: 120 calls in $elapsed s, max $max in 1 s"

# control: per-process buckets exceed the account's quota together
curl -s -X POST "$S/_standin/stats/reset" >/dev/null
for i in 1 2 3; do
  "$AWS_LOAD" --n 40 --concurrency 4 --rates DescribeThing=20/5 >"$T/c$i.json" 2>&1 &
done
wait %1 || true; wait %2 || true; wait %3 || true
curl -s "$S/_standin/stats" >"$T/stats2.json"
thr=$(jq .operations.DescribeThing.throttled "$T/stats2.json")
[ "$thr" -gt 0 ] && pass || fail "control run without a shared bucket was not throttled"
echo "control (per-process buckets): throttled $thr"
finish
