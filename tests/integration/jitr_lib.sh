# Shared setup of the JITR end-to-end tests (run under tests/sim/run_sim.py): a private
# redis-server (restartable), a CA hierarchy with the device CA registered in the AWS stand-in,
# jitrd with JITR on, the gateway's rule pointed at the intake, helpers to make devices.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${JITRCA_SIM_IOT_URL:?run under tests/sim/run_sim.py}"
STANDIN=$JITRCA_SIM_IOT_URL
JITRD=${JITRD:-$JITRCA_BUILD_DIR/daemon/jitrd}
DEVICES_PY=$(dirname "${BASH_SOURCE[0]}")/jitr_devices.py
[ -x "$JITRD" ] || { echo "no jitrd at $JITRD" >&2; exit 1; }
curl -sf -X POST "$STANDIN/_standin/reset" >/dev/null

mkdir -p "$T/redis"
redis_start() {
  redis-server --port 0 --unixsocket "$T/redis/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly yes --appendfsync always --daemonize yes --pidfile "$T/redis/redis.pid" \
    --logfile "$T/redis/log" --dir "$T/redis"
  for _ in $(seq 100); do redis-cli -s "$T/redis/redis.sock" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "redis did not start" >&2; return 1
}
redis_stop() { redis-cli -s "$T/redis/redis.sock" shutdown >/dev/null 2>&1 || true; sleep 0.2; }
redis_start
export JITRCA_REDIS_URL=unix://$T/redis/redis.sock
rcli() { redis-cli -s "$T/redis/redis.sock" "$@"; }

JPID=
jitrd_stop() {
  if [ -n "$JPID" ] && kill -0 "$JPID" 2>/dev/null; then
    kill -TERM "$JPID" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$JPID" 2>/dev/null || break; sleep 0.1; done
    # still there after 15 s: its workers first, or they would live on as orphans
    pkill -KILL -P "$JPID" 2>/dev/null || true
    kill -KILL "$JPID" 2>/dev/null || true
    wait "$JPID" 2>/dev/null || true
  fi
  JPID=
}
stop_all() { jitrd_stop; redis-cli -s "$T/redis/redis.sock" shutdown nosave >/dev/null 2>&1 || true; }
trap 'rc=$?; trap - ERR; set +e; stop_all; (exit $rc); cleanup' EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- PKI: root, the device CA (registered in AWS), stations; jitrd's server certificate -------
ok "$JITRCTL" ca init root --subject "/CN=JITR Test Root/O=Acme" --days 3650
ok "$JITRCTL" ca init devices --parent root --subject "/CN=JITR Test Devices/O=Acme"
ok "$JITRCTL" ca init stations --parent root --subject "/CN=JITR Test Stations/O=Acme"
ok "$JITRCTL" ca register devices
DEV_CA_ID=$(jq -r .fingerprint "$JITRCA_DATA_DIR/ca/devices/ca.json")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.pem" -subj /CN=localhost -days 2 2>/dev/null
chmod 600 "$T/srv.key"
echo '{"stations": {}}' >"$T/stations.json"

SIGN_PORT=$(freeport)
JITR_PORT=$(freeport)
INTAKE=http://127.0.0.1:$JITR_PORT
export JITRCA_JITR_SECRETS="s3cret-new,s3cret-old"
write_config() { # [extra members of the "jitr" section, JSON]
  cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$SIGN_PORT",
 "workers": ${JITRD_WORKERS:-2}, "worker_threads": 1, "drain_timeout": 2,
 "jitr": {"enabled": true, "listen": "127.0.0.1:$JITR_PORT", "claim_idle_ms": 4000,
  "backoff_ms": 100, "backoff_max_ms": 2000, "reconcile_interval_s": 3, "reconcile_min_age_s": 2,
  "max_in_flight": 16, "lock_ms": 8000 ${1:+, $1}}}
EOF
}
write_config
CFG=$T/jitrd.json

jitrd_start() {
  "$JITRD" --config "$CFG" 2>>"$T/jitrd.log" &
  JPID=$!
  for _ in $(seq 100); do
    curl -sf "$INTAKE/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$JPID" 2>/dev/null || { echo "jitrd died:" >&2; tail -20 "$T/jitrd.log" >&2; return 1; }
    sleep 0.1
  done
  echo "jitrd intake did not come up" >&2; tail -20 "$T/jitrd.log" >&2; return 1
}

# the rule: the gateway POSTs registered events to the intake with the secret
gateway_rule() { # [secret] [extra gateway JSON members]
  curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
    -d "{\"gateway\": {\"event_url\": \"$INTAKE/v1/jitr/events\", \"event_headers\": {\"x-jitr-secret\": \"${1:-s3cret-new}\"}${2:+, $2}}}" >/dev/null
}

# make_devices N DIR [PREFIX]: keys, CSRs and certificates signed by the device CA
make_devices() {
  mkdir -p "$2"
  "$GENCSR" --count "$1" --out "$2" --cn-prefix "${3:-dev-}" --keys >/dev/null
  "$JITRCTL" sign-batch --ca devices --in "$2" --out "$2" --quiet >/dev/null
}

# aws_status CERT_PEM: the certificate's status in AWS
cert_id_of() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
aws_status() { aws --endpoint-url "$STANDIN" iot describe-certificate --certificate-id "$(cert_id_of "$1")" \
  --query certificateDescription.status --output text 2>/dev/null || echo NONE; }
gw() { python3 "$DEVICES_PY" --host "$JITRCA_SIM_GATEWAY_HOST" --port "$JITRCA_SIM_GATEWAY_PORT" \
  --cafile "$JITRCA_SIM_GATEWAY_CA" "$@"; }
stats() { curl -sf "$STANDIN/_standin/stats"; }
# aws_certs DIR [--count]: what the stand-in has of each certificate of DIR (*.crt, sorted by
# file name): one line "STATUS thing=<names> policy=<names>" each; with --count, one line
# "N STATUS things=T policies=P; ..." counting the certificates by status and numbers of things
# and policies attached
aws_certs() {
  python3 - "$STANDIN" "$1" "${2:-}" <<'EOF'
import collections, glob, hashlib, ssl, sys, boto3
iot = boto3.client("iot", endpoint_url=sys.argv[1])
out = collections.Counter()
for f in sorted(glob.glob(sys.argv[2] + "/*.crt")):
    i = hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(f).read())).hexdigest()
    d = iot.describe_certificate(certificateId=i)["certificateDescription"]
    t = iot.list_principal_things(principal=d["certificateArn"])["things"]
    p = sorted(x["policyName"] for x in iot.list_attached_policies(target=d["certificateArn"])["policies"])
    if sys.argv[3] == "--count":
        out["%s things=%d policies=%d" % (d["status"], len(t), len(p))] += 1
    else:
        print(d["status"], "thing=" + ",".join(t), "policy=" + ",".join(p))
if sys.argv[3] == "--count":
    print("; ".join("%d %s" % (n, k) for k, n in sorted(out.items())))
EOF
}
