#!/usr/bin/env bash
# jitrd black-box: a station with credentials from `jitrctl station issue` signs over mutual TLS
# (PEM, DER, JSON, batch), enrolls and re-enrolls over EST, looks certificates up, revokes as an
# admin and fetches the CRL; every bad input the API must refuse is refused with a JSON error and
# nothing issued; Redis down answers 503 and recovers; an unreadable CA key fails /readyz; SIGHUP
# reloads the stations; a killed worker is replaced; /metrics counts what happened; SIGTERM drains;
# a killed parent's workers exit by themselves.
# Clients: curl, openssl, python3's ssl module (the slow-header client). Its own redis-server (unix
# socket in $T) so the test can stop and restart it.
source "$(dirname "$0")/lib.sh"
JITRD=${JITRD:-$JITRCA_BUILD_DIR/daemon/jitrd}
[ -x "$JITRD" ] || { echo "no jitrd at $JITRD" >&2; exit 1; }

# --- a private redis-server, restartable with its data ----------------------------------------
mkdir -p "$T/redis"
redis_start() {
  redis-server --port 0 --unixsocket "$T/redis/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --daemonize yes --pidfile "$T/redis/redis.pid" --logfile "$T/redis/log" \
    --dir "$T/redis" --dbfilename dump.rdb
  for _ in $(seq 100); do redis-cli -s "$T/redis/redis.sock" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "redis did not start" >&2; return 1
}
redis_start
export JITRCA_REDIS_URL=unix://$T/redis/redis.sock
rcli() { redis-cli -s "$T/redis/redis.sock" "$@"; }

JPID=
stop_all() {
  if [ -n "$JPID" ] && kill -0 "$JPID" 2>/dev/null; then
    kill -TERM "$JPID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$JPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$JPID" 2>/dev/null || true
  fi
  redis-cli -s "$T/redis/redis.sock" shutdown nosave >/dev/null 2>&1 || true
}
trap 'rc=$?; stop_all; (exit $rc); cleanup' EXIT

# --- PKI: devices and stations CAs under one root; a server certificate from a separate CA ----
ok "$JITRCTL" ca init root --subject "/CN=Test Root/O=Acme" --days 3650
ok "$JITRCTL" ca init devices --parent root --subject "/CN=Test Devices CA/O=Acme"
ok "$JITRCTL" ca init stations --parent root --subject "/CN=Test Stations CA/O=Acme"
ok "$JITRCTL" ca retire root
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srvca.key" \
  -out "$T/srvca.pem" -subj /CN=srvca -days 2 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/srv.ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/srvca.pem" -CAkey "$T/srvca.key" -CAcreateserial \
  -out "$T/srv.pem" -days 1 -extfile "$T/srv.ext" 2>/dev/null
chmod 600 "$T/srv.key"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=https://127.0.0.1:$port
aport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=http://127.0.0.1:$aport
cat >"$T/stations.json" <<EOF
{"stations": {
  "line1": {"cas": ["devices"], "profiles": ["device"], "rate": 1000, "burst": 1000},
  "admin1": {"cas": ["devices"], "profiles": ["device"], "admin": true},
  "slow": {"rate": 0.01, "burst": 1},
  "line2": {}
}}
EOF
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport",
 "workers": 2, "worker_threads": 2, "request_timeout": 2, "max_body_bytes": 65536,
 "drain_timeout": 5}
EOF
CFG=$T/jitrd.json
for s in line1 line2 admin1 slow line3 ghost; do
  ok "$JITRCTL" --config "$CFG" station issue "$s" --out "$T/st"
done
check_eq "station key mode" "$(stat -c %a "$T/st/line1.key")" 600
openssl verify -CAfile "$T/st/ca.pem" "$T/st/line1.crt" >/dev/null 2>&1 && pass || fail "station cert verifies"
cat "$JITRCA_DATA_DIR/ca/devices/cert.pem" "$JITRCA_DATA_DIR/ca/root/cert.pem" >"$T/devchain.pem"

expect_fail 2 "unknown key 'bogus'" "$JITRD" --check-config --config <(echo '{"bogus": 1}')
ok "$JITRD" --check-config --config "$CFG"
grep -q "configuration OK" "$T/out" && pass || fail "check-config output"

