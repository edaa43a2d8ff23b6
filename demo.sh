#!/usr/bin/env bash
# The jitrca demo, on one machine with nothing but this checkout: builds jitrca, starts a
# throwaway redis-server, and plays the security team and a factory station:
#   a root CA and an issuing CA are created (keys encrypted at rest), 1,000 device CSRs are
#   signed on every core, certificates are verified with OpenSSL and GnuTLS, the audit log's
#   hash chain is checked and the Redis index is rebuilt from it.
# It prints a short report and leaves nothing running. Usage: ./demo.sh [DEVICES]
set -euo pipefail
cd "$(dirname "$0")"
devices=${1:-1000}
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target jitrctl gencsr >/dev/null
J=$PWD/build/cli/jitrctl
tmp=$(mktemp -d /tmp/jitrca-demo-XXXXXX)
stop() { redis-cli -s "$tmp/redis.sock" shutdown nosave >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$tmp"' EXIT
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp" >/dev/null
for _ in $(seq 100); do redis-cli -s "$tmp/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
export JITRCA_DATA_DIR=$tmp/data JITRCA_REDIS_URL=unix://$tmp/redis.sock
export JITRCA_KEY_PASSPHRASE="demo passphrase, use a real secret"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "security team: a root CA and an issuing CA (P-256 keys, PKCS#8 + scrypt + AES-256)"
$J ca init acme-root --subject "/CN=Acme Devices Root CA/O=Acme/C=DE" --days 7300
$J ca init acme-devices-1 --parent acme-root --subject "/CN=Acme Devices CA 1/O=Acme/C=DE"
$J ca list

step "factory station: $devices device keys and CSRs"
./build/tests/tools/gencsr --count "$devices" --cn-prefix acme-dev- --out "$tmp/devices" --keys
step "sign-batch: $devices CSRs on $(nproc) cores, audited durably and indexed"
$J sign-batch --in "$tmp/devices" --out "$tmp/certs" --ca acme-devices-1

step "third-party verification of every 100th certificate: openssl verify and GnuTLS certtool"
cat "$tmp/data/ca/acme-devices-1/cert.pem" "$tmp/data/ca/acme-root/cert.pem" >"$tmp/chain.pem"
verified=0
for f in $(ls "$tmp/certs"/*.crt | awk 'NR % 100 == 1'); do
  openssl verify -purpose sslclient -CAfile "$tmp/chain.pem" "$f" >/dev/null
  certtool --verify --load-ca-certificate "$tmp/chain.pem" --infile "$f" 2>/dev/null |
    grep -q "Chain verification output: Verified"
  verified=$((verified + 1))
done
echo "$verified certificates verified by both"
openssl x509 -in "$tmp/certs/acme-dev-000001.crt" -noout -subject -issuer -serial -dates -ext basicConstraints,keyUsage,extendedKeyUsage

step "the index: certificateId (what AWS IoT will send) -> our record"
id=$(openssl x509 -in "$tmp/certs/acme-dev-000001.crt" -outform DER | sha256sum | cut -d' ' -f1)
$J cert show "$id"

step "the audit log: hash chain checked, then Redis rebuilt from it"
$J audit verify
redis-cli -s "$tmp/redis.sock" flushall >/dev/null
$J reindex
$J cert show "$id" | head -3

step "report"
issued=$(grep -c '"type":"issue"' "$tmp/data/audit/audit.log")
echo "CAs created: 2; devices signed: $issued; verified by openssl+certtool: $verified;"
echo "audit records: $(wc -l <"$tmp/data/audit/audit.log"); nothing left running."
