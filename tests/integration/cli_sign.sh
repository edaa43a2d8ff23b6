#!/usr/bin/env bash
# The security team creates a root and an issuing intermediate; a station signs device CSRs of
# each key type with jitrctl sign; every certificate verifies with openssl and GnuTLS, works as a
# TLS client certificate, is audited and indexed.
source "$(dirname "$0")/lib.sh"

ok "$JITRCTL" ca init root --subject "/CN=Acme Root CA/O=Acme/C=DE" --days 3650
ok "$JITRCTL" ca init issuing --parent root --subject "/CN=Acme Device CA 1/O=Acme/C=DE"
ok "$JITRCTL" ca retire root
grep -q "is retired" "$T/out" && pass || fail "ca retire output"
ok "$JITRCTL" ca list
grep -q "^issuing .*active" "$T/out" && pass || fail "ca list shows issuing active"
ok "$JITRCTL" --json ca show issuing
check_eq "ca show parent" "$(jq -r .parent "$T/out")" root
check_eq "root children" "$("$JITRCTL" --json ca show root | jq -c .children)" '["issuing"]'

for type in ec-p256 ec-p384 rsa-2048; do
  "$GENCSR" --count 1 --type "$type" --cn-prefix "dev-$type-" --out "$T/csr-$type" --keys
  csr=$T/csr-$type/dev-$type-000001.csr
  ok "$JITRCTL" sign --csr "$csr" --chain --out "$T/$type.chain.pem"
  ok "$JITRCTL" sign --csr "$csr" --out "$T/$type.pem"
  openssl x509 -in "$T/$type.chain.pem" -out "$T/$type.leaf.pem"
  awk 'f;/END CERTIFICATE/{f=1}' "$T/$type.chain.pem" >"$T/chain-$type.pem"
  verify_cert "$T/$type.pem" "$T/chain-$type.pem"
  # the public key is the CSR's
  check_eq "$type public key" "$(openssl x509 -in "$T/$type.pem" -noout -pubkey | sha256sum)" \
    "$(openssl req -in "$csr" -noout -pubkey | sha256sum)"
done

# the extensions are the profile's
openssl x509 -in "$T/ec-p256.pem" -noout -text >"$T/text"
for want in "CA:FALSE" "Digital Signature" "TLS Web Client Authentication" \
            "X509v3 Subject Key Identifier" "X509v3 Authority Key Identifier" "ecdsa-with-SHA256"; do
  grep -q "$want" "$T/text" && pass || fail "certificate lacks '$want'"
done

# JSON output and the index
"$GENCSR" --count 1 --cn-prefix json- --out "$T/j"
ok "$JITRCTL" --json sign --csr "$T/j/json-000001.csr"
serial=$(jq -r .serial "$T/out"); certid=$(jq -r .certificateId "$T/out")
jq -r .certificate "$T/out" >"$T/j.pem"
check_eq "certificateId is SHA-256 of DER" "$certid" \
  "$(openssl x509 -in "$T/j.pem" -outform DER | sha256sum | cut -d' ' -f1)"
check_eq "serial" "$serial" "$(index_serial "$T/j.pem")"
ok "$JITRCTL" --json cert show "$certid"
check_eq "index by certificateId" "$(jq -r .serial "$T/out")" "$serial"
check_eq "index cn" "$(jq -r .cn "$T/out")" "json-000001"
check_eq "index ca" "$(jq -r .ca "$T/out")" "issuing"
ok "$JITRCTL" cert show "$serial" --pem
cmp -s <(openssl x509 -in "$T/out") <(openssl x509 -in "$T/j.pem") && pass ||
  fail "cert show --pem returns the certificate"
check_eq "redis cn set" "$(rcli SMEMBERS jitrca:cn:json-000001)" "$serial"

# a real TLS handshake with the certificate as client certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.pem" -subj /CN=localhost -days 1 2>/dev/null
handshake_ok=0
for attempt in 1 2 3; do   # a free port can be taken between the probe and the bind: retry
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  : >"$T/s_server.out"
  openssl s_server -accept "127.0.0.1:$port" -cert "$T/srv.pem" -key "$T/srv.key" \
    -Verify 2 -verify_return_error -CAfile "$T/chain-ec-p256.pem" -naccept 1 -www \
    >"$T/s_server.out" 2>&1 &
  spid=$!
  for _ in $(seq 50); do grep -q ACCEPT "$T/s_server.out" && break; kill -0 $spid 2>/dev/null || break; sleep 0.1; done
  grep -q ACCEPT "$T/s_server.out" || { wait $spid 2>/dev/null || true; continue; }
  if printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" \
      -cert "$T/ec-p256.pem" -key "$T/csr-ec-p256/dev-ec-p256-000001.key" \
      -CAfile "$T/srv.pem" -quiet >"$T/s_client.out" 2>&1 && grep -q "Client certificate" "$T/s_client.out"; then
    handshake_ok=1
  fi
  kill $spid 2>/dev/null || true; wait $spid 2>/dev/null || true
  break
done
if [ $handshake_ok = 1 ]; then pass; else
  fail "TLS handshake with the issued client certificate"; cat "$T/s_client.out" "$T/s_server.out" >&2
fi

# audit: one record per issuance, per CA operation; the chain is intact
check_eq "issue records" "$(count_records issue)" 7
check_eq "ca_init records" "$(count_records ca_init)" 2
check_eq "ca_retire records" "$(count_records ca_retire)" 1
ok "$JITRCTL" audit verify
finish