"$JITRD" --config "$CFG" 2>"$T/jitrd.log" &
JPID=$!
for _ in $(seq 100); do
  curl -s --cacert "$T/srvca.pem" "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1
done

# req STATION [curl args...]: status into $code, body into $T/body
req() {
  local st=$1; shift
  local certargs=()
  if [ "$st" != - ]; then certargs=(--cert "$T/st/$st.crt" --key "$T/st/$st.key"); fi
  code=$(curl -sS --cacert "$T/srvca.pem" "${certargs[@]}" -o "$T/body" -w '%{http_code}' "$@" || true)
}
# expect_json_error STATUS CODE "message part"
expect_err() {
  if [ "$code" != "$1" ]; then fail "want HTTP $1, got $code: $(head -c 300 "$T/body")"; return; fi
  if [ "$(jq -r .error.code "$T/body" 2>/dev/null)" != "$2" ]; then
    fail "want error code $2, got: $(head -c 300 "$T/body")"; return; fi
  if ! jq -r .error.message "$T/body" | grep -qF -- "$3"; then
    fail "want message '$3', got: $(jq -r .error.message "$T/body")"; return; fi
  pass
}
issued() { rcli KEYS 'jitrca:cert:*' | wc -l; }

# --- health ---------------------------------------------------------------------------------
req - "$URL/healthz"; check_eq healthz "$code" 200
req - "$URL/readyz"; check_eq readyz "$code" 200

# --- /v1/sign in each content type ----------------------------------------------------------
"$GENCSR" --count 8 --cn-prefix dev- --out "$T/csr" --keys
csr() { echo "$T/csr/dev-00000$1.csr"; }
verify_issued() { # verify_issued NAME: certificate of $T/body verifies against the chain given
  jq -r .certificate "$T/body" >"$T/$1.pem"
  jq -r .chain "$T/body" >"$T/$1.chain.pem"
  if openssl verify -purpose sslclient -CAfile "$T/$1.chain.pem" "$T/$1.pem" >/dev/null 2>&1; then pass; else
    fail "certificate $1 does not verify"; fi
  check_eq "$1 certificateId" "$(jq -r .certificateId "$T/body")" \
    "$(openssl x509 -in "$T/$1.pem" -outform DER | sha256sum | cut -d' ' -f1)"
}
req line1 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 1)" "$URL/v1/sign"
check_eq "sign PEM" "$code" 201; verify_issued pem
openssl req -in "$(csr 2)" -outform DER -out "$T/2.der"
req line1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/2.der" "$URL/v1/sign"
check_eq "sign DER" "$code" 201; verify_issued der
jq -n --rawfile c "$(csr 3)" '{csr: $c, profile: "device", ca: "devices"}' >"$T/3.json"
req line1 -H 'Content-Type: application/json' --data-binary @"$T/3.json" "$URL/v1/sign"
check_eq "sign JSON" "$code" 201; verify_issued json
check_eq "JSON profile" "$(jq -r .profile "$T/body")" device
serial=$(jq -r .serial "$T/body")
grep -q "\"requester\":\"station:line1\"" "$JITRCA_DATA_DIR/audit/audit.log" && pass ||
  fail "issue records name the station"
# Expect: 100-continue: the server says 100 Continue, then reads the body and answers
req line1 -H 'Content-Type: application/x-pem-file' -H 'Expect: 100-continue' -D "$T/hdr" \
  --data-binary @"$(csr 1)" "$URL/v1/sign"
check_eq "sign with Expect: 100-continue" "$code" 201
grep -q '^HTTP/1.1 100 Continue' "$T/hdr" && pass || fail "no 100 Continue before the reply: $(cat "$T/hdr")"

# --- batch with bad items ---------------------------------------------------------------------
jq -n --rawfile a "$(csr 4)" --rawfile b "$(csr 5)" \
  '{requests: [{id: "a", csr: $a}, {id: "bad", csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"},
               {id: "b", csr: $b}, {id: "prof", csr: $b, profile: "station"}, {id: "key", csr: $b, colour: 1}]}' >"$T/batch.json"
