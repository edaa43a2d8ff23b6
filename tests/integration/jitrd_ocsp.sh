#!/usr/bin/env bash
# jitrd's OCSP responder (ocsp_listen) as `openssl ocsp` and curl see it: good, revoked (time and
# reason shown) and unknown serials, the signature verified against the CA (CA-signed, then with
# a delegated responder certificate from `jitrctl ca ocsp-signer`), POST and GET (URL-encoded
# base64, and the base64url alphabet), the nonce echoed and RFC 5019's caching headers without
# one, a revocation answered at once, several CertIDs in one request, malformed requests
# (malformedRequest), a CA that is not ours (unauthorized), tryLater/503 while the index is
# incomplete, and a delegated certificate that expired (the CA key signs again).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jitrd_lib.sh" # Redis (redis_start), rcli, free_port, jitrd_start, stop_all
D=$JITRCA_DATA_DIR

pki_setup
port=$(free_port)
URL=https://127.0.0.1:$port
aport=$(free_port)
ADMIN=http://127.0.0.1:$aport
oport=$(free_port)
OCSP=http://127.0.0.1:$oport
cat >"$T/stations.json" <<EOF
{"stations": {"line1": {"cas": ["devices"], "profiles": ["device"], "rate": 0}}}
EOF
# a profile whose certificates name where their CRL, their CA and this responder are
mkdir -p "$T/profiles"
cp "$JITRCA_SOURCE_DIR"/policies/profiles/*.json "$T/profiles/"
jq --arg o "$OCSP/" '.jitr = false | .description = "devices with revocation URLs" |
  .crl_distribution_points = ["http://pki.example.com/crl/devices.crl"] |
  .authority_info_access = {"ca_issuers": ["http://pki.example.com/ca/devices.der"],
                            "ocsp": [$o]}' "$T/profiles/device.json" >"$T/profiles/device-urls.json"
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$D", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "profiles_dir": "$T/profiles",
 "station_ca": "stations", "stations_file": "$T/stations.json", "default_profile": "device",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport", "ocsp_listen": "127.0.0.1:$oport", "ocsp_validity": 600,
 "workers": 2, "worker_threads": 2, "request_timeout": 5, "drain_timeout": 5}
EOF
CFG=$T/jitrd.json
cat "$D/ca/devices/cert.pem" >"$T/issuer.pem"
cat "$D/ca/devices/cert.pem" "$D/ca/root/cert.pem" >"$T/trust.pem"

"$GENCSR" --count 4 --cn-prefix oc- --out "$T/csr"
for i in 1 2 3 4; do
  ok "$JITRCTL" --config "$CFG" sign --csr "$T/csr/oc-00000$i.csr" --out "$T/c$i.pem"
done
ok "$JITRCTL" --config "$CFG" revoke "$(openssl x509 -in "$T/c2.pem" -noout -serial | cut -d= -f2)" \
  --reason keyCompromise
jitrd_start "$CFG"

# ocsp CERT [openssl ocsp args...]: the response's text in $T/ocsp.out (stdout and stderr)
ocsp() {
  local cert=$1; shift
  openssl ocsp -issuer "$T/issuer.pem" -cert "$cert" -url "$OCSP" -CAfile "$T/trust.pem" \
    -resp_text "$@" >"$T/ocsp.out" 2>&1 || true
}
# has "text": the last response's text must contain it
has() {
  if grep -qF -- "$1" "$T/ocsp.out"; then pass; else
    fail "want '$1' in the OCSP response:"; sed -n 1,60p "$T/ocsp.out" >&2; fi
}
hasnt() {
  if grep -qF -- "$1" "$T/ocsp.out"; then fail "did not want '$1':"; sed -n 1,40p "$T/ocsp.out" >&2
  else pass; fi
}

# --- CA-signed: good, revoked, unknown; the signature verifies against the trust store ---------
ocsp "$T/c1.pem"
has "Response verify OK"
has "$T/c1.pem: good"
has "Next Update:"
has "Responder Id: "
ocsp "$T/c2.pem"
has "Response verify OK"
has "$T/c2.pem: revoked"
has "Reason: keyCompromise"
has "Revocation Time:"
# the revocation time is the index's
rt=$(rcli HGET "jitrca:cert:$(index_serial "$T/c2.pem")" revoked_at)
[ -n "$rt" ] && pass || fail "no revoked_at in the index for c2"
want=$(date -u -d "$rt" '+%b %e %H:%M:%S %Y GMT')
has "Revocation Time: $want"
ocsp "$T/c1.pem" -serial 0x7abcdef0123456789
has "Response verify OK"
has "0x7abcdef0123456789: unknown"
# the nonce: echoed when asked, and checked by openssl (it fails the verification when absent)
ocsp "$T/c1.pem"
has "OCSP Nonce:"
hasnt "WARNING: no nonce in response"
ocsp "$T/c1.pem" -no_nonce
hasnt "OCSP Nonce"
has "$T/c1.pem: good"
# several CertIDs at once
ocsp "$T/c1.pem" -cert "$T/c2.pem" -cert "$T/c3.pem"
has "Response verify OK"
has "$T/c1.pem: good"
has "$T/c2.pem: revoked"
has "$T/c3.pem: good"

# --- a revocation is answered at once -----------------------------------------------------------
ocsp "$T/c3.pem"
has "$T/c3.pem: good"
ok "$JITRCTL" --config "$CFG" revoke "$(openssl x509 -in "$T/c3.pem" -noout -serial | cut -d= -f2)" \
  --reason superseded
ocsp "$T/c3.pem"
has "$T/c3.pem: revoked"
has "Reason: superseded"
# certificateHold as the index may record it (a hold put on by the revocation jobs)
s4=$(index_serial "$T/c4.pem")
rcli HSET "jitrca:cert:$s4" status revoked revoked_at 2026-01-02T03:04:05Z \
  reason certificateHold >/dev/null
ocsp "$T/c4.pem"
has "$T/c4.pem: revoked"
has "Reason: certificateHold"
has "Revocation Time: Jan  2 03:04:05 2026 GMT"
rcli HSET "jitrca:cert:$s4" status valid >/dev/null
rcli HDEL "jitrca:cert:$s4" revoked_at reason >/dev/null

# --- a certificate of a profile with CDP and AIA: openssl and GnuTLS read the URLs, and the
# OCSP URL the certificate names answers for it ---------------------------------------------------
ok "$JITRCTL" --config "$CFG" sign --csr "$T/csr/oc-000001.csr" --profile device-urls \
  --out "$T/u.pem"
openssl x509 -in "$T/u.pem" -noout -text >"$T/ocsp.out"
has "X509v3 CRL Distribution Points:"
has "URI:http://pki.example.com/crl/devices.crl"
has "Authority Information Access:"
has "CA Issuers - URI:http://pki.example.com/ca/devices.der"
has "OCSP - URI:$OCSP/"
certtool -i --infile "$T/u.pem" >"$T/ocsp.out" 2>&1
has "CRL Distribution points (not critical):"
has "URI: http://pki.example.com/crl/devices.crl"
has "Authority Information Access (not critical):"
has "Access Method: 1.3.6.1.5.5.7.48.1 (id-ad-ocsp)"
has "Access Location URI: $OCSP/"
has "Access Method: 1.3.6.1.5.5.7.48.2 (id-ad-caIssuers)"
verify_cert "$T/u.pem" "$T/trust.pem"
check_eq "ocsp_uri" "$(openssl x509 -in "$T/u.pem" -noout -ocsp_uri)" "$OCSP/"
openssl ocsp -issuer "$T/issuer.pem" -cert "$T/u.pem" -CAfile "$T/trust.pem" \
  -url "$(openssl x509 -in "$T/u.pem" -noout -ocsp_uri)" >"$T/ocsp.out" 2>&1 || true
has "Response verify OK"
has "$T/u.pem: good"
# a profile with a URL a relying party could not use is refused at load
jq '.crl_distribution_points = ["https://pki.example.com/c.crl"]' "$T/profiles/device.json" \
  >"$T/profiles/bad.json"
expect_fail 2 "crl_distribution_points: 'https://pki.example.com/c.crl' must start with http://" \
  "$JITRCTL" --config "$CFG" sign --csr "$T/csr/oc-000002.csr"
rm "$T/profiles/bad.json"

# --- POST and GET with curl ----------------------------------------------------------------------
openssl ocsp -issuer "$T/issuer.pem" -cert "$T/c1.pem" -no_nonce -reqout "$T/req.der" >/dev/null
code=$(curl -s -o "$T/resp.der" -D "$T/hdr" -w '%{http_code}' -H 'Content-Type: application/ocsp-request' \
  --data-binary @"$T/req.der" "$OCSP/")
check_eq "POST status" "$code" 200
grep -qi '^content-type: application/ocsp-response' "$T/hdr" && pass || fail "POST content type"
openssl ocsp -respin "$T/resp.der" -issuer "$T/issuer.pem" -cert "$T/c1.pem" \
  -CAfile "$T/trust.pem" >"$T/ocsp.out" 2>&1 || true
has "$T/c1.pem: good"
b64=$(base64 -w0 "$T/req.der")
enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$b64")
code=$(curl -s -o "$T/resp.der" -D "$T/hdr" -w '%{http_code}' "$OCSP/$enc")
check_eq "GET status" "$code" 200
grep -qi '^cache-control: max-age=600, public' "$T/hdr" && pass || { fail "GET cache headers"; cat "$T/hdr" >&2; }
grep -qi '^expires: ' "$T/hdr" && pass || fail "GET Expires"
grep -qi '^last-modified: ' "$T/hdr" && pass || fail "GET Last-Modified"
openssl ocsp -respin "$T/resp.der" -issuer "$T/issuer.pem" -cert "$T/c1.pem" \
  -CAfile "$T/trust.pem" >"$T/ocsp.out" 2>&1 || true
has "Response verify OK"
has "$T/c1.pem: good"
# unencoded '/' and '+', and the base64url alphabet without padding, are taken too
code=$(curl -s -o "$T/resp.der" -w '%{http_code}' --path-as-is "$OCSP/$b64")
check_eq "GET raw base64 status" "$code" 200
u=$(printf '%s' "$b64" | tr '+/' '-_' | tr -d '=')
code=$(curl -s -o "$T/resp2.der" -w '%{http_code}' "$OCSP/$u")
check_eq "GET base64url status" "$code" 200
openssl ocsp -respin "$T/resp2.der" -issuer "$T/issuer.pem" -cert "$T/c1.pem" \
  -CAfile "$T/trust.pem" >"$T/ocsp.out" 2>&1 || true
has "$T/c1.pem: good"
# a request with a nonce is not cacheable
openssl ocsp -issuer "$T/issuer.pem" -cert "$T/c1.pem" -reqout "$T/reqn.der" >/dev/null
code=$(curl -s -o /dev/null -D "$T/hdr" -w '%{http_code}' \
  "$OCSP/$(base64 -w0 "$T/reqn.der" | tr '+/' '-_')")
check_eq "GET with nonce" "$code" 200
grep -qi '^cache-control: no-cache' "$T/hdr" && pass || fail "nonce: no-cache"

# --- malformed and foreign requests --------------------------------------------------------------
# resp_status BODYFILE: the OCSPResponseStatus of a response
resp_status() {
  openssl ocsp -respin "$1" -resp_text 2>&1 |
    sed -n 's/^Responder Error: //p; s/^ *OCSP Response Status: //p' | head -1
}
for bad in 'bm90IGFuIE9DU1AgcmVxdWVzdA==' '%zz' 'ab*cd' 'MAA='; do
  code=$(curl -s -o "$T/bad.der" -w '%{http_code}' --path-as-is "$OCSP/$bad")
  check_eq "GET $bad status" "$code" 200
  check_eq "GET $bad answer" "$(resp_status "$T/bad.der")" "malformedrequest (1)"
done
head -c 300 /dev/urandom >"$T/noise"
code=$(curl -s -o "$T/bad.der" -w '%{http_code}' -H 'Content-Type: application/ocsp-request' \
  --data-binary @"$T/noise" "$OCSP/")
check_eq "POST noise" "$(resp_status "$T/bad.der")" "malformedrequest (1)"
code=$(curl -s -o "$T/bad.der" -w '%{http_code}' -H 'Content-Type: text/plain' \
  --data-binary @"$T/req.der" "$OCSP/")
check_eq "POST wrong type" "$(resp_status "$T/bad.der")" "malformedrequest (1)"
# truncated requests and a request with 17 CertIDs
for n in 1 10 30 $(($(stat -c %s "$T/req.der") - 1)); do
  head -c "$n" "$T/req.der" >"$T/trunc"
  curl -s -o "$T/bad.der" -H 'Content-Type: application/ocsp-request' --data-binary @"$T/trunc" \
    "$OCSP/"
  check_eq "truncated at $n" "$(resp_status "$T/bad.der")" "malformedrequest (1)"
done
args=()
for i in $(seq 17); do args+=(-serial "$i"); done
openssl ocsp -issuer "$T/issuer.pem" "${args[@]}" -reqout "$T/req17.der" >/dev/null
curl -s -o "$T/bad.der" -H 'Content-Type: application/ocsp-request' --data-binary @"$T/req17.der" \
  "$OCSP/"
check_eq "17 CertIDs" "$(resp_status "$T/bad.der")" "malformedrequest (1)"
# a CA that is not ours: unauthorized
ocsp_foreign() {
  openssl ocsp -issuer "$T/srvca.pem" -cert "$T/srv.pem" -url "$OCSP" -CAfile "$T/srvca.pem" \
    >"$T/ocsp.out" 2>&1 || true
}
ocsp_foreign
has "Responder Error: unauthorized (6)"
# the stations CA is ours but not served (no station names it): unauthorized too
openssl ocsp -issuer "$D/ca/stations/cert.pem" -serial 0x1234 -url "$OCSP" \
  -CAfile "$T/trust.pem" >"$T/ocsp.out" 2>&1 || true
has "Responder Error: unauthorized (6)"
check_eq "OCSP requests counted" "$(metric 'jitrd_http_requests_total{route="ocsp_post",status="200"}' |
  awk '{print ($1 > 10)}')" 1

# --- the index incomplete: tryLater with HTTP 503 ------------------------------------------------
# the lock first: a worker that saw the index incomplete between the two would rebuild it at once
rcli SET jitrca:index:lock someone-else PX 60000 >/dev/null # no rebuild meanwhile
rcli DEL jitrca:index:ready >/dev/null
for _ in $(seq 50); do
  code=$(curl -s -o "$T/later.der" -D "$T/hdr" -w '%{http_code}' \
    -H 'Content-Type: application/ocsp-request' --data-binary @"$T/req.der" "$OCSP/")
  [ "$code" = 503 ] && break
  sleep 0.1
done
check_eq "incomplete index status" "$code" 503
check_eq "incomplete index answer" "$(resp_status "$T/later.der")" "trylater (3)"
grep -qi '^retry-after: ' "$T/hdr" && pass || fail "tryLater Retry-After"
rcli DEL jitrca:index:lock >/dev/null
for _ in $(seq 100); do
  [ "$(rcli EXISTS jitrca:index:ready)" = 1 ] && break; sleep 0.1
done
ocsp "$T/c1.pem"
has "$T/c1.pem: good"
has "Response verify OK"

# --- a delegated responder ------------------------------------------------------------------------
expect_fail 2 "--days must be 1 to 3650" "$JITRCTL" --config "$CFG" ca ocsp-signer devices --days 0
expect_fail 2 "takes one NAME" "$JITRCTL" --config "$CFG" ca ocsp-signer
expect_fail 4 "CA 'nosuchca' not found" "$JITRCTL" --config "$CFG" ca ocsp-signer nosuchca
ok "$JITRCTL" --config "$CFG" --json ca ocsp-signer devices --days 7
check_eq "signer key mode" "$(stat -c %a "$D/ca/devices/ocsp-signer.key")" 600
check_eq "signer audited" "$(count_records ca_ocsp_signer)" 1
openssl x509 -in "$D/ca/devices/ocsp-signer.pem" -noout -text >"$T/ocsp.out"
has "OCSP Signing"
has "OCSP No Check"
has "CA:FALSE"
has "Subject: CN = Test Devices CA OCSP responder"
openssl verify -CAfile "$T/trust.pem" -purpose ocsphelper "$D/ca/devices/ocsp-signer.pem" \
  >/dev/null 2>&1 && pass || fail "the responder certificate verifies"
certtool -i --infile "$D/ca/devices/ocsp-signer.pem" >"$T/ocsp.out" 2>&1
has "OCSP signing"
# wait_signer yes|no: until 8 answers in a row (from either worker) are or are not signed by the
# delegate (SIGHUP reaches the workers one by one)
wait_signer() {
  local run=0
  for _ in $(seq 100); do
    ocsp "$T/c1.pem"
    if grep -q "OCSP responder" "$T/ocsp.out"; then
      [ "$1" = yes ] && run=$((run + 1)) || run=0
    else
      [ "$1" = no ] && run=$((run + 1)) || run=0
    fi
    [ $run -ge 8 ] && return 0
    sleep 0.1
  done
}
kill -HUP "$JPID"
wait_signer yes
has "Response verify OK"
has "$T/c1.pem: good"
has "OCSP Signing"
has "Subject: CN=Test Devices CA OCSP responder"
ocsp "$T/c2.pem" -verify_other "$D/ca/devices/ocsp-signer.pem"
has "Response verify OK"
has "$T/c2.pem: revoked"
# responses signed by the delegate verify only through the CA: a trust store without the
# devices CA refuses them
openssl ocsp -issuer "$T/issuer.pem" -cert "$T/c1.pem" -url "$OCSP" -CAfile "$T/srvca.pem" \
  >"$T/ocsp.out" 2>&1 || true
has "Response Verify Failure"
# a renewal replaces it; an expired delegate is not used (the CA key signs again)
ok "$JITRCTL" --config "$CFG" ca ocsp-signer devices --days 1
check_eq "renewal audited" "$(count_records ca_ocsp_signer)" 2
key_before=$(sha256sum <"$D/ca/devices/ocsp-signer.key")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/x.key" \
  -out "$T/x.pem" -subj /CN=x -days 1 2>/dev/null
cp "$T/x.pem" "$D/ca/devices/ocsp-signer.pem" # a certificate the CA did not issue
kill -HUP "$JPID"
wait_signer no
hasnt "OCSP Signing"
has "Response verify OK"
grep -q "delegated OCSP responder is not used" "$T/jitrd.log" && pass ||
  fail "jitrd says why it does not use the delegate"
check_eq "key untouched" "$(sha256sum <"$D/ca/devices/ocsp-signer.key")" "$key_before"

jitrd_stop
echo "jitrd_ocsp: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
