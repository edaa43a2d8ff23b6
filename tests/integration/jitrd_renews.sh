#!/usr/bin/env bash
# POST /v1/sign with renews (docs/api.md): a station renews a certificate it may read (its own
# requests and their renewals by devices; an admin station any), valid and not renewed yet; the
# renewal keeps the CA, profile and subject. The new certificate's audit record and index entry
# say it renews the old one, the old one becomes superseded_by it; the 201 names it. Refused
# with a clear 4xx and nothing issued: an unknown serial, another station's certificate (a 404
# like an unknown one), a revoked or already renewed one, another CA, profile or subject, a
# malformed value, two items of one batch renewing the same certificate. EST re-enrollment and
# /v1/sign renewals chain (a renewal of a renewal). reindex rebuilds the links.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jitrd_lib.sh"

pki_setup
port=$(free_port)
URL=https://127.0.0.1:$port
cat >"$T/stations.json" <<EOF
{"stations": {
  "line1": {"cas": ["devices"], "profiles": ["device", "server"]},
  "line2": {"cas": ["devices"], "profiles": ["device"]},
  "admin1": {"cas": ["devices"], "profiles": ["device"], "admin": true}
}}
EOF
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "", "workers": 1, "worker_threads": 2, "request_timeout": 5, "drain_timeout": 5}
EOF
CFG=$T/jitrd.json
stations_issue "$CFG" line1 line2 admin1
jitrd_start "$CFG"

newcsr() { # newcsr NAME SUBJECT: a new key and CSR in $T/NAME.{key,csr}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.key" \
    -out "$T/$1.csr" -subj "$2" 2>/dev/null
}
# sign STATION CSR [JSON extra]: POST /v1/sign as JSON
sign() {
  jq -n --rawfile c "$T/$2.csr" --argjson x "${3:-{\}}" '{csr: $c} + $x' >"$T/req.json"
  req "$1" -H 'Content-Type: application/json' --data-binary @"$T/req.json" "$URL/v1/sign"
}
field() { jq -r ".$1" "$T/body"; }

newcsr a "/CN=dev-a/O=Acme"
sign line1 a; check_eq "A issued" "$code" 201
A=$(field serial); AID=$(field certificateId)
newcsr b "/CN=dev-a/O=Acme"
issues0=$(count_records issue)

# --- refusals: nothing issued -------------------------------------------------------------
sign line1 b '{"renews": "zz"}'; expect_err 400 invalid "'renews' must be"
sign line1 b '{"renews": 12}'; expect_err 400 invalid "'renews' must be a string"
sign line1 b '{"renews": "0123456789012345678901234567890123456789ab"}'
expect_err 400 invalid "'renews' must be"
sign line1 b '{"renews": "00ff00ff00ff"}'
expect_err 404 not_found "renews: no certificate 00ff00ff00ff"
# another station's certificate is answered as an unknown one
sign line2 b "{\"renews\": \"$A\"}"; expect_err 404 not_found "renews: no certificate $A"
sign line2 b "{\"renews\": \"$AID\"}"; expect_err 404 not_found "renews: no certificate $AID"
# another subject, profile or CA than the certificate's
newcsr other "/CN=dev-other/O=Acme"
sign line1 other "{\"renews\": \"$A\"}"
expect_err 400 invalid "keeps the subject of certificate $A"
sign line1 b "{\"renews\": \"$A\", \"profile\": \"server\"}"
expect_err 400 invalid "keeps the profile of certificate $A ('device'), not 'server'"
sign line1 b "{\"renews\": \"$A\", \"ca\": \"stations\"}"
expect_err 400 invalid "keeps the CA of certificate $A ('devices'), not 'stations'"
pem() { # pem STATION CSR QUERY: POST /v1/sign with a PEM body
  req "$1" -H 'Content-Type: application/x-pem-file' --data-binary @"$T/$2.csr" "$URL/v1/sign$3"
}
pem line1 b "?renews=x-1"
expect_err 400 invalid "'renews' must be"
check_eq "nothing issued by the refusals" "$(count_records issue)" "$issues0"
ok "$JITRCTL" --config "$CFG" cert show "$A"
grep -q "superseded" "$T/out" && fail "A superseded by a refusal: $(cat "$T/out")" || pass