req line1 -H 'Content-Type: application/json' --data-binary @"$T/batch.json" "$URL/v1/sign/batch"
check_eq "batch status" "$code" 200
check_eq "batch issued" "$(jq '[.results[] | select(.certificate)] | length' "$T/body")" 2
check_eq "batch ids" "$(jq -c '[.results[].id]' "$T/body")" '["a","bad","b","prof","key"]'
check_eq "batch bad csr" "$(jq -r '.results[1].error.code' "$T/body")" invalid
check_eq "batch profile" "$(jq -r '.results[3].error.message' "$T/body")" "station 'line1' may not use profile 'station'"
check_eq "batch unknown key" "$(jq -r '.results[4].error.message' "$T/body")" "unknown key 'colour'"
jq -r '.results[0].certificate' "$T/body" >"$T/b0.pem"
openssl verify -CAfile "$T/devchain.pem" "$T/b0.pem" >/dev/null 2>&1 && pass || fail "batch cert verifies"

# --- GET /v1/ca and /v1/certificates/{serial} -------------------------------------------------
req line1 "$URL/v1/ca"; check_eq "GET /v1/ca" "$code" 200
grep -c "BEGIN CERTIFICATE" "$T/body" | grep -qx 2 && pass || fail "/v1/ca has the chain"
req line1 "$URL/v1/certificates/$serial"; check_eq "GET certificate" "$code" 200
check_eq "certificate serial" "$(jq -r .serial "$T/body")" "$serial"
check_eq "certificate requester" "$(jq -r .requester "$T/body")" "station:line1"
req line1 "$URL/v1/certificates/0123abcd"; expect_err 404 not_found "0123abcd"
req line1 "$URL/v1/certificates/xyz"; expect_err 400 invalid "hex digits"

# --- EST --------------------------------------------------------------------------------------
req - "$URL/.well-known/est/cacerts"; check_eq "EST cacerts" "$code" 200
openssl base64 -d -in "$T/body" | openssl pkcs7 -inform DER -print_certs >"$T/cacerts.pem" 2>&1
grep -q "subject=CN = Test Devices CA" "$T/cacerts.pem" && pass || fail "cacerts holds the CA"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/est.key" \
  -subj "/CN=est-device-1" -outform DER -out "$T/est.der" 2>/dev/null
openssl base64 -in "$T/est.der" >"$T/est.b64"
req line1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/est.b64" "$URL/.well-known/est/simpleenroll"
check_eq "EST simpleenroll" "$code" 200
openssl base64 -d -in "$T/body" | openssl pkcs7 -inform DER -print_certs -out "$T/est.pem" 2>/dev/null
openssl verify -CAfile "$T/devchain.pem" "$T/est.pem" >/dev/null 2>&1 && pass || fail "EST cert verifies"
# re-enrollment with the device's own certificate, same subject
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/est2.key" \
  -subj "/CN=est-device-1" -outform DER 2>/dev/null | openssl base64 >"$T/est2.b64"
cp "$T/est.pem" "$T/st/dev1.crt"; cp "$T/est.key" "$T/st/dev1.key"
req dev1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/est2.b64" "$URL/.well-known/est/simplereenroll"
check_eq "EST simplereenroll" "$code" 200
openssl base64 -d -in "$T/body" | openssl pkcs7 -inform DER -print_certs -out "$T/est2.pem" 2>/dev/null
check_eq "re-enrolled subject" "$(openssl x509 -in "$T/est2.pem" -noout -subject)" "subject=CN = est-device-1"
openssl verify -CAfile "$T/devchain.pem" "$T/est2.pem" >/dev/null 2>&1 && pass || fail "re-enrolled cert verifies"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/est3.key" \
  -subj "/CN=someone-else" -outform DER 2>/dev/null | openssl base64 >"$T/est3.b64"
req dev1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/est3.b64" "$URL/.well-known/est/simplereenroll"
expect_err 400 invalid "keep the subject"
req line1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/est2.b64" "$URL/.well-known/est/simplereenroll"
expect_err 403 denied "issued by a CA jitrd serves"
req dev1 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 6)" "$URL/v1/sign"
expect_err 403 denied "not issued by the station CA"

