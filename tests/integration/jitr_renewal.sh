#!/usr/bin/env bash
# Renewal retires the old certificate, end to end through the AWS IoT stand-ins (run under
# tests/sim/run_sim.py): a device enrolled with POST /v1/sign is provisioned by JITR; it
# re-enrolls (EST simplereenroll) and its renewal is provisioned onto the same thing; during
# renewal_grace (5 s) the old certificate stays ACTIVE and attached, then it is detached, INACTIVE
# in AWS, revoked (superseded) in our index and on the CRL, audited, and the thing has exactly the
# new principal. A renewal of the renewal (POST /v1/sign with renews) with renewal_grace 0 retires
# its predecessor at once. jitrd killed (SIGKILL) while a retirement is due: it completes after
# the restart. An old certificate REVOKED in AWS stays REVOKED (detached, revoked in our index).
# A renewal that is no longer ACTIVE when the grace ends keeps its predecessor. Redis restarted
# empty while a retirement is due (another device): the index rebuild queues it again from the
# audit log.
source "$(dirname "$0")/jitr_lib.sh"

# jitrd's server certificate names localhost
URL=https://localhost:$SIGN_PORT
curl() { command curl --resolve "localhost:$SIGN_PORT:127.0.0.1" "$@"; }
cat >"$T/stations.json" <<EOF
{"stations": {"line1": {"cas": ["devices"], "profiles": ["device"]}}}
EOF
grace_config() { # GRACE_S
  write_config
  jq --argjson g "$1" '.renewal_grace = $g' "$T/jitrd.json" >"$T/g.json" && mv "$T/g.json" "$CFG"
}
jitrd_start_group() {
  setsid "$JITRD" --config "$CFG" 2>>"$T/jitrd.log" &
  JPID=$!
  for _ in $(seq 100); do curl -sf "$INTAKE/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "jitrd did not come up" >&2; tail -20 "$T/jitrd.log" >&2; return 1
}
jitrd_kill() { kill -KILL -- "-$JPID" 2>/dev/null || true; wait "$JPID" 2>/dev/null || true; JPID=; }
jitrd_stop() {
  if [ -n "$JPID" ]; then
    kill -TERM -- "-$JPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$JPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$JPID" 2>/dev/null || true
    wait "$JPID" 2>/dev/null || true
  fi
  JPID=
}
grace_config 5
ok "$JITRCTL" --config "$CFG" station issue line1 --out "$T/st"
jitrd_start_group
gateway_rule

ARN=arn:aws:iot:us-east-1:123456789012:cert
iot() { aws --endpoint-url "$STANDIN" iot "$@"; }
principals() { iot list-thing-principals --thing-name "$1" | jq -r '.principals | sort | join(" ")'; }
serial_of() { rcli GET "jitrca:fp:$(cert_id_of "$1")"; } # as the index keys it
index_field() { # SERIAL FIELD
  "$JITRCTL" --config "$CFG" --json cert show "$1" | jq -r ".$2 // empty"; }
# connect DIR NAME: the device NAME (DIR/NAME.{crt,key}) connects through the gateway (JITR
# provisions it first)
connect() {
  gw --dir "$1" --timeout 30 >"$T/gw.json" 2>"$T/gw.err" && pass ||
    { fail "device $2 did not connect"; cat "$T/gw.json" "$T/gw.err" >&2; tail -30 "$T/jitrd.log" >&2; }
}
# st CERT: its status in AWS, read fast (the stand-in's own view; the aws CLI takes a second)
st() { curl -sf "$STANDIN/_standin/internal/cert/$(cert_id_of "$1")" | jq -r .status; }
is_active() { [ "$(st "$1")" = ACTIVE ]; }
# provision DIR: the device of DIR connects once through the gateway (refused: AWS registers its
# certificate and JITR provisions it); returns when AWS has it ACTIVE
provision() { # DIR [NAME]: the device NAME (default dev-r1)
  gw --dir "$1" --first-only >/dev/null 2>&1 || true
  wait_for 30 is_active "$1/${2:-dev-r1}.crt" && pass ||
    { fail "$1 not provisioned"; tail -30 "$T/jitrd.log" >&2; }
}
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
# grace_kept WHAT NEW_CERT GRACE_S: the renewal NEW_CERT's retirement record (renewal_retire) is
# at least GRACE_S after its activation record (jitr_activate), both in the audit log to the
# millisecond: the test's own polls (the aws CLI, ~0.5 s each on a loaded machine) would see the
# activation late and make an on-time retirement look early
grace_kept() {
  local s; s=$(serial_of "$2")
  jq -rs --arg s "$s" --argjson g "$3" '
    def ms: (.ts[0:19] + "Z" | fromdateiso8601) * 1000 + (.ts[20:23] | tonumber);
    ([.[] | select(.type == "jitr_activate" and .serial == $s and .aws_status == "ACTIVE") | ms] | min) as $a
    | ([.[] | select(.type == "renewal_retire" and .serial == $s) | ms] | max) as $r
    | if $a == null or $r == null then "no records" elif $r - $a >= $g * 1000 then "ok"
      else "\(($r - $a) / 1000) s" end' "$(audit_log)"
}
retired() { # CERT: INACTIVE in AWS and revoked in our index
  [ "$(st "$1")" = INACTIVE ] &&
    [ "$(index_field "$(serial_of "$1")" status)" = revoked ]
}
check_retired() { # NAME OLD_CERT NEW_CERT THING
  check_eq "$1: old INACTIVE in AWS" "$(aws_status "$2")" INACTIVE
  check_eq "$1: the thing has exactly the new principal" "$(principals "$4")" \
    "$ARN/$(cert_id_of "$3")"
  check_eq "$1: old attached to nothing" \
    "$(iot list-principal-things --principal "$ARN/$(cert_id_of "$2")" | jq -c .things)" '[]'
  check_eq "$1: old revoked (superseded) in our index" \
    "$(index_field "$(serial_of "$2")" status) $(index_field "$(serial_of "$2")" reason)" \
    "revoked superseded"
  check_eq "$1: new ACTIVE" "$(aws_status "$3")" ACTIVE
  curl -sf --cacert "$T/srv.pem" "$URL/v1/crl?ca=devices&format=pem" -o "$T/crl.pem"
  openssl crl -in "$T/crl.pem" -noout -text >"$T/crl.txt"
  local sn
  sn=$(serial_of "$2" | sed 's/^0*//') # openssl prints no sign octet
  grep -A4 -i "Serial Number: 0*$sn\$" "$T/crl.txt" | grep -q "Superseded" && pass ||
    fail "$1: the CRL lists the old one as superseded: $(cat "$T/crl.txt")"
  grep '"type":"renewal_retire"' "$(audit_log)" | grep "\"renews\":\"$(serial_of "$2")\"" |
    grep -q '"outcome":"retired"' && pass || fail "$1: the retirement's audit record"
}

