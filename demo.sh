#!/usr/bin/env bash
# The jitrca demo: the whole story on one machine with nothing but this checkout.
#   1. a throwaway redis-server, the AWS IoT simulation (moto + the control-plane stand-in + the
#      device gateway stand-in, tests/sim/), jitrd with JITR on
#   2. the security team: a root CA and an issuing CA (keys encrypted at rest), the issuing CA
#      registered in AWS IoT (registration code, verification certificate), a factory station's
#      mutual-TLS credentials; the topic rule's HTTP destination confirmed by jitrd
#   3. the factory station: DEVICES keys and CSRs, signed by jitrd over mutual TLS
#   4. every device connects to the AWS IoT endpoint: refused the first time (AWS registers the
#      certificate PENDING_ACTIVATION and publishes the event), jitrd provisions it (thing,
#      least-privilege policy, attachments, ACTIVE last), the device connects again
#   5. the other ways to provision (docs/enroll.md): an installer's one-time token, redeemed once
#      by device field-001 on enroll_listen; a claim certificate shared by a batch, exchanged by
#      device claim-001 for its own; both then provisioned by JITR like the factory's
#   6. pre-registered before shipping: ship-000001 signed offline (jitrctl sign-batch), registered
#      and provisioned in AWS IoT by jitrctl aws register-batch (jobs in jitrd); its very first
#      connection is accepted and no JITR event is handled for it
#   7. a short report: devices signed and provisioned, latency, AWS calls per device
# It installs nothing beyond scripts/deps.sh and leaves nothing running.
# Usage: ./demo.sh [DEVICES]   (default 100; provisioning runs at AWS's 10 TPS activation quota)
# Against a real AWS account: docs/jitr.md "Real AWS".
set -euo pipefail
cd "$(dirname "$0")"
devices=${1:-100}
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target jitrctl jitrd gencsr >/dev/null
J=$PWD/build/cli/jitrctl
tmp=$(mktemp -d /tmp/jitrca-demo-XXXXXX)
jpid=
stop() {
  if [ -n "$jpid" ]; then kill -TERM "$jpid" 2>/dev/null || true; wait "$jpid" 2>/dev/null || true; fi
  [ -f "$tmp/sim/sim.json" ] && python3 tests/sim/run_sim.py stop --dir "$tmp/sim" >/dev/null 2>&1 || true
  redis-cli -s "$tmp/redis.sock" shutdown nosave >/dev/null 2>&1 || true
}
trap 'stop; rm -rf "$tmp"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "infrastructure: redis-server, the AWS IoT simulation (moto + stand-ins), on loopback only"
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp" >/dev/null
for _ in $(seq 100); do redis-cli -s "$tmp/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
python3 tests/sim/run_sim.py start --dir "$tmp/sim" >/dev/null
# shellcheck disable=SC1091
. "$tmp/sim/sim.env"
export JITRCA_DATA_DIR=$tmp/data JITRCA_REDIS_URL=unix://$tmp/redis.sock
export JITRCA_KEY_PASSPHRASE="demo passphrase, use a real secret"
export JITRCA_JITR_SECRETS=$(openssl rand -hex 24)
echo "AWS IoT control plane: $AWS_ENDPOINT_URL_IOT; device endpoint: $JITRCA_SIM_GATEWAY_HOST:$JITRCA_SIM_GATEWAY_PORT"

step "security team: a root CA, an issuing CA for devices, a CA for factory stations"
$J ca init acme-root --subject "/CN=Acme Devices Root CA/O=Acme/C=DE" --days 7300
$J ca init acme-devices-1 --parent acme-root --subject "/CN=Acme Devices CA 1/O=Acme/C=DE"
$J ca init acme-stations --parent acme-root --subject "/CN=Acme Stations CA/O=Acme/C=DE"
$J ca list
step "security team: register the issuing CA in AWS IoT (auto-registration on)"
$J ca register acme-devices-1
$J policy check policies/iot/device.json policies/templates/default.json

