#!/usr/bin/env bash
# jitrd as a stranger, a nosy station, a careless operator and a busy station would meet it:
# - a flood of certificate-less and malformed requests adds at most a handful of audit lines and
#   no audit commit (fdatasync) per request; they are counted by reason in /metrics and
#   summarised in deny_summary records; an authenticated station's refusal is still audited;
# - /healthz says only ok, /readyz only ready or not, /metrics is for admin stations and
#   admin_listen; a stranger learns nothing about serials, a station reads only its own records
#   (another's is a 404 like an unknown one), an admin every record;
# - HTTP/1.1 without exactly one Host is a 400 (HTTP/1.0 may leave it out);
# - a batch larger than the station's burst gets 429 saying it can never pass, with Retry-After,
#   and does not fail another station's request; over the rate: 429 with Retry-After, then it
#   passes;
# - EST simplereenroll: the new certificate renews the old (audit record, index, cert show, both
#   directions), the old one is refused afterwards except a retry with the renewal's key (the
#   same certificate again), reenroll_per_day per lineage (429), a revoked one is refused;
#   reindex rebuilds the links;
# - request ids are random; the public CRL route does not name Redis when it is down;
# - jitrctl config show / check never print a secret of the file.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jitrd_lib.sh"

if [ "${JITRCA_TEST_SCALE:-}" = small ]; then FLOOD=2000; else FLOOD=10000; fi

pki_setup
port=$(free_port)
aport=$(free_port)
URL=https://127.0.0.1:$port
ADMIN=http://127.0.0.1:$aport
cat >"$T/stations.json" <<EOF
{"stations": {
  "line1": {"cas": ["devices"], "profiles": ["device"], "rate": 1000, "burst": 1000},
  "line2": {"cas": ["devices"], "profiles": ["device"]},
  "admin1": {"cas": ["devices"], "profiles": ["device"], "admin": true}
}}
EOF
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport", "workers": 2, "worker_threads": 2, "request_timeout": 5,
 "reenroll_per_day": 2, "drain_timeout": 5}
EOF
CFG=$T/jitrd.json
stations_issue "$CFG" line1 line2 admin1 ghost
"$GENCSR" --count 130 --cn-prefix dev- --out "$T/csr" --keys
csr() { printf '%s/dev-%06d.csr' "$T/csr" "$1"; }
# every CA's CRL now: jitrd's schedule then has nothing to audit while the flood is measured
ok "$JITRCTL" --config "$CFG" crl --refresh
ok "$JITRD" --check-config --config "$CFG"
grep -q "admin_listen 127.0.0.1:$aport" "$T/out" && pass || fail "check-config names admin_listen"
jitrd_start "$CFG"

# --- a stranger's flood costs no audit record and no fdatasync per request -------------------
# one authenticated station's decision first: still audited, one by one
before_deny=$(count_records deny)
jq -n --rawfile c "$(csr 1)" '{csr: $c, profile: "station"}' >"$T/p.json"
req line1 -H 'Content-Type: application/json' --data-binary @"$T/p.json" "$URL/v1/sign"
expect_err 403 denied "may not use profile"
req ghost -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 1)" "$URL/v1/sign"
expect_err 403 denied "station 'ghost' is not authorised"
check_eq "station refusals audited one by one" "$(count_records deny)" $((before_deny + 2))

lines0=$(audit_lines)
commits0=$(metric jitrd_audit_commits_total)
cat >"$T/flood.py" <<'EOF'
# FLOOD requests without a client certificate over 4 keep-alive TLS connections, on the routes
# a stranger would try; prints "STATUS COUNT" lines.
import http.client, ssl, sys, threading
port, cafile, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
routes = [("POST", "/v1/sign", b"-----BEGIN CERTIFICATE REQUEST-----\n", "application/x-pem-file"),
          ("POST", "/v1/sign/batch", b'{"requests":[]}', "application/json"),
          ("GET", "/v1/certificates/0123abcd", None, None),
          ("GET", "/v1/certificates/not-hex", None, None),
          ("POST", "/v1/revoke", b'{"serial":"01"}', "application/json"),
          ("POST", "/.well-known/est/simpleenroll", b"AAAA", "application/pkcs10"),
          ("POST", "/.well-known/est/simplereenroll", b"AAAA", "application/pkcs10"),
          ("GET", "/metrics", None, None)]
