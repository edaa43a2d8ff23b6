#!/usr/bin/env bash
# jitrd signing with a CA key in an HSM (SoftHSM2, a private token per run) that goes away:
# jitrd does not start without it (naming the CA and the token); removed while jitrd runs,
# signing answers 201 or 503 (never 500); after a reload without it /readyz answers 503 naming
# the CA and signing 503 with Retry-After, nothing issued; once the token is back a restart
# serves again (SoftHSM2 does not show a returning token to a process that has it open).
source "$(dirname "$0")/lib.sh"
command -v softhsm2-util >/dev/null || { echo "softhsm2-util not installed" >&2; exit 77; }
export SOFTHSM2_CONF
SOFTHSM2_CONF=$("$JITRCA_SOURCE_DIR/tests/harness/softhsm-fixture.sh" init "$T/hsm" factory 12345678 87654321)
export JITRCA_PKCS11_PIN=87654321

source "$(dirname "$0")/jitrd_lib.sh" # Redis, rcli, jitrd_stop, stop_all

ok "$JITRCTL" ca init root --subject "/CN=Test Root/O=Acme" --days 3650
ok "$JITRCTL" ca init hsm-dev --key "pkcs11:token=factory;object=dev" --parent root \
  --subject "/CN=HSM Device CA"
ok "$JITRCTL" ca init stations --parent root --subject "/CN=Test Stations CA/O=Acme"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.pem" -subj /CN=localhost -days 2 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
chmod 600 "$T/srv.key"
port=$(free_port)
URL=https://127.0.0.1:$port
aport=$(free_port)
ADMIN=http://127.0.0.1:$aport # /readyz's reasons and /metrics (admin_listen)
echo '{"stations": {"line1": {"cas": ["hsm-dev"], "profiles": ["device"], "rate": 0}}}' >"$T/stations.json"
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "hsm-dev",
 "station_ca": "stations", "stations_file": "$T/stations.json", "default_profile": "device",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport",
 "workers": 1, "worker_threads": 1, "drain_timeout": 2}
EOF
CFG=$T/jitrd.json
ok "$JITRCTL" --config "$CFG" station issue line1 --out "$T/st"
"$GENCSR" --count 2 --cn-prefix dev- --out "$T/csr"

sign() {
  code=$(curl -sS --cacert "$T/srv.pem" --cert "$T/st/line1.crt" --key "$T/st/line1.key" \
    -H 'Content-Type: application/x-pem-file' --data-binary @"$T/csr/dev-000001.csr" \
    -D "$T/hdr" -o "$T/body" -w '%{http_code}' "$URL/v1/sign" || true)
}
readyz() { code=$(curl -s -o "$T/body" -w '%{http_code}' "$ADMIN/readyz" || true); }

# --- the token is gone when jitrd starts: it refuses to start, naming the CA and the token --------
mv "$T/hsm/tokens" "$T/hsm/tokens.away"
mkdir -m 700 "$T/hsm/tokens"
expect_fail 4 "CA 'hsm-dev' cannot sign: no PKCS#11 token 'factory'" "$JITRD" --config "$CFG"
rmdir "$T/hsm/tokens"
mv "$T/hsm/tokens.away" "$T/hsm/tokens"

"$JITRD" --config "$CFG" 2>"$T/jitrd.log" &
JPID=$!
for _ in $(seq 100); do readyz; [ "$code" = 200 ] && break; sleep 0.1; done
check_eq "readyz with the token" "$code" 200
sign; check_eq "sign with the token" "$code" 201

# --- the token goes away while jitrd runs ------------------------------------------------------
mv "$T/hsm/tokens" "$T/hsm/tokens.away"
mkdir -m 700 "$T/hsm/tokens"
sign
case $code in 201|503) pass ;; *) fail "sign with the token gone mid-run: $code $(cat "$T/body")" ;; esac
echo "token removed while running: signing answered $code" >&2
# a reload (SIGHUP, or a worker restarted) cannot open the key: degraded, not down
kill -HUP "$JPID"
for _ in $(seq 50); do readyz; [ "$code" = 503 ] && break; sleep 0.1; done
check_eq "readyz after a reload without the token" "$code" 503
grep -q "hsm-dev" "$T/body" && pass || fail "readyz names the CA: $(cat "$T/body")"
before=$(count_records issue)
sign; check_eq "sign without the token" "$code" 503
grep -qi '^retry-after:' "$T/hdr" && pass || fail "no Retry-After"
check_eq "nothing issued without the token" "$(count_records issue)" "$before"
# the token comes back. The degraded snapshot is rebuilt every 5 s, but a PKCS#11 module that
# does not rescan its tokens while initialised (SoftHSM2) keeps answering "no token" to this
# process: a restart picks it up.
rmdir "$T/hsm/tokens"
mv "$T/hsm/tokens.away" "$T/hsm/tokens"
sleep 6
readyz
echo "token back, no restart: readyz $code" >&2
kill -TERM "$JPID"; wait "$JPID" 2>/dev/null || true
"$JITRD" --config "$CFG" 2>>"$T/jitrd.log" &
JPID=$!
for _ in $(seq 100); do readyz; [ "$code" = 200 ] && break; sleep 0.1; done
check_eq "readyz after a restart with the token back" "$code" 200
sign; check_eq "sign after a restart with the token back" "$code" 201
finish