step "jitrd: the signing API (mutual TLS) and the JITR intake"
sport=$(freeport); jport=$(freeport); eport=$(freeport)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/srv.key" \
  -out "$tmp/srv.pem" -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -days 2 2>/dev/null
chmod 600 "$tmp/srv.key"
echo '{"stations": {"line-1": {"cas": ["acme-devices-1"], "profiles": ["device"], "rate": 5000, "burst": 5000},
  "installer-1": {"cas": ["acme-devices-1"], "profiles": ["device"], "installer": true}}}' >"$tmp/stations.json"
cat >"$tmp/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "acme-devices-1",
 "station_ca": "acme-stations", "stations_file": "$tmp/stations.json", "listen": "127.0.0.1:$sport",
 "tls_cert_file": "$tmp/srv.pem", "tls_key_file": "$tmp/srv.key", "workers": 2,
 "enroll_listen": "127.0.0.1:$eport",
 "jitr": {"enabled": true, "listen": "127.0.0.1:$jport", "reconcile_interval_s": 60},
 "log_level": "warn"}
EOF
$J --config "$tmp/jitrd.json" station issue line-1 --out "$tmp/station" >/dev/null
$J --config "$tmp/jitrd.json" station issue installer-1 --out "$tmp/station" >/dev/null
./build/daemon/jitrd --config "$tmp/jitrd.json" 2>"$tmp/jitrd.log" &
jpid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$jport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "signing API https://127.0.0.1:$sport, enrollment https://127.0.0.1:$eport/v1/enroll," \
  "JITR intake http://127.0.0.1:$jport/v1/jitr/events"

step "the topic rule: HTTP destination confirmed by jitrd, events sent with a secret header"
curl -sf -X POST "$AWS_ENDPOINT_URL_IOT/_standin/config" -H 'content-type: application/json' -d "{\"gateway\": {
  \"event_url\": \"http://127.0.0.1:$jport/v1/jitr/events\", \"event_headers\": {\"x-jitr-secret\": \"$JITRCA_JITR_SECRETS\"},
  \"require_confirmed_destination\": true, \"jitr_trigger\": \"connect\"}}" >/dev/null
arn=$(aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot create-topic-rule-destination \
  --destination-configuration "httpUrlConfiguration={confirmationUrl=http://127.0.0.1:$jport/v1/jitr/events}" \
  --query topicRuleDestination.arn --output text)
for _ in $(seq 50); do
  st=$(aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot get-topic-rule-destination --arn "$arn" \
    --query topicRuleDestination.status --output text)
  [ "$st" = ENABLED ] && break; sleep 0.2
done
echo "destination $arn: $st"