counts, lock = {}, threading.Lock()
def run(k, off):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    for i in range(k):
        m, path, body, ct = routes[(off + i) % len(routes)]
        c.request(m, path, body=body, headers={"Content-Type": ct} if ct else {})
        r = c.getresponse()
        r.read()
        with lock:
            counts[r.status] = counts.get(r.status, 0) + 1
    c.close()
ts = [threading.Thread(target=run, args=(n // 4 + (1 if i < n % 4 else 0), i)) for i in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
for s in sorted(counts):
    print(s, counts[s])
EOF
python3 "$T/flood.py" "$port" "$T/srvca.pem" "$FLOOD" >"$T/flood.out"
check_eq "the flood: every request 403" "$(cat "$T/flood.out")" "403 $FLOOD"
# malformed requests (each on its own connection: the server closes after them)
for i in $(seq 20); do raw 'GARBAGE\r\n\r\n'; done
check_eq "malformed: 400" "$code" 400
for i in $(seq 10); do raw 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n'; done
expect_err 400 bad_request "exactly one Host"
for i in $(seq 10); do raw 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n'; done
expect_err 400 bad_request "more than one Host"
lines1=$(audit_lines)
commits1=$(metric jitrd_audit_commits_total)
# a deny_summary per worker at most (one falls due only after deny_summary_interval, 60 s)
[ $((lines1 - lines0)) -le 2 ] && pass ||
  fail "the flood added $((lines1 - lines0)) audit lines (want at most 2)"
[ $((commits1 - commits0)) -le 2 ] && pass ||
  fail "the flood caused $((commits1 - commits0)) audit commits (fdatasync) (want at most 2)"
check_eq "metrics: no_certificate" "$(metric 'jitrd_refused_requests_total{reason="no_certificate"}')" "$FLOOD"
check_eq "metrics: malformed" "$(metric 'jitrd_refused_requests_total{reason="malformed"}')" 40
[ "$(grep -c 'refused a request nobody authenticated' "$T/jitrd.log")" -le 2 ] && pass ||
  fail "the refusals are logged one by one: $(grep -c 'nobody authenticated' "$T/jitrd.log") lines"
# what the stranger was told
req - -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 1)" "$URL/v1/sign"
expect_err 403 denied "a client certificate is required"
req - "$URL/v1/certificates/xyz"; expect_err 403 denied "a client certificate is required"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/st/foreign.key" \
  -out "$T/st/foreign.crt" -subj /CN=line1 -days 1 2>/dev/null
req foreign "$URL/v1/certificates/0123"; expect_err 403 denied "client certificate refused"

# --- what anyone sees --------------------------------------------------------------------------
req - "$URL/healthz"; check_eq "healthz" "$code $(jq -c . "$T/body")" '200 {"status":"ok"}'
# two requests on one connection (one worker): their ids share no prefix, count nothing
curl -s --cacert "$T/srvca.pem" -D "$T/hdr2" -o /dev/null -o /dev/null "$URL/healthz" "$URL/healthz"
mapfile -t ids < <(awk 'tolower($1) == "x-request-id:" {print $2}' "$T/hdr2" | tr -d '\r')
[ "${#ids[@]}" = 2 ] && [ "${#ids[0]}" = 16 ] && [ "${ids[0]:0:8}" != "${ids[1]:0:8}" ] && pass ||
  fail "request ids tell how many requests were served: ${ids[*]}"
req - "$URL/readyz"; check_eq "readyz" "$code $(jq -c . "$T/body")" '200 {"status":"ready"}'
req - "$URL/metrics"; expect_err 403 denied "a client certificate is required"
req line1 "$URL/metrics"; expect_err 403 denied "does not have the admin role"
req admin1 "$URL/metrics"; check_eq "metrics for an admin station" "$code" 200
grep -q '^jitrd_refused_requests_total{reason="no_certificate"} ' "$T/body" && pass ||
  fail "metrics: refusals by reason"
req - "$ADMIN/metrics"; check_eq "metrics on admin_listen" "$code" 200
grep -q '^jitrd_http_requests_total{route="admin_metrics",status="200"} ' "$T/body" && pass ||
  fail "admin_listen's routes are counted"
req - "$ADMIN/readyz"; check_eq "readyz on admin_listen" "$code $(jq -c . "$T/body")" '200 {"status":"ready"}'
req - "$ADMIN/healthz"; check_eq "healthz on admin_listen" "$code" 200
# a CA key gone: the stranger learns "not ready", admin_listen and an admin station why
mv "$JITRCA_DATA_DIR/ca/devices/key.pem" "$T/key.away"
req - "$URL/readyz"; expect_err 503 unavailable "jitrd is not ready"
grep -q "key" "$T/body" && fail "a stranger learns about the key: $(cat "$T/body")" || pass
req line1 "$URL/readyz"; expect_err 503 unavailable "jitrd is not ready"
req admin1 "$URL/readyz"; expect_err 503 unavailable "key file"
req - "$ADMIN/readyz"; expect_err 503 unavailable "key file"
mv "$T/key.away" "$JITRCA_DATA_DIR/ca/devices/key.pem"
# Host: HTTP/1.0 may leave it out; HTTP/1.1 with one is served
raw 'GET /healthz HTTP/1.0\r\n\r\n'; check_eq "HTTP/1.0 without Host" "$code" 200
raw 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'; check_eq "HTTP/1.1 with Host" "$code" 200

# --- certificate records: one's own, not another's ------------------------------------------------
req line1 -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr 2)" "$URL/v1/sign"
check_eq "line1 signs" "$code" 201
s1=$(jq -r .serial "$T/body"); id1=$(jq -r .certificateId "$T/body")
req line1 "$URL/v1/certificates/$s1"; check_eq "line1 reads its own" "$code" 200
check_eq "its requester" "$(jq -r .requester "$T/body")" station:line1
req line1 "$URL/v1/certificates/$id1"; check_eq "line1 reads its own by certificateId" "$code" 200
req admin1 "$URL/v1/certificates/$s1"; check_eq "an admin reads any" "$code" 200
req line2 "$URL/v1/certificates/$s1"; expect_err 404 not_found "no certificate with serial $s1"
cp "$T/body" "$T/other.json"
req line2 "$URL/v1/certificates/${s1%?}0"; cp "$T/body" "$T/unknown.json"
# the same answer as for a serial nobody has, but for the serial itself
check_eq "another's record is an unknown one" "$(jq -c '.error.code' "$T/other.json")" \
  "$(jq -c '.error.code' "$T/unknown.json")"
req line2 "$URL/v1/certificates/$id1"; expect_err 404 not_found "no certificate with fingerprint $id1"
req line1 "$URL/v1/certificates/xyz"; expect_err 400 invalid "hex digits"

# --- batches and the rate limit: line2 has the defaults, rate 50/s, burst 50 ---------------------
batch() { # batch FROM COUNT > JSON of COUNT CSRs starting at FROM
  local from=$1 n=$2 args=() q='' i
  for ((i = from; i < from + n; i++)); do args+=(--rawfile "c$i" "$(csr "$i")"); q+="{id: \"$i\", csr: \$c$i},"; done
  jq -n "${args[@]}" "{requests: [${q%,}]}"
}
batch 10 51 >"$T/b51.json"
batch 10 50 >"$T/b50.json"
batch 60 50 >"$T/b50b.json"
before=$(rcli KEYS 'jitrca:cert:*' | wc -l)
req line2 -H 'Content-Type: application/json' --data-binary @"$T/b51.json" "$URL/v1/sign/batch"
expect_err 429 rate_limited "can never pass station 'line2''s rate limit (50/s, burst 50)"
jq -r .error.message "$T/body" | grep -q "send at most 50 per request, or raise the station's burst" &&
  pass || fail "how to fix it: $(jq -r .error.message "$T/body")"
check_eq "rate and burst in the error" "$(jq -c '[.error.rate, .error.burst]' "$T/body")" "[50,50]"
grep -qi '^Retry-After: 1' "$T/hdr" && pass || fail "Retry-After of a never-fitting batch: $(cat "$T/hdr")"
check_eq "nothing issued for it" "$(rcli KEYS 'jitrca:cert:*' | wc -l)" "$before"
req line2 -H 'Content-Type: application/json' --data-binary @"$T/b50.json" "$URL/v1/sign/batch"
check_eq "a batch of the burst passes" "$code $(jq '[.results[] | select(.certificate)] | length' "$T/body")" "200 50"
req line2 -H 'Content-Type: application/json' --data-binary @"$T/b50b.json" "$URL/v1/sign/batch"
expect_err 429 rate_limited "over its rate limit (50/s, burst 50): 50 certificates need 50 tokens"
ra=$(awk 'tolower($1) == "retry-after:" {print $2+0}' "$T/hdr")
[ "${ra:-0}" -ge 1 ] && [ "${ra:-0}" -le 2 ] && pass || fail "Retry-After of an empty bucket: '$ra'"
sleep "$ra"
req line2 -H 'Content-Type: application/json' --data-binary @"$T/b50b.json" "$URL/v1/sign/batch"
check_eq "after Retry-After it passes" "$code $(jq '[.results[] | select(.certificate)] | length' "$T/body")" "200 50"
# a never-fitting batch does not fail another station's request taken with it (one Redis
# pipeline for the rate limits of everything a signing thread takes at once)
pids=()
for i in $(seq 8); do
  curl -s --cacert "$T/srvca.pem" --cert "$T/st/line2.crt" --key "$T/st/line2.key" -o /dev/null \
    -H 'Content-Type: application/json' --data-binary @"$T/b51.json" "$URL/v1/sign/batch" &
  pids+=($!)
  curl -s --cacert "$T/srvca.pem" --cert "$T/st/line1.crt" --key "$T/st/line1.key" -o /dev/null \
    -w '%{http_code}\n' -H 'Content-Type: application/x-pem-file' --data-binary @"$(csr $((110 + i)))" \
    "$URL/v1/sign" >>"$T/mixed" &
  pids+=($!)
done
wait "${pids[@]}"
check_eq "line1 beside never-fitting batches" "$(sort "$T/mixed" | uniq -c | awk '{print $2 ":" $1}')" "201:8"

# --- EST re-enrollment: renews / superseded by, the limit, refusals ----------------------------
est_csr() { # est_csr KEYFILE CN > base64 DER CSR (a new key unless KEYFILE exists)
  if [ -f "$1" ]; then openssl req -new -key "$1" -subj "/CN=$2" -outform DER 2>/dev/null
  else openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1" \
    -subj "/CN=$2" -outform DER 2>/dev/null; fi | openssl base64
}
p7_pem() { openssl base64 -d -in "$T/body" | openssl pkcs7 -inform DER -print_certs -out "$1" 2>/dev/null; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr A-F a-f; }
reenroll() { # reenroll CERT_NAME CSR_FILE: the device's current certificate in $T/st/NAME.*
  req "$1" -H 'Content-Type: application/pkcs10' --data-binary @"$2" "$URL/.well-known/est/simplereenroll"
}
est_csr "$T/st/devA.key" est-dev >"$T/a.b64"
req line1 -H 'Content-Type: application/pkcs10' --data-binary @"$T/a.b64" "$URL/.well-known/est/simpleenroll"
check_eq "EST enroll" "$code" 200
p7_pem "$T/st/devA.crt"
A=$(rcli GET "jitrca:fp:$(openssl x509 -in "$T/st/devA.crt" -outform DER | sha256sum | cut -d' ' -f1)")
est_csr "$T/st/devB.key" est-dev >"$T/b.b64"
reenroll devA "$T/b.b64"; check_eq "re-enroll A" "$code" 200
p7_pem "$T/st/devB.crt"
B=$(rcli GET "jitrca:fp:$(openssl x509 -in "$T/st/devB.crt" -outform DER | sha256sum | cut -d' ' -f1)")
[ -n "$A" ] && [ -n "$B" ] && [ "$A" != "$B" ] && pass || fail "serials A='$A' B='$B'"
openssl verify -CAfile "$T/devchain.pem" "$T/st/devB.crt" >/dev/null 2>&1 && pass || fail "B verifies"
ok "$JITRCTL" --config "$CFG" cert show "$A"
grep -qx "superseded by $B" "$T/out" && pass || fail "cert show A: $(cat "$T/out")"
ok "$JITRCTL" --config "$CFG" cert show "$B"
grep -qx "renews $A" "$T/out" && pass || fail "cert show B: $(cat "$T/out")"
grep "\"serial\":\"$B\"" "$(audit_log)" | grep -q "\"renews\":\"$A\"" && pass ||
  fail "B's issue record says it renews A"
# the station that enrolled the device reads its renewal too; another station does not
req line1 "$URL/v1/certificates/$B"; check_eq "line1 reads its device's renewal" "$code" 200
check_eq "renewal's links" "$(jq -r '.renews + " " + .requester' "$T/body")" "$A device:$A"
req line2 "$URL/v1/certificates/$B"; expect_err 404 not_found "no certificate with serial $B"
req admin1 "$URL/v1/certificates/$A"; check_eq "A superseded_by" "$(jq -r .superseded_by "$T/body")" "$B"
# A again with a new key: refused (audited); with B's key: B again, nothing issued
before_issue=$(count_records issue)
est_csr "$T/st/devX.key" est-dev >"$T/x.b64"
reenroll devA "$T/x.b64"; expect_err 403 denied "superseded by $B"
est_csr "$T/st/devB.key" est-dev >"$T/b2.b64"
reenroll devA "$T/b2.b64"; check_eq "A retried with B's key" "$code" 200
p7_pem "$T/again.pem"
check_eq "the same certificate again" "$(serial_of "$T/again.pem")" "$(serial_of "$T/st/devB.crt")"
check_eq "nothing issued for the retry" "$(count_records issue)" "$before_issue"
# B renews to C (the lineage's second), then C hits reenroll_per_day = 2
est_csr "$T/st/devC.key" est-dev >"$T/c.b64"
reenroll devB "$T/c.b64"; check_eq "re-enroll B" "$code" 200
p7_pem "$T/st/devC.crt"
C=$(rcli GET "jitrca:fp:$(openssl x509 -in "$T/st/devC.crt" -outform DER | sha256sum | cut -d' ' -f1)")
est_csr "$T/st/devD.key" est-dev >"$T/d.b64"
reenroll devC "$T/d.b64"; expect_err 429 rate_limited "re-enrolled 2 times in the last 24 hours"
ra=$(awk 'tolower($1) == "retry-after:" {print $2+0}' "$T/hdr")
[ "${ra:-0}" -gt 80000 ] && [ "${ra:-0}" -le 86400 ] && pass || fail "Retry-After of the limit: '$ra'"
# a revoked certificate cannot re-enroll
req admin1 -H 'Content-Type: application/json' --data-binary "{\"serial\":\"$C\"}" "$URL/v1/revoke"
check_eq "admin revokes C" "$code" 200
reenroll devC "$T/d.b64"; expect_err 403 denied "is revoked"
# a device certificate is no station credential
req devC "$URL/v1/certificates/$C"; expect_err 403 denied "not issued by the station CA"
# Redis lost: the public CRL route says so without naming the server; the links come back from
# the audit log
rcli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
# each worker notices within a second (its index check); until then its connection looks alive
# and a current CRL is still read from disk (200): ask until the loss is seen, 5 s at most
for _ in $(seq 1 25); do
  req - "$URL/v1/crl?ca=devices"
  [ "$code" = 503 ] && break
  sleep 0.2
done
expect_err 503 unavailable "the CRL of CA 'devices' cannot be served now"
grep -q "redis" "$T/body" && fail "a stranger learns about Redis: $(cat "$T/body")" || pass
redis_start
# jitrd rebuilds the index itself within seconds of Redis's return (and holds the index lock
# meanwhile: an operator's reindex then is refused, naming the holder); the operator's reindex
# runs once it is done
for _ in $(seq 1 150); do
  [ "$(rcli EXISTS jitrca:index:ready 2>/dev/null)" = 1 ] && break
  sleep 0.2
done
check_eq "jitrd rebuilt the index after Redis came back empty" "$(rcli EXISTS jitrca:index:ready)" 1
ok "$JITRCTL" --config "$CFG" cert show "$A"
grep -qx "superseded by $B" "$T/out" && pass || fail "after jitrd's rebuild, cert show A: $(cat "$T/out")"
ok "$JITRCTL" --config "$CFG" reindex
ok "$JITRCTL" --config "$CFG" cert show "$A"
grep -qx "superseded by $B" "$T/out" && pass || fail "after reindex, cert show A: $(cat "$T/out")"
ok "$JITRCTL" --config "$CFG" cert show "$C"
grep -qx "renews $B" "$T/out" && pass || fail "after reindex, cert show C: $(cat "$T/out")"

# --- a careless operator's config show / check ------------------------------------------------
cat >"$T/secret.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "redis://:hunter2@127.0.0.1:1/0",
 "pkcs11_pin_env": "123456", "jitr": {"secrets_env": "jitr-s3cret-value"}}
