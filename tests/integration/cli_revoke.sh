#!/usr/bin/env bash
# Revocation and CRLs through jitrctl: certificates revoked with reasons are listed by a CRL
# that openssl verifies against the CA and that makes 'openssl verify -crl_check' refuse them
# (and only them); bad input changes nothing; a second revocation is idempotent; the audit log
# stays intact; FLUSHALL + reindex restores the revocations and the CRL numbering never goes
# back; a CRL that would drop a published serial is refused; a retired CA still revokes; the
# schedule (crl --refresh) regenerates only what is due; the same with the CA key in SoftHSM2.
source "$(dirname "$0")/lib.sh"

D=$JITRCA_DATA_DIR
# crl_number FILE: the decimal CRL number of a PEM CRL
crl_number() {
  local h; h=$(openssl crl -in "$1" -noout -crlnumber | sed 's/^crlNumber=//; s/^0x//')
  echo $((16#$h))
}
# crl_serials FILE: the serials a PEM CRL lists, lowercase, without a 00 sign octet, sorted
crl_serials() {
  openssl crl -in "$1" -noout -text | awk '/Serial Number:/ {print tolower($3)}' | sort
}
nolead() { sed 's/^00//'; }
# crl_reason FILE SERIAL: the reason text of SERIAL's entry ("" when it has none)
crl_reason() {
  openssl crl -in "$1" -noout -text | awk -v s="$(echo "$2" | nolead | tr a-f A-F)" '
    /Serial Number:/ { cur = ($3 == s) ; next }
    cur && /CRL Reason Code/ { getline; gsub(/^ +| +$/, ""); print; exit }
    /Serial Number:|Signature Algorithm/ { cur = 0 }'
}
field() { jq -r ".$1" "$T/out"; }

ok "$JITRCTL" ca init root --key-type rsa-2048 --subject "/CN=Revocation Root/O=Acme"
ok "$JITRCTL" ca init dev --parent root --subject "/CN=Revocation Devices CA/O=Acme"
ok "$JITRCTL" ca retire root
cat "$D/ca/dev/cert.pem" "$D/ca/root/cert.pem" >"$T/chain.pem"

"$GENCSR" --count 6 --cn-prefix rv- --out "$T/csr"
declare -A SERIAL ID
for i in 1 2 3 4 5 6; do
  ok "$JITRCTL" --json sign --csr "$T/csr/rv-00000$i.csr"
  jq -r .certificate "$T/out" >"$T/c$i.pem"
  SERIAL[$i]=$(field serial)
  ID[$i]=$(field certificateId)
done
verify_cert "$T/c1.pem" "$T/chain.pem"

# a CRL before any revocation: empty, v2, number 1, verified by openssl
ok "$JITRCTL" crl --ca dev --out "$T/crl0.pem"
check_eq "first CRL number" "$(crl_number "$T/crl0.pem")" 1
cmp -s "$T/crl0.pem" "$D/ca/dev/crl.pem" && pass || fail "--out differs from the published CRL"
openssl crl -in "$T/crl0.pem" -noout -text >"$T/crl0.txt"
grep -q "Version 2 (0x1)" "$T/crl0.txt" && pass || fail "CRL is not v2"
grep -q "No Revoked Certificates" "$T/crl0.txt" && pass || fail "first CRL is not empty"
ok openssl crl -in "$D/ca/dev/crl.pem" -CAfile "$T/chain.pem" -noout -verify
grep -q "verify OK" "$T/err" && pass || fail "openssl crl -verify: $(cat "$T/err")"
openssl crl -in "$D/ca/dev/crl.der" -inform DER -noout -crlnumber >/dev/null 2>&1 && pass ||
  fail "crl.der is not a DER CRL"
# the root (RSA, retired) has its own CRL, signed sha256WithRSAEncryption
ok "$JITRCTL" crl --ca root --der --out "$T/root.der"
openssl crl -in "$T/root.der" -inform DER -noout -text | grep -q "sha256WithRSAEncryption" &&
  pass || fail "root CRL signature algorithm"
ok openssl crl -in "$D/ca/root/crl.pem" -CAfile "$D/ca/root/cert.pem" -noout -verify

# revoke one with a reason
n0=$(count_records revoke)
ok "$JITRCTL" revoke "${SERIAL[1]}" --reason keyCompromise
grep -q "revoked serial ${SERIAL[1]} of CA dev (keyCompromise)" "$T/out" && pass ||
  fail "revoke output: $(cat "$T/out")"
check_eq "one revoke record" "$(count_records revoke)" $((n0 + 1))
check_eq "CRL number after the first revocation" "$(crl_number "$D/ca/dev/crl.pem")" 2
ok openssl crl -in "$D/ca/dev/crl.pem" -CAfile "$T/chain.pem" -noout -verify
grep -q "verify OK" "$T/err" && pass || fail "openssl crl -verify after revoke"
check_eq "CRL lists the revoked serial" "$(crl_serials "$D/ca/dev/crl.pem")" \
  "$(echo "${SERIAL[1]}" | nolead)"
check_eq "reason in the CRL" "$(crl_reason "$D/ca/dev/crl.pem" "${SERIAL[1]}")" "Key Compromise"
openssl crl -in "$D/ca/dev/crl.pem" -noout -text >"$T/crl1.txt"
grep -q "X509v3 Authority Key Identifier" "$T/crl1.txt" && pass || fail "CRL without AKI"
ski=$(openssl x509 -in "$D/ca/dev/cert.pem" -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' ')
grep -A1 "Authority Key Identifier" "$T/crl1.txt" | tail -1 | tr -d ' ' | grep -qF "$ski" && pass ||
  fail "CRL AKI is not the CA's SKI ($ski)"
grep -q "ecdsa-with-SHA256" "$T/crl1.txt" && pass || fail "CRL signature algorithm"
# openssl verify with the CRL: the revoked one fails, another passes
if openssl verify -crl_check -CRLfile "$D/ca/dev/crl.pem" -CAfile "$T/chain.pem" "$T/c1.pem" \
  >"$T/v.out" 2>&1; then fail "revoked certificate verifies"; else
  grep -q "certificate revoked" "$T/v.out" && pass || fail "verify message: $(cat "$T/v.out")"; fi
ok openssl verify -crl_check -CRLfile "$D/ca/dev/crl.pem" -CAfile "$T/chain.pem" "$T/c2.pem"
# the index says so
ok "$JITRCTL" --json cert show "${SERIAL[1]}"
check_eq "status" "$(field status)" revoked
check_eq "reason" "$(field reason)" keyCompromise
revoked_at1=$(field revoked_at)
[[ $revoked_at1 =~ ^20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:]{8}Z$ ]] && pass ||
  fail "revoked_at '$revoked_at1'"
ok "$JITRCTL" cert show "${SERIAL[1]}"
grep -q "^status *revoked" "$T/out" && pass || fail "cert show text: $(cat "$T/out")"
# a serial as openssl prints it (upper case, no sign octet) or with ':' and leading zeros
ok "$JITRCTL" --json cert show "$(openssl x509 -in "$T/c1.pem" -noout -serial | cut -d= -f2)"
check_eq "cert show: the serial as openssl prints it" "$(field serial)" "${SERIAL[1]}"
ok "$JITRCTL" --json cert show "00:$(echo "${SERIAL[1]}" | tr a-f A-F | sed 's/../&:/g; s/:$//')"
check_eq "cert show: upper case, ':' and a leading zero octet" "$(field serial)" "${SERIAL[1]}"
expect_fail 2 "is neither a hex serial nor a certificateId" "$JITRCTL" cert show "xyz"
ok "$JITRCTL" --json cert show "${SERIAL[2]}"
check_eq "another stays valid" "$(field status)" valid

# bad input: a message, the right exit status, nothing written
n1=$(count_records revoke); c1=$(count_records crl); cp "$D/ca/dev/crl.pem" "$T/before.pem"
expect_fail 4 "no certificate with serial 7a7a7a" "$JITRCTL" revoke 7a7a7a
expect_fail 4 "no certificate with fingerprint" "$JITRCTL" revoke "$(printf 'ab%.0s' {1..32})"
expect_fail 2 "unknown reason 'stolen'" "$JITRCTL" revoke "${SERIAL[2]}" --reason stolen
expect_fail 2 "removeFromCRL' is not supported" "$JITRCTL" revoke "${SERIAL[2]}" --reason removeFromCRL
expect_fail 2 "was issued by CA 'dev', not 'root'" "$JITRCTL" revoke "${SERIAL[2]}" --ca root
expect_fail 2 "is not a hex serial" "$JITRCTL" revoke "xyz-12"
expect_fail 2 "is zero" "$JITRCTL" revoke 0000
expect_fail 2 "longer than 20 octets" "$JITRCTL" revoke "$(printf '7f%.0s' {1..21})"
expect_fail 2 "usage: jitrctl revoke" "$JITRCTL" revoke
expect_fail 2 "usage: jitrctl revoke" "$JITRCTL" revoke a b
JITRCA_KEY_PASSPHRASE=wrong-passphrase expect_fail 3 "nothing revoked" "$JITRCTL" revoke "${SERIAL[2]}"
JITRCA_REDIS_URL=unix://$T/no.sock expect_fail 6 "unreachable" "$JITRCTL" revoke "${SERIAL[2]}"
check_eq "no revoke record from bad input" "$(count_records revoke)" "$n1"
check_eq "no crl record from bad input" "$(count_records crl)" "$c1"
cmp -s "$T/before.pem" "$D/ca/dev/crl.pem" && pass || fail "bad input changed the CRL"
ok "$JITRCTL" --json cert show "${SERIAL[2]}"
check_eq "still valid after refused revocations" "$(field status)" valid

# twice: idempotent, no second record, no new CRL
ok "$JITRCTL" revoke "${SERIAL[1]}" --reason superseded
grep -q "already revoked at $revoked_at1 (keyCompromise); nothing changed" "$T/out" && pass ||
  fail "second revoke output: $(cat "$T/out")"
check_eq "no second record" "$(count_records revoke)" "$n1"
cmp -s "$T/before.pem" "$D/ca/dev/crl.pem" && pass || fail "second revoke changed the CRL"
ok "$JITRCTL" --json revoke "${SERIAL[1]}"
check_eq "json already_revoked" "$(field already_revoked)" true

# by certificateId, reason unspecified (no reasonCode in the entry); by 'openssl x509 -serial'
ok "$JITRCTL" --json revoke "${ID[2]}"
check_eq "revoked by certificateId" "$(field serial)" "${SERIAL[2]}"
check_eq "unspecified" "$(field reason)" unspecified
n2=$(field crl_number)
check_eq "CRL number increases" "$n2" 3
check_eq "no reasonCode for unspecified" "$(crl_reason "$D/ca/dev/crl.pem" "${SERIAL[2]}")" ""
s3=$(openssl x509 -in "$T/c3.pem" -noout -serial | sed 's/^serial=//')
ok "$JITRCTL" --json revoke "$s3" --reason SUPERSEDED
check_eq "revoked by openssl's serial" "$(field serial)" "${SERIAL[3]}"
check_eq "reason names are case-insensitive" "$(field reason)" superseded
check_eq "CRL number increases again" "$(field crl_number)" 4
check_eq "reason superseded in the CRL" "$(crl_reason "$D/ca/dev/crl.pem" "${SERIAL[3]}")" "Superseded"
ok openssl crl -in "$D/ca/dev/crl.pem" -CAfile "$T/chain.pem" -noout -verify
printf '%s\n' "${SERIAL[1]}" "${SERIAL[2]}" "${SERIAL[3]}" | nolead | sort >"$T/want"
crl_serials "$D/ca/dev/crl.pem" >"$T/got"
diff -u "$T/want" "$T/got" >/dev/null && pass || fail "CRL serials: $(cat "$T/got")"
for i in 2 3; do
  if openssl verify -crl_check -CRLfile "$D/ca/dev/crl.pem" -CAfile "$T/chain.pem" "$T/c$i.pem" \
    >/dev/null 2>&1; then fail "revoked c$i verifies"; else pass; fi
done
ok openssl verify -crl_check -CRLfile "$D/ca/dev/crl.pem" -CAfile "$T/chain.pem" "$T/c4.pem"

# the audit record
tail -n 20 "$(audit_log)" | grep '"type":"revoke"' | tail -1 >"$T/rec"
check_eq "record serial" "$(jq -r .serial "$T/rec")" "${SERIAL[3]}"
check_eq "record fingerprint" "$(jq -r .fingerprint "$T/rec")" "${ID[3]}"
check_eq "record ca" "$(jq -r .ca "$T/rec")" dev
check_eq "record reason" "$(jq -r .reason "$T/rec")" superseded
jq -r .requester "$T/rec" | grep -q '^cli:' && pass || fail "record requester"
jq -e '.revoked_at | test("Z$")' "$T/rec" >/dev/null && pass || fail "record revoked_at"
ok "$JITRCTL" audit verify

# a retired CA's certificates can still be revoked
ok "$JITRCTL" ca retire dev
ok "$JITRCTL" revoke "${SERIAL[4]}" --reason cessationOfOperation
check_eq "CRL of the retired CA" "$(crl_number "$D/ca/dev/crl.pem")" 5
ok "$JITRCTL" ca activate dev

# FLUSHALL + reindex: the revocations are back, the CRL has the same serials, the number goes on
crl_serials "$D/ca/dev/crl.pem" >"$T/set-before"
ok "$JITRCTL" --json cert show "${SERIAL[1]}"
jq -S 'del(.der)' "$T/out" >"$T/show-before"
rcli FLUSHALL >/dev/null
# an index that claims to be complete but lost revocations: a new CRL would un-revoke, so it
# is refused and nothing published
rcli HSET jitrca:index:ready gen forged >/dev/null
cp "$D/ca/dev/crl.pem" "$T/published.pem"
expect_fail 5 "run 'jitrctl reindex' first" "$JITRCTL" crl --ca dev
cmp -s "$T/published.pem" "$D/ca/dev/crl.pem" && pass || fail "refused CRL was published"
# an incomplete index (no index:ready) is rebuilt by the command that needs it
rcli FLUSHALL >/dev/null
ok "$JITRCTL" --json cert show "${SERIAL[1]}"
grep -q "the index was incomplete" "$T/err" && pass || fail "cert show did not say it rebuilt: $(cat "$T/err")"
check_eq "status after the automatic rebuild" "$(field status)" revoked
rcli FLUSHALL >/dev/null   # also forgets the number the refused attempt drew
ok "$JITRCTL" reindex
grep -q "^4 revoked" "$T/out" && pass || fail "reindex output: $(cat "$T/out")"
# no jitrd ran the job engine here: none of the 4 revocations has an AWS outcome in the log
grep -q "^AWS IoT: 4 revocations, holds and releases queued (no AWS outcome in the audit log), 0 already there" \
  "$T/out" && pass || fail "reindex output, AWS jobs: $(cat "$T/out")"
check_eq "CRL number restored from the audit log" "$(rcli GET jitrca:crl:dev:number)" 5
ok "$JITRCTL" --json cert show "${SERIAL[1]}"
jq -S 'del(.der)' "$T/out" >"$T/show-after"
diff -u "$T/show-before" "$T/show-after" >"$T/diff" && pass ||
  { fail "revoked record differs after reindex"; cat "$T/diff" >&2; }
ok "$JITRCTL" crl --ca dev --out "$T/after.pem"
check_eq "CRL number after reindex" "$(crl_number "$T/after.pem")" 6
crl_serials "$T/after.pem" >"$T/set-after"
diff -u "$T/set-before" "$T/set-after" >/dev/null && pass || fail "CRL set differs after reindex"
check_eq "reason survives reindex" "$(crl_reason "$T/after.pem" "${SERIAL[1]}")" "Key Compromise"
# a lost Redis with the CRL file still on disk: the number continues from the file
rcli FLUSHALL >/dev/null
ok "$JITRCTL" reindex
rcli DEL jitrca:crl:dev:number >/dev/null
ok "$JITRCTL" crl --ca dev --out "$T/after2.pem"
check_eq "CRL number from the file on disk" "$(crl_number "$T/after2.pem")" 7
# reindex twice is the same
ok "$JITRCTL" reindex
ok "$JITRCTL" --json cert show "${SERIAL[4]}"
check_eq "status after a second reindex" "$(field status)" revoked
check_eq "reason after a second reindex" "$(field reason)" cessationOfOperation

# the schedule: nothing is due right after publishing; an old CRL on disk is due and replaced,
# numbered after it
ok "$JITRCTL" crl --refresh
grep -q "^0 CRLs regenerated" "$T/out" && pass || fail "refresh output: $(cat "$T/out")"
mkdir -p "$T/ossl"; : >"$T/ossl/index.txt"; echo 1000 >"$T/ossl/crlnumber"
cat >"$T/ossl/ca.cnf" <<EOF
[ca]
default_ca = x
[x]
database = $T/ossl/index.txt
crlnumber = $T/ossl/crlnumber
certificate = $D/ca/dev/cert.pem
private_key = $D/ca/dev/key.pem
default_md = sha256
EOF
for s in "${SERIAL[1]}" "${SERIAL[2]}" "${SERIAL[3]}" "${SERIAL[4]}"; do
  printf 'R\t491231235959Z\t240101000000Z\t%s\tunknown\t/CN=x\n' "$(echo "$s" | nolead | tr a-f A-F)" \
    >>"$T/ossl/index.txt"
done
ok openssl ca -config "$T/ossl/ca.cnf" -gencrl -crlsec 2 -passin env:JITRCA_KEY_PASSPHRASE \
  -out "$T/old.pem"
openssl crl -in "$T/old.pem" -outform DER -out "$D/ca/dev/crl.der"
cp "$T/old.pem" "$D/ca/dev/crl.pem"
sleep 2
ok "$JITRCTL" --json crl --refresh
check_eq "one CRL due" "$(field regenerated)" 1
check_eq "numbered after the one on disk" "$(crl_number "$D/ca/dev/crl.pem")" $((16#1000 + 1))
check_eq "the due CRL's serials" "$(crl_serials "$D/ca/dev/crl.pem")" "$(cat "$T/set-before")"

# nextUpdate follows crl_validity_hours
echo '{"crl_validity_hours": 2}' >"$T/conf.json"
ok "$JITRCTL" --config "$T/conf.json" --json crl --ca dev
tu=$(date -d "$(field thisUpdate)" +%s); nu=$(date -d "$(field nextUpdate)" +%s)
check_eq "nextUpdate - thisUpdate" $((nu - tu)) 7200
ok "$JITRCTL" --json crl --ca dev
tu=$(date -d "$(field thisUpdate)" +%s); nu=$(date -d "$(field nextUpdate)" +%s)
check_eq "default validity (7 days)" $((nu - tu)) 604800
echo '{"crl_validity_hours": 0}' >"$T/bad.json"
expect_fail 2 "crl_validity_hours" "$JITRCTL" --config "$T/bad.json" crl --ca dev
expect_fail 2 "--refresh takes no" "$JITRCTL" crl --refresh --ca dev
expect_fail 4 "CA 'nosuch' not found" "$JITRCTL" crl --ca nosuch
ok "$JITRCTL" audit verify

# concurrent processes: one serial revoked by four at once gives one record; CRLs made at the
# same time are written in the order of their numbers, so the file is the newest and complete
n3=$(count_records revoke)
pids=()
for k in 1 2 3 4; do "$JITRCTL" revoke "${SERIAL[5]}" --reason keyCompromise >"$T/par$k" 2>&1 & pids+=($!); done
for k in 5 6; do "$JITRCTL" revoke "${SERIAL[6]}" >"$T/par$k" 2>&1 & pids+=($!); done
for k in 7 8; do "$JITRCTL" crl --ca dev --out "$T/par$k.pem" >/dev/null 2>"$T/par$k" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" && pass || fail "a concurrent command failed: $(cat "$T"/par*)"; done
check_eq "one record per serial revoked concurrently" "$(count_records revoke)" $((n3 + 2))
check_eq "revoked once, already revoked thrice" "$(cat "$T"/par[1-4] | grep -c 'already revoked')" 3
last=$(grep '"type":"crl","' "$(audit_log)" | jq -r 'select(.ca == "dev") | .number' | sort -n | tail -1)
check_eq "the published CRL is the newest" "$(crl_number "$D/ca/dev/crl.pem")" "$last"
check_eq "the published CRL lists all six" "$(crl_serials "$D/ca/dev/crl.pem" | wc -l)" 6
ok "$JITRCTL" audit verify

# the CA key in an HSM (SoftHSM2): a P-384 CA revokes and signs its CRL in the token
export SOFTHSM2_CONF
SOFTHSM2_CONF=$("$JITRCA_SOURCE_DIR/tests/harness/softhsm-fixture.sh" init "$T/hsm" rv 12345678 87654321)
export JITRCA_PKCS11_PIN=87654321
ok "$JITRCTL" ca activate root
ok "$JITRCTL" ca init hsm-dev --key "pkcs11:token=rv;object=dev" --key-type ec-p384 \
  --parent root --subject "/CN=HSM Devices CA"
ok "$JITRCTL" --json sign --csr "$T/csr/rv-000005.csr" --ca hsm-dev
jq -r .certificate "$T/out" >"$T/h.pem"
hs=$(field serial)
cat "$D/ca/hsm-dev/cert.pem" "$D/ca/root/cert.pem" >"$T/hchain.pem"
JITRCA_PKCS11_PIN=00000000 expect_fail 3 "nothing revoked" "$JITRCTL" revoke "$hs"
ok "$JITRCTL" revoke "$hs" --reason privilegeWithdrawn
ok openssl crl -in "$D/ca/hsm-dev/crl.pem" -CAfile "$T/hchain.pem" -noout -verify
grep -q "verify OK" "$T/err" && pass || fail "HSM CRL verify"
openssl crl -in "$D/ca/hsm-dev/crl.pem" -noout -text | grep -q "ecdsa-with-SHA384" && pass ||
  fail "HSM CRL signature algorithm"
check_eq "HSM CRL reason" "$(crl_reason "$D/ca/hsm-dev/crl.pem" "$hs")" "Privilege Withdrawn"
if openssl verify -crl_check -CRLfile "$D/ca/hsm-dev/crl.pem" -CAfile "$T/hchain.pem" "$T/h.pem" \
  >/dev/null 2>&1; then fail "HSM-revoked certificate verifies"; else pass; fi
ok "$JITRCTL" audit verify
finish
