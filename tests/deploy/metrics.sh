#!/usr/bin/env bash
# Every metric that deploy/prometheus/alerts.yml and deploy/grafana/jitrca.json name exists in
# jitrd's /metrics (run under tests/sim/run_sim.py): jitrd with JITR on against the AWS IoT
# stand-in, a station signs, two devices are provisioned through the gateway while the stand-in
# throttles some calls (so the retry counters exist), a spare CA is compromised (the compromise
# series), then both /metrics (admin_listen: signing, audit, index, workers, compromise; the JITR
# intake: queue, outcomes, AWS calls) are scraped. Every name
# jitrd_* / jitr_* in the rules' expressions and the dashboard's targets must be one of the
# scraped series' names. Then jitrd_redis_up and jitr_redis_up follow a Redis outage.
# Also: promtool check rules, promtool test rules (deploy/prometheus/alerts_test.yml), promtool
# check config (deploy/prometheus/prometheus.yml), and the dashboard's JSON shape.
source "$(dirname "$0")/../integration/jitr_lib.sh"
DEPLOY=$JITRCA_SOURCE_DIR/deploy

# --- promtool -----------------------------------------------------------------------------------
if command -v promtool >/dev/null; then
  ok promtool check rules "$DEPLOY/prometheus/alerts.yml"
  (cd "$DEPLOY/prometheus" && promtool test rules alerts_test.yml) >"$T/ptest" 2>&1 && pass ||
    { fail "promtool test rules"; cat "$T/ptest" >&2; }
  ok promtool check config --syntax-only "$DEPLOY/prometheus/prometheus.yml"
else
  echo "promtool is not installed (Debian package prometheus; scripts/deps.sh installs it):" \
    "the rules' syntax and unit tests were NOT checked" >&2
  fail "promtool missing"
fi

# --- the dashboard's shape ----------------------------------------------------------------------
D=$DEPLOY/grafana/jitrca.json
jq -e '.title and (.panels | length > 0) and .uid' "$D" >/dev/null && pass || fail "dashboard: title, uid, panels"
# every panel has a Prometheus target, every target an expression
jq -e '[.panels[] | select(.type != "row") | (.targets // []) | length > 0] | all' "$D" >/dev/null &&
  pass || fail "dashboard: a panel without targets"
jq -e '[.panels[] | (.targets // [])[] | (.expr | type == "string" and length > 0)] | all' "$D" \
  >/dev/null && pass || fail "dashboard: a target without expr"
# the titles the runbook names
for t in "Signing rate" "Signing latency" "JITR pipeline" "ACTIVE per second vs quota" \
  "AWS calls by API and outcome" "Dead letters" "Expiry horizon"; do
  jq -e --arg t "$t" '[.panels[].title] | index($t) != null' "$D" >/dev/null && pass ||
    fail "dashboard: no panel '$t'"
done

# --- jitrd with JITR, a station, devices ---------------------------------------------------------
ADMIN_PORT=$(freeport)
jq --arg a "127.0.0.1:$ADMIN_PORT" '.admin_listen = $a | .expiry_check_interval = 1' "$CFG" \
  >"$T/c.json" && mv "$T/c.json" "$CFG"
# a compromise response (the jitrd_ca_compromise_* series): a CA that issued nothing, answered
# at once
ok "$JITRCTL" ca init spare --parent root --subject "/CN=Spare/O=Acme"
ok "$JITRCTL" --config "$CFG" ca compromise spare --no-wait --yes
cat >"$T/stations.json" <<EOF
{"stations": {"line1": {"cas": ["devices"], "profiles": ["device"], "rate": 100, "burst": 100}}}
EOF
ok "$JITRCTL" --config "$CFG" station issue line1 --out "$T/st"
# the first CreateThing and the first UpdateCertificate throttled: jitrd retries them
# (jitr_aws_retries_total); named faults, not a rate: with a third of the calls failing at random,
# two devices saw no throttle at all about once in 30 runs and the series never appeared
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"next_faults": {"CreateThing": ["throttle"], "UpdateCertificate": ["throttle"]}}' >/dev/null
jitrd_start
gateway_rule
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/s.key" \
  -out "$T/s.csr" -subj /CN=metrics-sign-1 2>/dev/null
code=$(curl -sS -k --cert "$T/st/line1.crt" --key "$T/st/line1.key" \
  -H 'Content-Type: application/x-pem-file' --data-binary @"$T/s.csr" -o "$T/s.pem" \
  -w '%{http_code}' "https://127.0.0.1:$SIGN_PORT/v1/sign" || true)
check_eq "a station signs" "$code" 201
make_devices 2 "$T/d"
gw --dir "$T/d" --timeout 60 >"$T/gw.json" 2>"$T/gw.err" && pass ||
  { fail "devices did not connect"; cat "$T/gw.json" "$T/gw.err" >&2; tail -30 "$T/jitrd.log" >&2; }
check_eq "devices connected" "$(jq -r .connected "$T/gw.json")" 2

scrape() { # names of the series of both /metrics
  { curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics"; curl -sf "$INTAKE/metrics"; } |
    grep -v '^#' | sed -n 's/^\([a-zA-Z_:][a-zA-Z0-9_:]*\).*/\1/p' | sort -u
}
# the retry counter is written once the flows are done: wait for it (bounded)
for _ in $(seq 50); do
  scrape >"$T/have"
  grep -qx jitr_aws_retries_total "$T/have" && grep -qx jitr_first_event_to_active_ms_bucket "$T/have" &&
    grep -qx jitrd_ca_compromise_done "$T/have" && break
  sleep 0.2
done
# the names the rules and the dashboard use (every metric of ours starts jitrd_ or jitr_)
{
  python3 -c 'import sys, yaml
for g in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for r in g["rules"]:
        print(r["expr"])' "$DEPLOY/prometheus/alerts.yml"
  jq -r '.panels[] | (.targets // [])[] | .expr' "$D"
} | grep -oE '\bjitrd?_[a-z0-9_]+' | sort -u >"$T/want"
[ "$(wc -l <"$T/want")" -ge 20 ] && pass || fail "only $(wc -l <"$T/want") metric names found in the rules and the dashboard"
missing=$(comm -23 "$T/want" "$T/have")
if [ -z "$missing" ]; then
  pass
else
  fail "metrics named in alerts.yml or jitrca.json that jitrd does not serve: $(echo $missing)"
fi
echo "metrics: $(wc -l <"$T/want") names in the rules and the dashboard; not served: $(echo ${missing:-none})"

# --- jitrd_redis_up / jitr_redis_up follow Redis -------------------------------------------------
metric() { # VALUE of the series NAME on either listener, "" when neither serves it (a listener
  # may answer 503 while Redis is away: that is not the test's end)
  { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" || true; curl -s "$INTAKE/metrics" || true; } |
    awk -v n="$1" '$1 == n { print $2; exit }' || true
}
check_eq "jitrd_redis_up with Redis" "$(metric jitrd_redis_up)" 1
check_eq "jitr_redis_up with Redis" "$(metric jitr_redis_up)" 1
redis_stop
v=
for _ in $(seq 50); do v=$(metric jitrd_redis_up); [ "$v" = 0 ] && break; sleep 0.1; done
check_eq "jitrd_redis_up without Redis (within 5 s)" "$v" 0
check_eq "jitr_redis_up without Redis" "$(metric jitr_redis_up)" 0
redis_start
for _ in $(seq 50); do v=$(metric jitrd_redis_up); [ "$v" = 1 ] && break; sleep 0.1; done
check_eq "jitrd_redis_up with Redis back (within 5 s)" "$v" 1

jitrd_stop
finish
