#!/usr/bin/env bash
# The same story with the CA keys in an HSM (SoftHSM2, a private token per run): a root and an
# issuing CA generated in the token, device certificates signed one by one and in a
# multi-threaded batch, all verified by openssl and GnuTLS; the keys are not extractable; a wrong
# PIN and a taken object label are refused with clear messages and nothing is issued.
source "$(dirname "$0")/lib.sh"
export SOFTHSM2_CONF
SOFTHSM2_CONF=$("$JITRCA_SOURCE_DIR/tests/harness/softhsm-fixture.sh" init "$T/hsm" factory 12345678 87654321)
export JITRCA_PKCS11_PIN=87654321
unset JITRCA_KEY_PASSPHRASE

ok "$JITRCTL" ca init hsm-root --key "pkcs11:token=factory;object=root" --subject "/CN=HSM Root"
ok "$JITRCTL" ca init hsm-dev --key "pkcs11:token=factory;object=dev" --key-type ec-p384 \
  --parent hsm-root --subject "/CN=HSM Device CA"
ok "$JITRCTL" --json ca show hsm-dev
check_eq "key uri" "$(jq -r .key_uri "$T/out")" "pkcs11:token=factory;object=dev"
cat "$JITRCA_DATA_DIR/ca/hsm-dev/cert.pem" "$JITRCA_DATA_DIR/ca/hsm-root/cert.pem" >"$T/chain.pem"
[ ! -e "$JITRCA_DATA_DIR/ca/hsm-dev/key.pem" ] && pass || fail "no key file for an HSM key"
pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label factory --login \
  --pin 87654321 --list-objects --type privkey >"$T/objs" 2>&1
grep -q "never extractable" "$T/objs" && pass || { fail "token keys are not extractable"; cat "$T/objs" >&2; }

"$GENCSR" --count 1 --cn-prefix hsm- --out "$T/one"
ok "$JITRCTL" sign --csr "$T/one/hsm-000001.csr" --ca hsm-dev --out "$T/one.pem"
verify_cert "$T/one.pem" "$T/chain.pem"
check_eq "signature algorithm" \
  "$(openssl x509 -in "$T/one.pem" -noout -text | grep -m1 'Signature Algorithm' | awk '{print $3}')" \
  ecdsa-with-SHA384

"$GENCSR" --count 300 --cn-prefix hsmb- --out "$T/b.jsonl"
ok "$JITRCTL" sign-batch --in "$T/b.jsonl" --out "$T/b.out.jsonl" --ca hsm-dev --threads 2 --quiet
check_eq "batch signed" "$(jq -r .certificate "$T/b.out.jsonl" | grep -c 'BEGIN CERTIFICATE')" 300
sed -n 150p "$T/b.out.jsonl" | jq -r .certificate >"$T/b150.pem"
verify_cert "$T/b150.pem" "$T/chain.pem"

n=$(count_records issue)
JITRCA_PKCS11_PIN=11111111 expect_fail 3 "PIN" "$JITRCTL" sign --csr "$T/one/hsm-000001.csr" --ca hsm-dev
check_eq "nothing issued by failed HSM signs" "$(count_records issue)" "$n"
expect_fail 5 "already has an object labelled 'dev'" "$JITRCTL" ca init dup --key "pkcs11:token=factory;object=dev"
ok "$JITRCTL" audit verify
finish