step "factory station line-1: $devices device keys and CSRs, signed by jitrd over mutual TLS"
./build/tests/tools/gencsr --count "$devices" --cn-prefix acme-dev- --out "$tmp/dev" --keys >/dev/null
t0=$(date +%s%3N)
( cd "$tmp/dev" && ls ./*.csr ) | sed 's|^\./||; s|\.csr$||' | split -l 500 - "$tmp/chunk."
for c in "$tmp"/chunk.*; do
  while read -r id; do jq -n --arg id "$id" --rawfile csr "$tmp/dev/$id.csr" '{id: $id, csr: $csr}'; done <"$c" |
    jq -s '{requests: .}' >"$c.json"
  curl -sf --cacert "$tmp/srv.pem" --cert "$tmp/station/line-1.crt" --key "$tmp/station/line-1.key" \
    -H 'content-type: application/json' --data-binary @"$c.json" "https://127.0.0.1:$sport/v1/sign/batch" >"$c.out"
  jq -r '.results[] | select(.certificate) | [.id, .certificate] | @tsv' "$c.out" |
    while IFS=$'\t' read -r id cert; do printf '%b' "$cert" >"$tmp/dev/$id.crt"; done
done
t1=$(date +%s%3N)
signed=$(ls "$tmp"/dev/*.crt | wc -l)
echo "$signed certificates in $(( t1 - t0 )) ms"
openssl x509 -in "$tmp/dev/acme-dev-000001.crt" -noout -subject -issuer -ext extendedKeyUsage

step "every device connects to AWS IoT: refused, provisioned by jitrd, connects again"
aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot describe-thing --thing-name acme-dev-000001 >/dev/null 2>&1 &&
  echo "unexpected: the thing exists already" || echo "before: no thing acme-dev-000001 in AWS"
curl -sf -X POST "$AWS_ENDPOINT_URL_IOT/_standin/stats/reset" >/dev/null
python3 tests/integration/jitr_devices.py --dir "$tmp/dev" --host "$JITRCA_SIM_GATEWAY_HOST" \
  --port "$JITRCA_SIM_GATEWAY_PORT" --cafile "$JITRCA_SIM_GATEWAY_CA" --threads 64 \
  --timeout $((devices / 5 + 120)) >"$tmp/devices.json" || true
curl -sf "$AWS_ENDPOINT_URL_IOT/_standin/stats" >"$tmp/stats.json"
id=$(openssl x509 -in "$tmp/dev/acme-dev-000001.crt" -outform DER | sha256sum | cut -d' ' -f1)
aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot describe-thing --thing-name acme-dev-000001 \
  --query '{thing: thingName, attributes: attributes}' --output json
aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot describe-certificate --certificate-id "$id" \
  --query certificateDescription.status --output text
$J jitr status "$id"

step "trusted user: installer-1 gets a one-time token for field-001; the device redeems it once"
mkdir -p "$tmp/field"
token=$(curl -sf --cacert "$tmp/srv.pem" --cert "$tmp/station/installer-1.crt" \
  --key "$tmp/station/installer-1.key" -H 'content-type: application/json' \
  -d '{"device": "field-001", "ttl": 300}' "https://127.0.0.1:$sport/v1/tokens" | jq -r .token)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/field/field-001.key" \
  -subj /CN=field-001 -out "$tmp/field/field-001.csr" 2>/dev/null
enroll() { # CSR [curl args]: POST /v1/enroll, the status and the certificate on stdout
  local c=$1; shift
  curl -s --cacert "$tmp/srv.pem" "$@" -H 'content-type: application/x-pem-file' \
    --data-binary @"$c" -w '\n%{http_code}\n' "https://127.0.0.1:$eport/v1/enroll"
}
enroll "$tmp/field/field-001.csr" -H "Authorization: Bearer $token" >"$tmp/field/out"
head -1 "$tmp/field/out" | jq -r .certificate >"$tmp/field/field-001.crt"
echo "redeemed: $(tail -1 "$tmp/field/out"); again: $(enroll "$tmp/field/field-001.csr" \
  -H "Authorization: Bearer $token" | tail -1) (a token works once)"

step "claim: a claim certificate for batch B-7 (allowlist claim-001..claim-003); claim-001 enrolls"
printf 'claim-001\nclaim-002\nclaim-003\n' >"$tmp/allow.txt"
$J --config "$tmp/jitrd.json" claim issue batch-b7 --out "$tmp/claim" --devices "$tmp/allow.txt" --days 30
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/field/claim-001.key" \
  -subj /CN=claim-001 -out "$tmp/field/claim-001.csr" 2>/dev/null
enroll "$tmp/field/claim-001.csr" --cert "$tmp/claim/batch-b7.crt" --key "$tmp/claim/batch-b7.key" \
  >"$tmp/field/out"
head -1 "$tmp/field/out" | jq -r .certificate >"$tmp/field/claim-001.crt"
echo "enrolled: $(tail -1 "$tmp/field/out"); again: $(enroll "$tmp/field/claim-001.csr" \
  --cert "$tmp/claim/batch-b7.crt" --key "$tmp/claim/batch-b7.key" | tail -1) (once per device)"
rm -f "$tmp"/field/*.csr "$tmp/field/out"
python3 tests/integration/jitr_devices.py --dir "$tmp/field" --host "$JITRCA_SIM_GATEWAY_HOST" \
  --port "$JITRCA_SIM_GATEWAY_PORT" --cafile "$JITRCA_SIM_GATEWAY_CA" --timeout 60 >"$tmp/field.json" || true
step "pre-registered: ship-000001 signed offline, registered in AWS IoT before it ships"
mkdir -p "$tmp/ship"
./build/tests/tools/gencsr --count 1 --cn-prefix ship- --out "$tmp/ship" --keys >/dev/null
$J --config "$tmp/jitrd.json" sign-batch --ca acme-devices-1 --in "$tmp/ship" --out "$tmp/ship" --quiet
$J --config "$tmp/jitrd.json" aws register-batch --in "$tmp/ship" --quiet
rm -f "$tmp"/ship/*.csr
mv "$tmp/ship/ship-000001.crt" "$tmp/ship/ship-000001.key" "$tmp/field/"
events() { local v; v=$(redis-cli -s "$tmp/redis.sock" HGET jitrca:jitr:stats events:http:queued); echo "${v:-0}"; }
ev0=$(events)
python3 tests/integration/jitr_devices.py --dir "$tmp/field" --host "$JITRCA_SIM_GATEWAY_HOST" \
  --port "$JITRCA_SIM_GATEWAY_PORT" --cafile "$JITRCA_SIM_GATEWAY_CA" --first-only \
  >"$tmp/ship.json" || true
echo "first connections: $(jq -r .connected "$tmp/ship.json") of $(jq -r .devices "$tmp/ship.json")" \
  "accepted at once (field-001, claim-001, ship-000001); JITR events handled meanwhile: $(( $(events) - ev0 ))"

for d in field-001 claim-001 ship-000001; do
  fid=$(openssl x509 -in "$tmp/field/$d.crt" -outform DER | sha256sum | cut -d' ' -f1)
  echo "$d: $(aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot describe-certificate --certificate-id "$fid" \
    --query certificateDescription.status --output text) in AWS IoT," \
    "thing $(aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot describe-thing --thing-name "$d" \
    --query thingName --output text 2>/dev/null || echo none)"
done

step "report"
prov=$(aws --endpoint-url "$AWS_ENDPOINT_URL_IOT" iot list-certificates-by-ca --ca-certificate-id \
  "$(jq -r .fingerprint "$JITRCA_DATA_DIR/ca/acme-devices-1/ca.json")" --max-items 1000000 --output json |
  jq '[.certificates[] | select(.status == "ACTIVE")] | length')
calls=$(jq '[.operations | to_entries[] | select(.key | test("^(CreateThing|AttachPolicy|AttachThingPrincipal|UpdateCertificate|DescribeCertificate|CreatePolicy|GetPolicy|AddThingToThingGroup)$")) | .value.requests] | add' "$tmp/stats.json")
$J audit verify >/dev/null && audit=ok || audit=FAILED
echo "devices signed over mTLS: $signed; provisioned (ACTIVE): $prov (with field-001 by token, claim-001 by claim, ship-000001 pre-registered); connected after provisioning: $(jq -r .connected "$tmp/devices.json") + $(jq -r .connected "$tmp/field.json")"
echo "first connection to connected: p50 $(jq -r .latency_ms.p50 "$tmp/devices.json") ms, p99 $(jq -r .latency_ms.p99 "$tmp/devices.json") ms (devices retry with backoff; AWS's 10 TPS activation quota paces the burst)"
echo "AWS calls per device: $(awk -v c="$calls" -v n="$signed" 'BEGIN{printf "%.2f", c / n}') ($(jq -r '[.operations | to_entries[] | select(.value.requests > 0) | "\(.key) \(.value.requests)"] | join(", ")' "$tmp/stats.json")); quota refusals: $(jq -r .throttled "$tmp/stats.json")"
echo "audit log: $(wc -l <"$JITRCA_DATA_DIR/audit/audit.log") records, hash chain $audit; nothing is left running."