# sign X CN [RENEWS]: a new key and CSR for CN in $T/X, signed over /v1/sign by station line1
# (renewing serial RENEWS if given: ?renews=) into $T/X/CN.crt
sign() {
  mkdir -p "$T/$1"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1/$2.key" \
    -subj "/CN=$2" -out "$T/$1.csr" 2>/dev/null
  curl -sf --cacert "$T/srv.pem" --cert "$T/st/line1.crt" --key "$T/st/line1.key" \
    -H 'Content-Type: application/x-pem-file' --data-binary @"$T/$1.csr" \
    "$URL/v1/sign${3:+?renews=$3}" >"$T/$1.json" && pass || fail "$1 signed: $(cat "$T/$1.json")"
  jq -r .certificate "$T/$1.json" >"$T/$1/$2.crt"
}

# --- A: /v1/sign, provisioned ---------------------------------------------------------------
mkdir -p "$T/a" "$T/b" "$T/c" "$T/d" "$T/e" "$T/f"
sign a dev-r1
A=$T/a/dev-r1.crt
[ -s "$A" ] || { fail "no certificate A: $(cat "$T/a.json")"; tail -20 "$T/jitrd.log" >&2; exit 1; }
provision "$T/a"
check_eq "thing dev-r1 has A" "$(principals dev-r1)" "$ARN/$(cert_id_of "$A")"

# --- B: EST re-enrollment of A, provisioned onto the same thing; 5 s of grace -----------------
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/b/dev-r1.key" \
  -subj /CN=dev-r1 -outform DER 2>/dev/null | openssl base64 >"$T/b.b64"
curl -sf --cacert "$T/srv.pem" --cert "$A" --key "$T/a/dev-r1.key" \
  -H 'Content-Type: application/pkcs10' --data-binary @"$T/b.b64" \
  "$URL/.well-known/est/simplereenroll" | openssl base64 -d |
  openssl pkcs7 -inform DER -print_certs -out "$T/b/dev-r1.crt" 2>/dev/null && pass ||
  fail "B re-enrolled"
B=$T/b/dev-r1.crt
check_eq "B renews A" "$(index_field "$(serial_of "$B")" renews)" "$(serial_of "$A")"
provision "$T/b"
# within the grace A keeps working: ACTIVE, attached, valid
check_eq "A ACTIVE during the grace" "$(st "$A")" ACTIVE
check_eq "A attached during the grace" \
  "$(curl -sf "$STANDIN/_standin/internal/cert/$(cert_id_of "$A")" | jq -c .things)" '["dev-r1"]'
check_eq "A valid during the grace" "$(index_field "$(serial_of "$A")" status)" valid
wait_for 20 retired "$A" && pass || fail "A retired within 20 s: $(aws_status "$A")"
check_eq "A retired after the grace (audit times)" "$(grace_kept A "$B" 4.8)" ok
connect "$T/b" B
check_retired "A by B" "$A" "$B" dev-r1

