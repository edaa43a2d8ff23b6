#!/usr/bin/env bash
# bench/jitr.sh [DEVICES] [BUILD_DIR]: JITR provisioning against the AWS IoT stand-ins with 30 ms
# of latency on every AWS call and the stand-in's quotas (AWS's defaults, docs/aws-client.md:
# UpdateCertificate 10 TPS binds). Prints:
#   throughput   devices ACTIVE per second over the burst, as a fraction of the binding quota
#                (target >= 0.95)
#   AWS calls    per device, from the stand-in's counters (target 5: DescribeCertificate, then
#                4 to provision, no per-device policy; the shared policy's 2 calls are spread
#                over the devices)
#   latency      first event to ACTIVE (AWS answered UpdateCertificate ACTIVE: the trace line
#                "ACTIVATE -> RECORD") and to DONE (the activation's audit record durable, the
#                job acknowledged), p50/p99: under the burst (queueing behind the quota) and with
#                devices arriving at half the quota; at half the quota also where the time goes
#                (the medians of the trace's steps) against one AWS round trip measured alone
#                (DescribeCertificate with botocore, one at a time): the flow's floor is 4 round
#                trips (DescribeCertificate, CreateThing with AttachPolicy, AttachThingPrincipal,
#                UpdateCertificate; docs/jitr.md "Round trips")
#   RSS          of every jitrd process with 10,000 events queued
#   load         the machine's load average (uptime) at the end of each part: latencies taken
#                under load are noisy
# Runs inside tests/sim/run_sim.py (started here); needs the build's jitrd, jitrctl and gencsr.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-500}
B=${2:-$here/build}
if [ -z "${JITRCA_SIM_IOT_URL:-}" ]; then
  exec python3 "$here/tests/sim/run_sim.py" run --standin-arg=--latency-ms=30 -- bash "$0" "$N" "$B"
fi
export JITRCTL=$B/cli/jitrctl GENCSR=$B/tests/tools/gencsr JITRD=$B/daemon/jitrd
export JITRCA_SOURCE_DIR=$here JITRCA_BUILD_DIR=$B
# lib.sh wants a Redis of its own to flush: a throwaway one
rd=$(mktemp -d /tmp/jitrca-bench-redis-XXXXXX)
redis-server --port 0 --unixsocket "$rd/s" --save '' --appendonly no --daemonize yes \
  --pidfile "$rd/pid" --logfile "$rd/log" --dir "$rd" >/dev/null
for _ in $(seq 100); do redis-cli -s "$rd/s" ping >/dev/null 2>&1 && break; sleep 0.05; done
export JITRCA_TEST_REDIS_URL=unix://$rd/s
source "$here/tests/integration/jitr_lib.sh"
trap 'rc=$?; stop_all; redis-cli -s "$rd/s" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$rd"; (exit $rc); cleanup' EXIT
# jitr_lib.sh reset the stand-in: the 30 ms of latency again
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' -d '{"faults": {"latency_ms": 30}}' >/dev/null
# production JITR settings (the defaults), no reconciler
cat >"$CFG" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$SIGN_PORT",
 "workers": 2, "worker_threads": 1, "drain_timeout": 2,
 "jitr": {"enabled": true, "listen": "127.0.0.1:$JITR_PORT", "reconcile_interval_s": 0}}
EOF