# --- the renewal: by serial, in upper case, as a query parameter of a PEM body --------------
AU=$(echo "$A" | tr a-f A-F)
pem line1 b "?renews=$AU"
check_eq "B renews A" "$code" 201
B=$(field serial)
check_eq "the reply names what B renews" "$(field renews)" "$A"
check_eq "B keeps A's profile and CA" "$(field profile) $(field ca)" "device devices"
ok "$JITRCTL" --config "$CFG" cert show "$A"
grep -qx "superseded by $B" "$T/out" && pass || fail "cert show A: $(cat "$T/out")"
ok "$JITRCTL" --config "$CFG" cert show "$B"
grep -qx "renews $A" "$T/out" && pass || fail "cert show B: $(cat "$T/out")"
grep "\"serial\":\"$B\"" "$(audit_log)" | grep -q "\"renews\":\"$A\"" && pass ||
  fail "B's issue record says it renews A"
# A is renewed already: refused, whoever asks
newcsr c "/CN=dev-a/O=Acme"
sign line1 c "{\"renews\": \"$A\"}"
expect_err 409 conflict "was renewed already (superseded by $B)"
sign admin1 c "{\"renews\": \"$A\"}"; expect_err 409 conflict "superseded by $B"

# --- an admin station renews any certificate, by certificateId; the chain goes on ------------
BID=$(jq -r .certificateId <(req line1 "$URL/v1/certificates/$B"; cat "$T/body"))
sign admin1 c "{\"renews\": \"$BID\"}"; check_eq "C renews B (admin, by certificateId)" "$code" 201
C=$(field serial)
check_eq "C renews B" "$(field renews)" "$B"
# line1 reads C? it did not request it (admin1 did): a 404 like an unknown one
req line1 "$URL/v1/certificates/$C"; expect_err 404 not_found "no certificate with serial $C"

# --- a revoked certificate is not renewed ----------------------------------------------------
newcsr d "/CN=dev-d/O=Acme"
sign line1 d; D=$(field serial)
req admin1 -H 'Content-Type: application/json' \
  --data-binary "{\"serial\":\"$D\",\"reason\":\"keyCompromise\"}" "$URL/v1/revoke"
check_eq "D revoked" "$code" 200
newcsr d2 "/CN=dev-d/O=Acme"
sign line1 d2 "{\"renews\": \"$D\"}"
expect_err 409 conflict "certificate $D is revoked (keyCompromise)"

# --- a batch: per item; two items renewing one certificate: the second refused ---------------
newcsr e "/CN=dev-e/O=Acme"
sign line1 e; E=$(field serial)
newcsr e1 "/CN=dev-e/O=Acme"
newcsr e2 "/CN=dev-e/O=Acme"
jq -n --rawfile a "$T/e1.csr" --rawfile b "$T/e2.csr" --arg s "$E" \
  '{requests: [{id: "1", csr: $a, renews: $s}, {id: "2", csr: $b, renews: $s},
               {id: "3", csr: $b, renews: "00ff00ff00ff"}]}' >"$T/batch.json"
req line1 -H 'Content-Type: application/json' --data-binary @"$T/batch.json" "$URL/v1/sign/batch"
check_eq "batch" "$code" 200
check_eq "item 1 renews E" "$(jq -r '.results[0].renews' "$T/body")" "$E"
check_eq "item 2 refused" \
  "$(jq -r '.results[1].error.code + " " + .results[1].error.message' "$T/body")" \
  "conflict renews: certificate $E is renewed by an earlier item of this batch"
check_eq "item 3 refused" "$(jq -r '.results[2].error.code' "$T/body")" "not_found"
E1=$(jq -r '.results[0].serial' "$T/body")

# --- EST re-enrollment of a /v1/sign renewal chains on ---------------------------------------
# the device's credential: E1's certificate with e1's key
jq -r '.results[0].certificate' "$T/body" >"$T/st/devE1.crt"
cp "$T/e1.key" "$T/st/devE1.key"
openssl req -new -key "$T/e1.key" -subj "/CN=dev-e/O=Acme" -outform DER 2>/dev/null |
  openssl base64 >"$T/e3.b64"
req devE1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/e3.b64" \
  "$URL/.well-known/est/simplereenroll"
check_eq "EST re-enrollment of E1" "$code" 200
ok "$JITRCTL" --config "$CFG" cert show "$E1"
E3=$(sed -n 's/^superseded by //p' "$T/out")
[ -n "$E3" ] && pass || fail "E1 superseded by its re-enrollment: $(cat "$T/out")"

# --- reindex rebuilds the links ----------------------------------------------------------------
ok "$JITRCTL" --config "$CFG" reindex
ok "$JITRCTL" --config "$CFG" cert show "$B"
grep -qx "renews $A" "$T/out" && grep -qx "superseded by $C" "$T/out" && pass ||
  fail "after reindex, cert show B: $(cat "$T/out")"
finish
