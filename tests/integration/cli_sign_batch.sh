#!/usr/bin/env bash
# sign-batch: a directory and a JSON-lines file of CSRs, bad ones among them; every good CSR is
# signed, every bad one reported, the batch goes on. Usage: cli_sign_batch.sh [COUNT]
source "$(dirname "$0")/lib.sh"
count=${1:-1000}

ok "$JITRCTL" ca init batch --subject "/CN=Batch CA"
"$JITRCTL" ca show batch >/dev/null
openssl x509 -in "$JITRCA_DATA_DIR/ca/batch/cert.pem" -out "$T/chain.pem"

# directory in, directory out
"$GENCSR" --count 300 --cn-prefix d- --out "$T/in"
echo garbage >"$T/in/zz-garbage.csr"
"$GENCSR" --count 1 --type rsa-1024 --cn-prefix zz-weak- --out "$T/in"
expect_fail 2 "2 of 302 CSRs were rejected" "$JITRCTL" sign-batch --in "$T/in" --out "$T/certs" --threads 2
grep -q "^zz-garbage: rejected" "$T/err" && pass || fail "garbage CSR reported"
grep -q "^zz-weak-000001: rejected: .*rsa-1024" "$T/err" && pass || fail "weak CSR reported"
check_eq "certificates written" "$(ls "$T/certs" | wc -l)" 300
verify_cert "$T/certs/d-000001.crt" "$T/chain.pem"
verify_cert "$T/certs/d-000300.crt" "$T/chain.pem"
check_eq "subject" "$(openssl x509 -in "$T/certs/d-000150.crt" -noout -subject)" "subject=CN = d-000150"

# JSON lines in, JSON lines out, in order, with bad lines
"$GENCSR" --count 50 --cn-prefix j- --out "$T/j.jsonl"
{ head -n 10 "$T/j.jsonl"; echo '{not json'; echo '{"id":"nocsr"}';
  echo '{"id":"prof","csr":"x","profile":"nope"}'; tail -n 40 "$T/j.jsonl"; } >"$T/mixed.jsonl"
expect_fail 2 "3 of 53 CSRs were rejected" "$JITRCTL" sign-batch --in "$T/mixed.jsonl" --out "$T/mixed.out.jsonl"
check_eq "output lines" "$(wc -l <"$T/mixed.out.jsonl")" 53
check_eq "order kept" "$(jq -r .id "$T/mixed.out.jsonl" | sed -n '11p;12p;13p;14p' | tr '\n' ' ')" \
  "line-11 nocsr prof j-000011 "
check_eq "bad JSON reported" "$(sed -n 11p "$T/mixed.out.jsonl" | jq -r .error.message)" \
  "line 11 is not JSON: string or '}' expected near 'not'"
check_eq "missing csr reported" "$(sed -n 12p "$T/mixed.out.jsonl" | jq -r .error.message)" \
  'line 12 has no string "csr"'
sed -n 14p "$T/mixed.out.jsonl" | jq -r .certificate >"$T/j11.pem"
verify_cert "$T/j11.pem" "$T/chain.pem"

# the big batch: no duplicate serial, none negative, none over 20 octets, all indexed
before=$(rcli --scan --pattern 'jitrca:cert:*' | wc -l)
"$GENCSR" --count "$count" --cn-prefix big- --out "$T/big.jsonl"
start=$(date +%s%N)
ok "$JITRCTL" --json sign-batch --in "$T/big.jsonl" --out "$T/big.out.jsonl"
end=$(date +%s%N)
echo "sign-batch of $count CSRs: $(( (end - start) / 1000000 )) ms wall; $(cat "$T/out")"
jq -r .serial "$T/big.out.jsonl" >"$T/serials"
check_eq "serials" "$(wc -l <"$T/serials")" "$count"
check_eq "duplicate serials" "$(sort "$T/serials" | uniq -d | wc -l)" 0
check_eq "negative serials" "$(grep -c '^[89a-f]' "$T/serials" || true)" 0
check_eq "serials over 20 octets" "$(awk 'length($0) > 40' "$T/serials" | wc -l)" 0
check_eq "serials under 64 bits" "$(awk 'length($0) < 16' "$T/serials" | wc -l)" 0
check_eq "indexed" "$(rcli --scan --pattern 'jitrca:cert:*' | wc -l)" $((before + count))
ok "$JITRCTL" audit verify
finish
