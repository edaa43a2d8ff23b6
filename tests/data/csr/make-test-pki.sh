#!/bin/sh
# Builds the test PKI of tests/unit/ca/test_issue.c in DIR (a fresh temporary directory): CA keys
# and certificates (P-256, P-384, RSA-2048, a short-lived P-256, a non-CA), device keys and the
# good and bad CSRs the tests feed to ca_prepare. Everything is made with the openssl CLI.
set -eu
cd "$1"

cat > req.cnf <<'CNF'
[req]
distinguished_name = dn
string_mask = utf8only
prompt = no
[dn]
CN = unused
[v3ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
CNF
# string_mask default: non-ASCII values become BMPString or T61String
sed 's/string_mask = utf8only/string_mask = default/' req.cnf > req-default.cnf
printf '[req]\ndistinguished_name = dn\nprompt = no\nattributes = attrs\n[dn]\nCN = device-0001\n[attrs]\nchallengePassword = secret1234\n' > req-chpw.cnf

key() { # name algorithm-options...
    name=$1
    shift
    openssl genpkey "$@" -out "$name.key" 2>/dev/null
}
key ca-p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key ca-p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
key ca-rsa -algorithm RSA -pkeyopt rsa_keygen_bits:2048
for ca in p256 p384 rsa; do
    openssl req -config req.cnf -new -x509 -key ca-$ca.key -days 3650 -sha256 \
        -subj "/O=jitrca test/CN=Test $ca Issuing CA" -extensions v3ca -out ca-$ca.pem
done
openssl req -config req.cnf -new -x509 -key ca-p256.key -days 30 -sha256 \
    -subj "/O=jitrca test/CN=Short CA" -extensions v3ca -out ca-short.pem
openssl req -config req.cnf -new -x509 -key ca-p256.key -days 15000 -sha256 \
    -subj "/O=jitrca test/CN=Long CA" -extensions v3ca -out ca-long.pem
openssl req -config req.cnf -new -x509 -key ca-p256.key -days 30 -sha256 \
    -subj "/CN=Not a CA" -extensions leaf -out notca.pem

key dev-p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key dev-p256b -algorithm EC -pkeyopt ec_paramgen_curve:P-256
key dev-p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
key dev-p521 -algorithm EC -pkeyopt ec_paramgen_curve:P-521
key dev-p192 -algorithm EC -pkeyopt ec_paramgen_curve:P-192
key dev-rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key dev-rsa1024 -algorithm RSA -pkeyopt rsa_keygen_bits:1024
key dev-ed25519 -algorithm ED25519
key dev-rsa-e3 -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -pkeyopt rsa_keygen_pubexp:3
openssl ec -in dev-p256.key -conv_form compressed -out dev-p256c.key 2>/dev/null
openssl ec -in dev-p256.key -param_enc explicit -out dev-p256x.key 2>/dev/null

csr() { # out key subject [extra req options...]
    out=$1 k=$2 subj=$3
    shift 3
    openssl req -config req.cnf -new -key "$k.key" -subj "$subj" "$@" -out "$out.csr"
    openssl req -in "$out.csr" -outform DER -out "$out.der"
}
D=/O=Acme/CN=device-0001
csr p256 dev-p256 "$D" -sha256
csr p256b dev-p256b "/CN=device-0002" -sha256
csr p384 dev-p384 "$D" -sha384
csr rsa2048 dev-rsa2048 "$D" -sha256
csr rsa1024 dev-rsa1024 "$D" -sha256
csr p192 dev-p192 "$D" -sha256
csr p521 dev-p521 "$D" -sha512
csr ed25519 dev-ed25519 "$D"
csr rsa-e3 dev-rsa-e3 "$D" -sha256
csr p256c dev-p256c "$D" -sha256
csr p256x dev-p256x "$D" -sha256
csr p256-sha384 dev-p256 "$D" -sha384
csr sha1 dev-rsa2048 "$D" -sha1
csr cn-space dev-p256 "/CN=x y" -sha256
csr email dev-p256 "/CN=device-0002/emailAddress=a@example.com" -sha256
csr nocn dev-p256 "/O=Acme" -sha256
csr title dev-p256 "/CN=device-0003/title=boss" -sha256
csr multi dev-p256 "/CN=device-0004+O=Acme" -multivalue-rdn -sha256
csr country dev-p256 "/C=de/CN=device-0005" -sha256
csr utf8 dev-p256 "/C=DE/O=Gerätebau Süd/OU=Line 1/OU=Line 2/CN=device-0006" -utf8 -sha256
openssl req -config req-default.cnf -new -key dev-p256.key -utf8 \
    -subj "/O=Gerätebau/CN=device-0007" -out bmp.csr
openssl req -in bmp.csr -outform DER -out bmp.der
csr ca-true dev-p256 "$D" -addext "basicConstraints=critical,CA:TRUE"
csr ca-false dev-p256 "$D" -addext "basicConstraints=critical,CA:FALSE"
csr ku dev-p256 "$D" -addext "keyUsage=critical,digitalSignature"
csr san-dns dev-p256 "$D" -addext "subjectAltName=DNS:dev1.example.com,DNS:dev2.example.com"
csr san-bad dev-p256 "$D" -addext "subjectAltName=DNS:evil.example.org"
csr san-email dev-p256 "$D" -addext "subjectAltName=email:ops@example.com"
csr san-ip dev-p256 "$D" -addext "subjectAltName=IP:10.0.0.1"
csr san-dir dev-p256 "$D" -addext "subjectAltName=dirName:dn"
csr san-rsa dev-rsa2048 "$D" -addext "subjectAltName=DNS:dev1.example.com"
openssl req -config req-chpw.cnf -new -key dev-p256.key -out chpw.csr
openssl req -in chpw.csr -outform DER -out chpw.der
sed 's/CERTIFICATE REQUEST/NEW CERTIFICATE REQUEST/' p256.csr > p256-new.csr
