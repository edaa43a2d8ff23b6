#!/usr/bin/env bash
# Every bad input gets a message naming the problem and a non-zero exit, the rejection is
# audited where it concerns a request, and no certificate is issued.
source "$(dirname "$0")/lib.sh"

ok "$JITRCTL" ca init dev --subject "/CN=Device CA"
good=$T/good; "$GENCSR" --count 1 --cn-prefix good- --out "$good"
G=$good/good-000001.csr

issued_before=$(count_records issue)
rejects_before=$(count_records reject)

# malformed, truncated, oversized
echo "not a csr" >"$T/garbage.csr"
expect_fail 2 "not valid PEM or DER" "$JITRCTL" sign --csr "$T/garbage.csr"
head -c 200 "$G" >"$T/trunc.csr"
expect_fail 2 "rejected" "$JITRCTL" sign --csr "$T/trunc.csr"
openssl req -in "$G" -outform DER -out "$T/good.der"
head -c 100 "$T/good.der" >"$T/trunc.der"
expect_fail 2 "rejected" "$JITRCTL" sign --csr "$T/trunc.der"
head -c 40000 /dev/urandom | base64 >"$T/huge.csr"
expect_fail 2 "the limit is 16384" "$JITRCTL" sign --csr "$T/huge.csr"
# a CSR whose signature does not verify: flip a byte of the signature
python3 - "$T/good.der" "$T/badsig.der" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read()); d[-5] ^= 0x01
open(sys.argv[2], 'wb').write(d)
PY
expect_fail 2 "CSR signature does not verify" "$JITRCTL" sign --csr "$T/badsig.der"
# forbidden keys
"$GENCSR" --count 1 --type rsa-1024 --cn-prefix weak- --out "$T/rsa1024"
expect_fail 3 "rsa-1024" "$JITRCTL" sign --csr "$T/rsa1024/weak-000001.csr"
openssl ecparam -name prime192v1 -genkey -noout -out "$T/p192.key" 2>/dev/null
openssl req -new -key "$T/p192.key" -subj /CN=p192-device -out "$T/p192.csr" 2>/dev/null
expect_fail 3 "not allowed" "$JITRCTL" sign --csr "$T/p192.csr"
# a CN that breaks the profile
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k" \
  -subj "/CN=bad name with spaces/" -out "$T/badcn.csr" 2>/dev/null
expect_fail 3 "CN" "$JITRCTL" sign --csr "$T/badcn.csr"
# CA:TRUE and other extensions requested
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k" \
  -subj "/CN=sneaky-ca" -addext "basicConstraints=critical,CA:TRUE" -out "$T/ca.csr" 2>/dev/null
expect_fail 3 "CA:TRUE" "$JITRCTL" sign --csr "$T/ca.csr"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k" \
  -subj "/CN=ext-device" -addext "keyUsage=keyCertSign" -out "$T/ku.csr" 2>/dev/null
expect_fail 3 "extension" "$JITRCTL" sign --csr "$T/ku.csr"
# unknown profile, unknown CA
expect_fail 2 "unknown profile 'nope'" "$JITRCTL" sign --csr "$G" --profile nope
expect_fail 4 "'ghost'" "$JITRCTL" sign --csr "$G" --ca ghost
# the rejections of requests are audited; nothing was issued
check_eq "issue records after bad CSRs" "$(count_records issue)" "$issued_before"
check_eq "reject records" "$(count_records reject)" $((rejects_before + 11))
check_eq "nothing indexed" "$(rcli --scan --pattern 'jitrca:cert:*' | wc -l)" 0

# wrong passphrase, no passphrase
JITRCA_KEY_PASSPHRASE=wrong-passphrase expect_fail 3 "wrong passphrase" "$JITRCTL" sign --csr "$G"
JITRCA_KEY_PASSPHRASE= expect_fail 2 "no passphrase given" "$JITRCTL" sign --csr "$G"
echo "correct horse battery staple" >"$T/pass"
chmod 600 "$T/pass"
JITRCA_KEY_PASSPHRASE= ok "$JITRCTL" sign --csr "$G" --passphrase-file "$T/pass" --out "$T/g.pem"
# a key file readable by others is refused
chmod 644 "$JITRCA_DATA_DIR/ca/dev/key.pem"
expect_fail 3 "accessible by group or others" "$JITRCTL" sign --csr "$G"
chmod 600 "$JITRCA_DATA_DIR/ca/dev/key.pem"
# Redis unreachable: a clear message, nothing issued
n=$(count_records issue)
JITRCA_REDIS_URL=redis://127.0.0.1:1/0 expect_fail 6 "redis at redis://127.0.0.1:1/0" \
  "$JITRCTL" sign --csr "$G"
check_eq "nothing issued without redis" "$(count_records issue)" "$n"
# bad configuration
echo '{"data_dir": "/x", "colour": "blue"}' >"$T/bad.json"
expect_fail 2 "unknown key 'colour'" "$JITRCTL" --config "$T/bad.json" ca list
echo '{"sign_threads": "many"}' >"$T/bad2.json"
expect_fail 2 "'sign_threads' must be an integer" "$JITRCTL" --config "$T/bad2.json" ca list
expect_fail 4 "not found" "$JITRCTL" --config "$T/missing.json" ca list
# bad command lines
expect_fail 2 "unknown command" "$JITRCTL" frobnicate
expect_fail 2 "unknown option '--bogus'" "$JITRCTL" sign --bogus
expect_fail 2 "option '--csr' needs a value" "$JITRCTL" sign --csr
expect_fail 2 "unknown key type" "$JITRCTL" ca init x --key-type rsa-1024
expect_fail 5 "exists" "$JITRCTL" ca init dev
expect_fail 2 "ca init takes one NAME" "$JITRCTL" ca init
ok "$JITRCTL" sign --help
ok "$JITRCTL" audit verify
finish
