#!/usr/bin/env bash
# The CA lifetime (docs/operations.md, "Rotating the root", "Expiry"):
# - jitrctl ca cross-sign NEW --by OLD: refusals (itself, unknown, no --by, a pathlen that leaves
#   no room, a compromised CA) write nothing; the cross certificate has NEW's subject, key and
#   SKI, OLD as issuer, the earlier notAfter; it is audited (ca_cross_sign) and recorded; a
#   device certificate of a CA under NEW, with the chain jitrctl hands out, verifies against OLD
#   alone (it did not before) and against NEW alone; --no-chain leaves the chain as it was;
# - the validity clamp: a profile whose validity outlives the CA is issued with the CA's notAfter,
#   with a warning on stderr, "validity_clamped" in --json and in the audit record; a profile
#   with "beyond_ca": "refuse" is refused (exit 3) and writes no certificate.
source "$(dirname "$0")/lib.sh"
pem_field() { openssl x509 -noout "$@" 2>/dev/null; }
mkdir -p "$T/profiles"
cp "$JITRCA_SOURCE_DIR/policies/profiles/device.json" "$T/profiles/"
jq '.beyond_ca = "refuse"' "$T/profiles/device.json" >"$T/profiles/strict.json"
jq '.validity_days = 365' "$T/profiles/device.json" >"$T/profiles/year.json"
echo "{\"profiles_dir\": \"$T/profiles\"}" >"$T/cfg.json"
J() { "$JITRCTL" --config "$T/cfg.json" "$@"; }

ok J ca init root-1 --subject "/CN=Old Root/O=Acme" --pathlen 2 --days 3650
ok J ca init dev-1 --parent root-1 --subject "/CN=Devices 1/O=Acme"
ok J ca init root-2 --subject "/CN=New Root/O=Acme" --days 7300
ok J ca init dev-2 --parent root-2 --subject "/CN=Devices 2/O=Acme"
ok J ca init root-0 --subject "/CN=Short Root/O=Acme" --days 3650
D=$JITRCA_DATA_DIR/ca
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/d.key" \
  -out "$T/d.csr" -subj /CN=device-1 2>/dev/null

# ---- cross-sign: refusals write nothing
expect_fail 2 "cannot cross-sign itself" J ca cross-sign root-2 --by root-2
expect_fail 4 "not found" J ca cross-sign root-2 --by nosuch
expect_fail 2 "usage" J ca cross-sign root-2
expect_fail 5 "CA 'dev-1' has pathlen 0, too short" J ca cross-sign root-2 --by dev-1
expect_fail 5 "CA 'root-0' has pathlen 1, too short for chains through a cross-signed 'root-2' (they need at least 2)" \
  J ca cross-sign root-2 --by root-0
check_eq "nothing audited" "$(count_records ca_cross_sign)" 0
[ ! -e "$D/root-2/cross-root-1.pem" ] && pass || fail "a refusal wrote a file"

# ---- before: a device of dev-2 does not verify against the old root
ok J sign --ca dev-2 --profile year --csr "$T/d.csr" --chain --out "$T/before.pem"
split_chain() { # FILE: leaf.pem, rest.pem
  awk -v d="$T" '/BEGIN CERT/{n++} {print > (n == 1 ? d "/leaf.pem" : d "/rest.pem")}' "$1"
}
split_chain "$T/before.pem"
if openssl verify -CAfile "$D/root-1/cert.pem" -untrusted "$T/rest.pem" "$T/leaf.pem" >/dev/null 2>&1; then
  fail "verified against the old root before the cross-signing"
else pass; fi

# ---- cross-sign root-2 by root-1
ok J ca cross-sign root-2 --by root-1
grep -q "^CA 'root-2' cross-signed by CA 'root-1': serial [0-9a-f]*, valid until 20" "$T/out" && pass ||
  fail "output: $(cat "$T/out")"
grep -q "^chains of 'root-2' and the CAs under it now go through it to 'root-1'" "$T/out" && pass ||
  fail "output names the chain"