# --- bad input: each refused with a JSON error, nothing issued ---------------------------------
before=$(issued)
req - -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 6)" "$URL/v1/sign"
expect_err 403 denied "a client certificate is required"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/st/foreign.key" \
  -out "$T/st/foreign.crt" -subj /CN=line1 -days 1 2>/dev/null
req foreign -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 6)" "$URL/v1/sign"
expect_err 403 denied "client certificate refused"
# expired: signed by the station CA's own key, validity in the past
mkdir -p "$T/ossl"; : >"$T/ossl/index.txt"; echo 1000 >"$T/ossl/serial"
cat >"$T/ossl/ca.cnf" <<EOF
[ca]
default_ca = x
[x]
database = $T/ossl/index.txt
new_certs_dir = $T/ossl
serial = $T/ossl/serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
EOF
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/st/expired.key" \
  -out "$T/expired.csr" -subj /CN=line1 2>/dev/null
openssl ca -batch -config "$T/ossl/ca.cnf" -cert "$JITRCA_DATA_DIR/ca/stations/cert.pem" \
  -keyfile "$JITRCA_DATA_DIR/ca/stations/key.pem" -passin env:JITRCA_KEY_PASSPHRASE \
  -in "$T/expired.csr" -out "$T/st/expired.crt" -startdate 20200101000000Z -enddate 20200102000000Z \
  -notext >/dev/null 2>&1 || fail "openssl ca made no expired certificate"
req expired -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 6)" "$URL/v1/sign"
expect_err 403 denied "certificate has expired"
req ghost -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 6)" "$URL/v1/sign"
expect_err 403 denied "station 'ghost' is not authorised"
jq -n --rawfile c "$(csr 6)" '{csr: $c, profile: "station"}' >"$T/6.json"
req line1 -H 'Content-Type: application/json' --data-binary @"$T/6.json" "$URL/v1/sign"
expect_err 403 denied "station 'line1' may not use profile 'station'"
printf -- '-----BEGIN CERTIFICATE REQUEST-----\nMIIBADCBpwIBADAUMRIwEAYDVQQDDAlub3QtYS1jc3I=\n-----END CERTIFICATE REQUEST-----\n' >"$T/bad.csr"
req line1 -H 'Content-Type: application/x-pem-file' --data-binary @"$T/bad.csr" "$URL/v1/sign"
expect_err 400 invalid ""
req line1 -H 'Content-Type: text/html' --data-binary @"$(csr 6)" "$URL/v1/sign"
expect_err 415 unsupported_media_type "unsupported content type 'text/html'"
req line1 -H 'Content-Type: application/json' --data-binary '{"csr": ' "$URL/v1/sign"
expect_err 400 invalid "not valid JSON"
req line1 -H 'Content-Type: application/json' --data-binary "$(printf '[%.0s' $(seq 50))" "$URL/v1/sign"
expect_err 400 invalid "nested deeper than 8"
req line1 -H 'Content-Type: application/json' --data-binary '{"csr": "x", "profil": "device"}' "$URL/v1/sign"
expect_err 400 invalid "unknown key 'profil'"
head -c 200000 /dev/zero | tr '\0' 'A' >"$T/huge"
req line1 -H 'Content-Type: application/x-pem-file' -H 'Expect: 100-continue' --data-binary @"$T/huge" "$URL/v1/sign"
check_eq "huge body status" "$code" 413
expect_err 413 too_large "bytes accepted"
req line1 -H 'Content-Type: application/x-pem-file' -H 'Expect:' --data-binary @"$T/huge" "$URL/v1/sign"
expect_err 413 too_large "bytes accepted"
# raw requests over TLS (openssl s_client): status into $code, body into $T/body
raw() {
  printf "$1" | timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$T/srvca.pem" \
    -quiet 2>/dev/null >"$T/raw" || true
  code=$(head -1 "$T/raw" | cut -d' ' -f2)
  awk 'seen { print } /^\r$/ { seen = 1 }' "$T/raw" >"$T/body"
}
raw 'POST /v1/sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-pem-file\r\nContent-Length: 10000000\r\n\r\n-----BEGIN'
expect_err 413 too_large "bytes accepted"
raw 'GARBAGE\r\nHost: x\r\n\r\n'
expect_err 400 bad_request "malformed request line"
raw 'GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n'
expect_err 505 http_version_not_supported "HTTP/1.1"
raw 'POST /v1/sign HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
expect_err 411 length_required "Content-Length"
req line1 -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)" "$URL/healthz"
expect_err 431 headers_too_large "16 KiB"
# two pipelined requests on one connection: two replies, in order
raw 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
check_eq "pipelined replies" "$(grep -c '^HTTP/1.1 ' "$T/raw")" 2
check_eq "pipelined order" "$(grep '^HTTP/1.1 ' "$T/raw" | cut -d' ' -f2 | tr '\n' ' ')" "200 404 "
req line1 -X PUT "$URL/v1/sign"; expect_err 405 method_not_allowed "method not allowed"
req line1 "$URL/v1/nothing"; expect_err 404 not_found "no such endpoint"
check_eq "nothing issued by bad input" "$(issued)" "$before"
grep -q '"type":"deny"' "$JITRCA_DATA_DIR/audit/audit.log" && pass || fail "refusals are audited"
# nobody authenticated the expired certificate: counted, not audited one by one
grep '"type":"deny"' "$JITRCA_DATA_DIR/audit/audit.log" | grep -q 'certificate has expired' &&
  fail "a stranger's refusal is audited one by one" || pass