EOF
ok env -u JITRCA_REDIS_URL "$JITRCTL" --config "$T/secret.json" config show
grep -qE 'hunter2|123456|jitr-s3cret-value' "$T/out" && fail "config show prints a secret: $(cat "$T/out")" || pass
grep -qF '"redis_url": "redis://:<redacted>@127.0.0.1:1/0"' "$T/out" && pass || fail "redacted URL: $(cat "$T/out")"
ok env -u JITRCA_REDIS_URL "$JITRCTL" --config "$T/secret.json" config check
printf '{"redis_url": "redis://:hunter2@127.0.0.1:99999/0"}' >"$T/bad1.json"
printf '{"redis_url": "redis://:hunter2@127.0.0.1/0" hunter2}' >"$T/bad2.json"
printf '{"redis_url": redis://:hunter2@127.0.0.1/0}' >"$T/bad3.json"
for f in bad1 bad2 bad3; do
  rc=0; env -u JITRCA_REDIS_URL "$JITRCTL" --config "$T/$f.json" config check >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" = 2 ] && pass || fail "config check $f: exit $rc"
  grep -q hunter2 "$T/out" "$T/err" && fail "config check $f shows the password: $(cat "$T/err")" || pass
done

# --- SIGTERM: the last deny_summary records; a handful in all ------------------------------------
total=0
for r in no_certificate bad_certificate foreign_issuer not_a_station_name malformed too_large request_timeout; do
  total=$((total + $(metric "jitrd_refused_requests_total{reason=\"$r\"}")))
done
jitrd_stop
n=$(count_records deny_summary)
[ "$n" -ge 1 ] && [ "$n" -le 6 ] && pass || fail "deny_summary records: $n (want 1 to 6)"
check_eq "deny_summary totals = refusals counted" \
  "$(grep '"type":"deny_summary"' "$(audit_log)" | jq -s 'map(.total) | add')" "$total"
check_eq "deny_summary counts by reason" \
  "$(grep '"type":"deny_summary"' "$(audit_log)" | jq -s 'map(.counts.no_certificate // 0) | add')" \
  "$((FLOOD + 3))"
grep '"type":"deny_summary"' "$(audit_log)" | head -1 | jq -e '.samples | index("127.0.0.1")' >/dev/null &&
  pass || fail "deny_summary samples the client addresses"
ok "$JITRCTL" --config "$CFG" audit verify
grep -q '"level":"error"' "$T/jitrd.log" && { grep '"level":"error"' "$T/jitrd.log" | head -5 >&2; } || true
finish