X=$D/root-2/cross-root-1.pem
check_eq "subject" "$(pem_field -in "$X" -subject)" "$(pem_field -in "$D/root-2/cert.pem" -subject)"
check_eq "issuer" "$(pem_field -in "$X" -issuer | sed 's/^issuer/subject/')" "$(pem_field -in "$D/root-1/cert.pem" -subject)"
check_eq "key" "$(pem_field -in "$X" -pubkey)" "$(pem_field -in "$D/root-2/cert.pem" -pubkey)"
check_eq "SKI" "$(pem_field -in "$X" -ext subjectKeyIdentifier)" "$(pem_field -in "$D/root-2/cert.pem" -ext subjectKeyIdentifier)"
check_eq "notAfter: the old root's" "$(pem_field -in "$X" -enddate)" "$(pem_field -in "$D/root-1/cert.pem" -enddate)"
openssl verify -CAfile "$D/root-1/cert.pem" "$X" >/dev/null 2>&1 && pass || fail "cross certificate verifies against the old root"
check_eq "audited" "$(count_records ca_cross_sign)" 1
check_eq "recorded" "$(jq -r '.cross_signed["root-1"].file + " " + .chain_via' "$D/root-2/ca.json")" "cross-root-1.pem root-1"
ok J --json ca show root-2
check_eq "ca show" "$(jq -r '.chain_via + " " + .cross_signed["root-1"].serial' "$T/out")" \
  "root-1 $(index_serial "$X")"

# ---- after: the chain handed out verifies against either root alone
ok J sign --ca dev-2 --profile year --csr "$T/d.csr" --chain --out "$T/after.pem"
split_chain "$T/after.pem"
openssl verify -CAfile "$D/root-1/cert.pem" -untrusted "$T/rest.pem" "$T/leaf.pem" >/dev/null 2>&1 && pass ||
  fail "a device that trusts only the old root accepts the new chain"
openssl verify -CAfile "$D/root-2/cert.pem" -untrusted "$T/rest.pem" "$T/leaf.pem" >/dev/null 2>&1 && pass ||
  fail "a device that trusts only the new root accepts the new chain"
certtool --verify --load-ca-certificate "$D/root-1/cert.pem" --infile "$T/after.pem" >/dev/null 2>&1 && pass ||
  fail "certtool: the chain verifies against the old root"

# ---- --no-chain: the certificate only; --days shortens it
ok J ca init root-3 --subject "/CN=Newer Root/O=Acme" --days 7300
ok J ca cross-sign root-3 --by root-1 --days 30 --no-chain
check_eq "no chain_via" "$(jq -r '.chain_via // "none"' "$D/root-3/ca.json")" none
na=$(date -d "$(pem_field -in "$D/root-3/cross-root-1.pem" -enddate | cut -d= -f2)" +%s)
[ $((na - $(date +%s))) -le $((30 * 86400)) ] && pass || fail "--days 30"
ok J ca mark-compromised root-3 --yes
expect_fail 5 "is compromised" J ca cross-sign root-3 --by root-1

# ---- the validity clamp
ok J ca init short --parent root-1 --subject "/CN=Short Devices/O=Acme" --days 10
ok J --json sign --ca short --csr "$T/d.csr" --out "$T/short.json"
grep -q "warning: the certificate ends at .*, when CA 'short' does, before its profile's validity" "$T/err" && pass ||
  fail "clamp warning: $(cat "$T/err")"
check_eq "clamped in --json" "$(jq -r .validity_clamped "$T/short.json")" true
jq -r .certificate "$T/short.json" >"$T/short.pem"
check_eq "notAfter is the CA's" "$(pem_field -in "$T/short.pem" -enddate)" "$(pem_field -in "$D/short/cert.pem" -enddate)"
check_eq "clamp audited" "$(grep -c "\"validity\":\"clamped to the CA's notAfter\"" "$(audit_log)")" 1
ok J --json sign --ca dev-1 --profile year --csr "$T/d.csr" --out "$T/long.json"
[ ! -s "$T/err" ] || ! grep -q warning "$T/err" && pass || fail "a warning without a clamp: $(cat "$T/err")"
check_eq "not clamped" "$(jq -r '.validity_clamped // false' "$T/long.json")" false
issued=$(count_records issue)
expect_fail 3 "profile 'strict' issues for 3650 days but the CA certificate expires at" \
  J sign --ca short --profile strict --csr "$T/d.csr" --out "$T/x.pem"
check_eq "refused: nothing issued" "$(count_records issue)" "$issued"
finish