# slow headers: a TLS client dribbling a header line is cut off after request_timeout (2 s)
cat >"$T/slow.py" <<'EOF'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
t0 = time.time()
try:
    for i in range(40):
        s.sendall(b"X-Slow-%d: y\r\n" % i)
        time.sleep(0.25)
        s.settimeout(0.01)
        try:
            if s.recv(1) == b"":
                break
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        s.settimeout(None)
except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
    pass
print("%.1f" % (time.time() - t0))
EOF
cut=$(python3 "$T/slow.py" "$port" "$T/srvca.pem")
awk -v c="$cut" 'BEGIN { exit !(c >= 1.5 && c < 5) }' && pass || fail "slow headers cut after ${cut}s"

# rate limit: burst 1, then 429 with Retry-After
req slow -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 7)" "$URL/v1/sign"
check_eq "first within the rate" "$code" 201
req slow -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 7)" "$URL/v1/sign" -D "$T/hdr"
expect_err 429 rate_limited "over its rate limit"
grep -qi '^Retry-After: [0-9]' "$T/hdr" && pass || fail "Retry-After header"

# --- revocation: a revoked station is refused; admin revokes; the CRL lists it --------------
req line2 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 8)" "$URL/v1/sign"
check_eq "line2 signs" "$code" 201
ok "$JITRCTL" --config "$CFG" station revoke line2
sleep 6 # the signing threads cache a station's status for 5 s
req line2 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 8)" "$URL/v1/sign"
expect_err 403 denied "is revoked"
req line1 -H 'Content-Type: application/json' --data-binary "{\"serial\":\"$serial\"}" "$URL/v1/revoke"
expect_err 403 denied "does not have the admin role"
req admin1 -H 'Content-Type: application/json' --data-binary "{\"serial\":\"$serial\",\"reason\":\"keyCompromise\"}" "$URL/v1/revoke"
check_eq "admin revokes" "$code" 200
check_eq "revoked reason" "$(jq -r .reason "$T/body")" keyCompromise
req - "$URL/v1/crl?ca=devices" ; check_eq "GET /v1/crl" "$code" 200
openssl crl -inform DER -in "$T/body" -out "$T/crl.pem"
openssl crl -in "$T/crl.pem" -noout -verify -CAfile "$T/devchain.pem" >/dev/null 2>&1 && pass || fail "CRL verifies"
# openssl prints the INTEGER's magnitude: without the 00 that DER needs before a byte >= 0x80
# (our hex keeps it: one serial in 256 starts 00)
openssl crl -in "$T/crl.pem" -noout -text | tr -d ' :' | tr A-F a-f |
  grep -qi "serialnumber${serial#00}\$" && pass ||
  fail "the CRL lists $serial"