pctl() { sort -n | awk -v p="$1" '{a[NR]=$1} END{i=int(p/100*NR); if(i<1)i=1; if(i>NR)i=NR; print a[i]}'; }
lat_of() { # DIR OUT: per device "first_ms join_ms principal_ms active_ms done_ms" (ms since the
  # epoch: the event, the join's save, AttachThingPrincipal's save, AWS's ACTIVE, DONE saved)
  for f in "$1"/*.crt; do
    id=$(cert_id_of "$f")
    { rcli HMGET "jitrca:jitr:dev:$id" first_ms updated_ms | paste -sd' '
      rcli LRANGE "jitrca:jitr:trace:$id" 0 -1; } |
      awk 'NR == 1 {first = $1; done = $2; next}
           / -> ATTACH_PRINCIPAL/ {join = $1} / -> ACTIVATE/ {pr = $1} /ACTIVATE -> RECORD/ {act = $1}
           END {print first, join, pr, act, done}'
  done >"$2"
}
col() { awk -v a="$1" -v b="$2" '$a > 0 && $b > 0 {print $b - $a}' "$3"; }

# --- the backlog: N devices registered PENDING_ACTIVATION, their N events queued, then jitrd ---
# (the Python gateway registers about 8 devices a second: fed live, it, not jitrd, would be the
# bottleneck; so the devices connect first, with the rule pointing nowhere, and their events are
# queued as the intake would)
make_devices "$N" "$T/burst" burst-
gateway_rule s3cret-new '"event_url": "http://127.0.0.1:1/nowhere"'
gw --dir "$T/burst" --threads 32 --first-only >/dev/null
python3 - "$T/burst" "$DEV_CA_ID" <<'PY' | rcli >/dev/null
import glob, hashlib, ssl, sys, time
now = int(time.time() * 1000)
for f in sorted(glob.glob(sys.argv[1] + "/*.crt")):
    der = ssl.PEM_cert_to_DER_cert(open(f).read())
    print("XADD jitrca:jitr:events * cert %s ca %s account 123456789012 recv %d src bench"
          % (hashlib.sha256(der).hexdigest(), sys.argv[2], now))
PY
gateway_rule
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
t_start=$(date +%s%3N)
jitrd_start
for _ in $(seq 600); do
  [ "$(rcli HGET jitrca:jitr:stats outcome:activated)" = "$N" ] && break; sleep 0.5
done
stats >"$T/st.json"
gw --dir "$T/burst" --threads 32 --timeout 120 >"$T/gw.json"
first=$t_start
last=$(for f in "$T"/burst/*.crt; do rcli HGET "jitrca:jitr:dev:$(cert_id_of "$f")" updated_ms; done | sort -n | tail -1)
quota=$(jq -r '.quotas.rates.UpdateCertificate // .quotas.default' <(curl -sf "$STANDIN/_standin/config"))
calls=$(jq '[.operations | to_entries[] | select(.key | test("^(CreateThing|AttachPolicy|AttachThingPrincipal|UpdateCertificate|DescribeCertificate|CreatePolicy|GetPolicy|CreatePolicyVersion|ListPolicyVersions|AddThingToThingGroup)$")) | .value.requests] | add' "$T/st.json")
tput=$(awk -v n="$N" -v a="$first" -v b="$last" 'BEGIN{printf "%.2f", n / ((b - a) / 1000)}')
# steady state: activations between the 10th and the 90th percentile of completion times
steady=$(for f in "$T"/burst/*.crt; do rcli HGET "jitrca:jitr:dev:$(cert_id_of "$f")" updated_ms; done |
  sort -n | awk '{t[NR]=$1} END{a=int(NR*0.1); b=int(NR*0.9); printf "%.2f", (b - a) / ((t[b] - t[a]) / 1000)}')
lat_of "$T/burst" "$T/lat_burst"
load_burst=$(uptime | sed 's/.*load average: //')

# --- devices arriving at half the quota ---------------------------------------------------------
OPS="DescribeCertificate CreateThing AttachPolicy AttachThingPrincipal UpdateCertificate"
pace_snap() { for op in $OPS; do echo "$op $(rcli HGET jitrca:jitr:stats "aws_pace_ms:$op") $(rcli HGET jitrca:jitr:stats "aws:$op:ok")"; done; }
pace_snap >"$T/pace0"
make_devices 40 "$T/paced" paced-
pids=()
for f in "$T"/paced/*.crt; do
  id=$(basename "$f" .crt)
  gw --dir "$T/paced" --ids "$id" --first-only >/dev/null &
  pids+=($!)
  sleep $(awk -v q="$quota" 'BEGIN{printf "%.3f", 2 / q}')
done
wait "${pids[@]}"
for _ in $(seq 100); do
  n=0; for f in "$T"/paced/*.crt; do [ "$(rcli HGET "jitrca:jitr:dev:$(cert_id_of "$f")" state)" = DONE ] && n=$((n + 1)); done
  [ "$n" = 40 ] && break; sleep 0.3
done
lat_of "$T/paced" "$T/lat_paced"
pace_snap >"$T/pace1"
load_paced=$(uptime | sed 's/.*load average: //')
jitrd_stop
# one AWS round trip alone: DescribeCertificate at the stand-in, one at a time (botocore)
rtt=$(python3 - "$STANDIN" "$(cert_id_of "$(ls "$T"/paced/*.crt | head -1)")" <<'PY'
import sys, time, boto3
iot = boto3.client("iot", endpoint_url=sys.argv[1])
t = []
for _ in range(21):
    a = time.monotonic()
    iot.describe_certificate(certificateId=sys.argv[2])
    t.append((time.monotonic() - a) * 1000)
print("%.0f" % sorted(t[1:])[10])
PY
)

# --- RSS with 10,000 queued events ----------------------------------------------------------------
make_devices 10000 "$T/q" q-
rcli DEL jitrca:jitr:events >/dev/null
now=$(date +%s%3N)
python3 - "$T/q" "$DEV_CA_ID" "$now" <<'PY' | rcli >/dev/null
import glob, hashlib, ssl, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.crt")):
    der = ssl.PEM_cert_to_DER_cert(open(f).read())
    print("XADD jitrca:jitr:events * cert %s ca %s account 123456789012 recv %s src bench"
          % (hashlib.sha256(der).hexdigest(), sys.argv[2], sys.argv[3]))
PY
queued=$(rcli XLEN jitrca:jitr:events)
jitrd_start
peak=0
for _ in $(seq 20); do
  rss=$(ps -o rss= --ppid "$JPID" -p "$JPID" | awk '{s+=$1} END{print s}')
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 0.5
done
left=$(rcli XINFO GROUPS jitrca:jitr:events | awk 'f{print; exit} /^lag$/{f=1}')
jitrd_stop

echo
echo "== bench/jitr: $N devices, $(jq -r .faults.latency_ms <(curl -sf "$STANDIN/_standin/config")) ms AWS latency, stand-in quotas (UpdateCertificate $quota TPS binds)"
echo "throughput:  $N queued events, jitrd start to last ACTIVE: $tput devices/s = $(awk -v t="$tput" -v q="$quota" 'BEGIN{printf "%.3f", t / q}') of the binding quota; steady state (10th to 90th percentile) $steady/s = $(awk -v t="$steady" -v q="$quota" 'BEGIN{printf "%.3f", t / q}') (target >= 0.95)"
echo "AWS calls:   $(awk -v c="$calls" -v n="$N" 'BEGIN{printf "%.3f", c / n}') per device ($calls for $N; target 5), throttled by the stand-in: $(jq -r .throttled "$T/st.json")"
echo "latency:     event to ACTIVE, queued behind $N: p50 $(col 1 4 "$T/lat_burst" | pctl 50) ms, p99 $(col 1 4 "$T/lat_burst" | pctl 99) ms (load $load_burst)"
echo "             at half the quota: event to ACTIVE p50 $(col 1 4 "$T/lat_paced" | pctl 50) ms, p99 $(col 1 4 "$T/lat_paced" | pctl 99) ms; to DONE (audited, acknowledged) p50 $(col 1 5 "$T/lat_paced" | pctl 50) ms, p99 $(col 1 5 "$T/lat_paced" | pctl 99) ms (load $load_paced)"
echo "             where it goes (medians): event to the join saved (LOCK, LOAD, LOOKUP, DescribeCertificate, CreateThing with AttachPolicy) $(col 1 2 "$T/lat_paced" | pctl 50) ms, AttachThingPrincipal saved $(col 2 3 "$T/lat_paced" | pctl 50) ms, UpdateCertificate $(col 3 4 "$T/lat_paced" | pctl 50) ms, then audited $(col 4 5 "$T/lat_paced" | pctl 50) ms"
echo "             pacing per call (the API's token: bucket round trip and waits), ms: $(awk 'NR == FNR {p[$1] = $2 + 0; c[$1] = $3 + 0; next} {n = $3 - c[$1]; printf "%s%s %.1f", (FNR > 1 ? ", " : ""), $1, (n > 0 ? ($2 - p[$1]) / n : 0)}' "$T/pace0" "$T/pace1")"
echo "             one AWS round trip alone (DescribeCertificate, botocore): $rtt ms; 4 round trips: $((4 * rtt)) ms; the rest of the p50 to ACTIVE is local: $(( $(col 1 4 "$T/lat_paced" | pctl 50) - 4 * rtt )) ms"
echo "RSS:         $((peak / 1024)) MiB for every jitrd process together (parent + 2 workers) with $queued events queued ($left still unread after 10 s) (load $(uptime | sed 's/.*load average: //'))"
for op in CreateThing AttachPolicy AttachThingPrincipal UpdateCertificate; do
  echo "  $op: requests $(jq -r ".operations.$op.requests // 0" "$T/st.json"), max admitted in one second $(jq -r ".operations.$op.max_admitted_1s // 0" "$T/st.json")"
done
echo "devices connected after provisioning: $(jq -r .connected "$T/gw.json")/$N"