# --- C: /v1/sign renews B (the renewal of a renewal), renewal_grace 0 -------------------------
jitrd_stop
grace_config 0
jitrd_start_group
sign c dev-r1 "$(serial_of "$B")"
C=$T/c/dev-r1.crt
provision "$T/c"
wait_for 10 retired "$B" && pass || fail "B retired at once: $(aws_status "$B")"
check_retired "B by C" "$B" "$C" dev-r1
check_eq "A stays as it was" "$(aws_status "$A")" INACTIVE

# --- D renews C; jitrd killed while C's retirement is due; it completes after the restart ------
jitrd_stop
grace_config 3
jitrd_start_group
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/d/dev-r1.key" \
  -subj /CN=dev-r1 -out "$T/d.csr" 2>/dev/null
curl -sf --cacert "$T/srv.pem" --cert "$T/st/line1.crt" --key "$T/st/line1.key" \
  -H 'Content-Type: application/json' \
  --data-binary "$(jq -n --rawfile c "$T/d.csr" --arg r "$(serial_of "$C")" '{csr: $c, renews: $r}')" \
  "$URL/v1/sign" >"$T/d.json" && pass || fail "D signed"
jq -r .certificate "$T/d.json" >"$T/d/dev-r1.crt"
D=$T/d/dev-r1.crt
provision "$T/d"
jitrd_kill
check_eq "C ACTIVE until the grace ends" "$(st "$C")" ACTIVE
check_eq "the retirement is due later" "$(rcli ZCARD jitrca:jobs:renewal:due)" 1
sleep 4
check_eq "nothing retires C while jitrd is down" "$(aws_status "$C")" ACTIVE
jitrd_start_group
wait_for 20 retired "$C" && pass || fail "C retired after the restart: $(aws_status "$C")"
check_retired "C by D after a restart" "$C" "$D" dev-r1

# --- E renews D; D is REVOKED in AWS meanwhile: it stays REVOKED ------------------------------
jitrd_stop
grace_config 0
jitrd_start_group
sign e dev-r1 "$(serial_of "$D")"
E=$T/e/dev-r1.crt
iot update-certificate --certificate-id "$(cert_id_of "$D")" --new-status REVOKED && pass ||
  fail "D REVOKED in AWS"
provision "$T/e"
wait_for 10 bash -c "[ \"\$(\"$JITRCTL\" --config \"$CFG\" --json cert show $(serial_of "$D") |
  jq -r .status)\" = revoked ]" && pass || fail "D revoked in our index"
check_eq "D stays REVOKED in AWS" "$(aws_status "$D")" REVOKED
check_eq "the thing has exactly E" "$(principals dev-r1)" "$ARN/$(cert_id_of "$E")"
check_eq "D's reason" "$(index_field "$(serial_of "$D")" reason)" superseded

# --- F renews E but is INACTIVE by the time the grace ends: E is kept --------------------------
# (a grace long enough for the aws CLI to set F INACTIVE first on a loaded machine)
jitrd_stop
grace_config 12
jitrd_start_group
sign f dev-r1 "$(serial_of "$E")"
F=$T/f/dev-r1.crt
provision "$T/f"
iot update-certificate --certificate-id "$(cert_id_of "$F")" --new-status INACTIVE && pass ||
  fail "F INACTIVE in AWS"
wait_for 30 bash -c "grep '\"type\":\"renewal_retire\"' '$(audit_log)' |
  grep -q '\"outcome\":\"kept\"'" && pass || fail "F's retirement job ends kept"
check_eq "E kept ACTIVE" "$(aws_status "$E")" ACTIVE
check_eq "E kept valid" "$(index_field "$(serial_of "$E")" status)" valid

# --- a second device H, renewed by G; jitrd killed and Redis restarted empty while H's
# retirement is due: the index rebuild queues it again from the audit log, due when it was; no
# other retirement runs again -----------------------------------------------------------------
jitrd_stop
grace_config 6
jitrd_start_group
sign h dev-r2
H=$T/h/dev-r2.crt
provision "$T/h" dev-r2
sign g dev-r2 "$(serial_of "$H")"
G=$T/g/dev-r2.crt
provision "$T/g" dev-r2
jitrd_kill
retires_before=$(grep -c '"type":"renewal_retire"' "$(audit_log)")
redis_stop
rm -rf "$T/redis/"*.aof "$T/redis/"*.rdb "$T/redis/appendonlydir"
redis_start
check_eq "Redis is empty" "$(rcli DBSIZE)" 0
jitrd_start_group
wait_for 30 retired "$H" && pass || fail "H retired after Redis came back empty: $(aws_status "$H")"
check_eq "H retired after the grace (audit times), its due time rebuilt" "$(grace_kept H "$G" 6)" ok
grep -q "renewal retirements were missing from Redis and are queued again" "$T/jitrd.log" && pass ||
  fail "the requeue is logged"
check_retired "H by G after Redis restarted empty" "$H" "$G" dev-r2
sleep 1 # any other retirement queued by mistake was due at once: it has run by now
check_eq "exactly one more retirement recorded" \
  "$(grep -c '"type":"renewal_retire"' "$(audit_log)")" $((retires_before + 1))
finish