cat "$T/devchain.pem" "$T/crl.pem" >"$T/crlchain.pem"
openssl x509 -in "$JITRCA_DATA_DIR/ca/root/cert.pem" >/dev/null
if openssl verify -crl_check -CAfile "$T/crlchain.pem" "$T/json.pem" >"$T/v.out" 2>&1; then
  fail "a revoked certificate verifies with -crl_check"
else grep -q "certificate revoked" "$T/v.out" && pass || fail "verify -crl_check: $(cat "$T/v.out")"; fi
# the schedule: a CRL that is due (here: its file is gone) is regenerated by jitrd itself,
# numbered after the last one, with nobody asking
crlnum() { openssl crl -in "$1" -noout -crlnumber | cut -d= -f2; }
n0=$(crlnum "$T/crl.pem")
rm -f "$JITRCA_DATA_DIR/ca/devices/crl.pem" "$JITRCA_DATA_DIR/ca/devices/crl.der"
for _ in $(seq 150); do [ -f "$JITRCA_DATA_DIR/ca/devices/crl.pem" ] && break; sleep 0.1; done
if [ -f "$JITRCA_DATA_DIR/ca/devices/crl.pem" ]; then
  check_eq "scheduled CRL number" "$(( $(crlnum "$JITRCA_DATA_DIR/ca/devices/crl.pem") ))" \
    "$(( n0 + 1 ))"
  grep -q 'scheduled CRL refresh regenerated 1' "$T/jitrd.log" && pass || fail "schedule logged"
else
  fail "jitrd did not regenerate a due CRL within 15 s"
fi

# --- Redis down: 503 JSON, then recovery ------------------------------------------------------
rcli SHUTDOWN SAVE >/dev/null 2>&1 || true
sleep 0.3
req line1 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 7)" "$URL/v1/sign"
expect_err 503 unavailable "redis"
req - "$URL/readyz"; expect_err 503 unavailable "not ready"
req - "$ADMIN/readyz"; expect_err 503 unavailable "redis"
redis_start
for _ in $(seq 50); do req - "$URL/readyz"; [ "$code" = 200 ] && break; sleep 0.1; done
check_eq "readyz after Redis returns" "$code" 200
req line1 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 7)" "$URL/v1/sign"
check_eq "sign after Redis returns" "$code" 201

# --- CA key unreadable: /readyz 503, signing 503, recovery ------------------------------------
mv "$JITRCA_DATA_DIR/ca/devices/key.pem" "$T/key.away"
req - "$URL/readyz"; expect_err 503 unavailable "not ready"
req admin1 "$URL/readyz"; expect_err 503 unavailable "key file"
before=$(issued)
req line1 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 5)" "$URL/v1/sign"
expect_err 503 unavailable "CA 'devices'"
check_eq "nothing issued without the key" "$(issued)" "$before"
mv "$T/key.away" "$JITRCA_DATA_DIR/ca/devices/key.pem"
req - "$URL/readyz"; check_eq "readyz with the key back" "$code" 200

# --- SIGHUP: a new station is authorised without a restart ------------------------------------
req line3 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 5)" "$URL/v1/sign"
expect_err 403 denied "station 'line3' is not authorised"
jq '.stations.line3 = {"profiles": ["device"]}' "$T/stations.json" >"$T/s2" && mv "$T/s2" "$T/stations.json"
kill -HUP "$JPID"
for _ in $(seq 50); do
  [ "$(grep -c 'configuration reloaded' "$T/jitrd.log")" -ge 2 ] && break; sleep 0.1
done
req line3 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 5)" "$URL/v1/sign"
check_eq "line3 after SIGHUP" "$code" 201

# --- a killed worker is replaced --------------------------------------------------------------
mapfile -t kids < <(pgrep -P "$JPID")
check_eq "workers" "${#kids[@]}" 2
kill -KILL "${kids[0]}"
for _ in $(seq 50); do
  mapfile -t now < <(pgrep -P "$JPID")
  [ "${#now[@]}" = 2 ] && [ "${now[0]}" != "${kids[0]}" ] && [ "${now[1]:-}" != "${kids[0]}" ] && break
  sleep 0.1
done
check_eq "workers after a kill" "$(pgrep -P "$JPID" | grep -vcx "${kids[0]}")" 2
grep -q 'died (killed by signal 9)' "$T/jitrd.log" && pass || fail "the death is logged"
req - "$URL/healthz"; check_eq "healthz after the kill" "$code" 200

# --- metrics (admin_listen; on the signing listener for admin stations) ------------------------
req - "$URL/metrics"; expect_err 403 denied "client certificate"
req admin1 "$URL/metrics"; check_eq "metrics for an admin station" "$code" 200
req - "$ADMIN/metrics"; check_eq "metrics" "$code" 200
grep -q '^jitrd_http_requests_total{route="sign",status="201"} [1-9]' "$T/body" && pass || fail "metrics: sign 201"
grep -q '^jitrd_http_requests_total{route="sign",status="403"} [1-9]' "$T/body" && pass || fail "metrics: sign 403"
grep -q '^jitrd_http_requests_total{route="est_enroll",status="200"} 1$' "$T/body" && pass || fail "metrics: est"
grep -q '^jitrd_certificates_issued_total{station="line1",profile="device"} [1-9]' "$T/body" && pass ||
  fail "metrics: issued by station"
grep -q '^jitrd_http_request_duration_seconds_bucket{route="sign",le="+Inf"} [1-9]' "$T/body" && pass ||
  fail "metrics: latency histogram"
grep -q '^jitrd_worker_restarts_total 1$' "$T/body" && pass || fail "metrics: worker restart"
grep -q '^jitrd_audit_commits_total [1-9]' "$T/body" && pass || fail "metrics: audit commits"
# the fdatasync latency histogram: one observation per group commit, cumulative buckets
commits=$(awk '/^jitrd_audit_commits_total / {print $2}' "$T/body")
check_eq "metrics: audit fsync count" "$(awk '/^jitrd_audit_fsync_duration_seconds_count / {print $2}' "$T/body")" "$commits"
check_eq "metrics: audit fsync +Inf bucket" "$(awk '/^jitrd_audit_fsync_duration_seconds_bucket[{]le="[+]Inf"[}] / {print $2}' "$T/body")" "$commits"
awk '/^jitrd_audit_fsync_duration_seconds_bucket/ {if ($2 < prev) bad=1; prev=$2} END {exit bad}' "$T/body" && pass || fail "metrics: fsync buckets cumulative"

# --- every certificate issued verifies; the audit log is intact; SIGTERM drains -----------------
ok "$JITRCTL" audit verify
kill -TERM "$JPID"
for _ in $(seq 100); do kill -0 "$JPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$JPID" 2>/dev/null; then fail "jitrd still running after SIGTERM"; else
  wait "$JPID"; check_eq "jitrd exit status" "$?" 0; fi
grep -q '"level":"error"' "$T/jitrd.log" && { grep '"level":"error"' "$T/jitrd.log" | head -5 >&2; } || true

# --- the parent killed: its workers drain and exit, and a new jitrd takes the listeners ----------
jitrd_up() {
  "$JITRD" --config "$CFG" 2>>"$T/jitrd.log" &
  JPID=$!
  for _ in $(seq 100); do
    curl -s --cacert "$T/srvca.pem" "$URL/healthz" >/dev/null 2>&1 && return 0; sleep 0.1
  done
  return 1
}
jitrd_up
mapfile -t kids < <(pgrep -P "$JPID")
check_eq "workers before the parent is killed" "${#kids[@]}" 2
kill -KILL "$JPID"; wait "$JPID" 2>/dev/null || true; JPID=
for _ in $(seq 150); do # drain_timeout is 5 s
  alive=0; for k in "${kids[@]}"; do kill -0 "$k" 2>/dev/null && alive=$((alive + 1)); done
  [ "$alive" = 0 ] && break; sleep 0.1
done
check_eq "workers left running after their parent was killed" "$alive" 0
kill -KILL "${kids[@]}" 2>/dev/null || true
jitrd_up && pass || fail "a new jitrd starts on the freed listeners"
req line1 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 6)" "$URL/v1/sign"
check_eq "signing by the new jitrd" "$code" 201
finish
