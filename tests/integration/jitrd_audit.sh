#!/usr/bin/env bash
# jitrd with a damaged or full audit log. (1) A torn unacknowledged write (a writer that died
# mid-line): /readyz stays 200, the next signing cuts only those bytes, the chain stays intact.
# (2) Bytes cut off an acknowledged record: signing answers 503 without the log's path, /readyz
# 503 with the reason, jitrd_audit_damaged 1; the torn bytes are moved to a quarantine file next
# to the log (never deleted), audit verify names it, jitrctl refuses as well and deletes
# nothing; restoring the log heals without a restart. (3) A line edited in the middle: after
# SIGHUP, audit verify names the line, signing answers 503, /readyz names line and problem;
# restored, it heals. (4) The log's filesystem full (a small tmpfs, when the test may mount
# one): 503 without the path, nothing issued nor half-written, signing resumes once space is
# freed.
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/jitrd_lib.sh" # Redis, rcli, jitrd_stop, stop_all
MNT=
stop_extra() { if [ -n "$MNT" ]; then umount "$MNT" 2>/dev/null || true; fi; }

ok "$JITRCTL" ca init root --subject "/CN=Test Root/O=Acme" --days 3650
ok "$JITRCTL" ca init devices --parent root --subject "/CN=Test Devices CA/O=Acme"
ok "$JITRCTL" ca init stations --parent root --subject "/CN=Test Stations CA/O=Acme"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
  -out "$T/srv.pem" -subj /CN=localhost -days 2 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
chmod 600 "$T/srv.key"
port=$(free_port)
URL=https://127.0.0.1:$port
aport=$(free_port)
ADMIN=http://127.0.0.1:$aport # /readyz's reasons and /metrics (admin_listen)
echo '{"stations": {"line1": {"cas": ["devices"], "profiles": ["device"], "rate": 0}}}' >"$T/stations.json"
write_config() { # AUDIT_LOG_PATH
  cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json", "default_profile": "device",
 "audit_log": "$1",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport",
 "workers": 2, "worker_threads": 1, "drain_timeout": 2}
EOF
}
LOG=$JITRCA_DATA_DIR/audit/audit.log
write_config "$LOG"
CFG=$T/jitrd.json
ok "$JITRCTL" --config "$CFG" station issue line1 --out "$T/st"
"$GENCSR" --count 4 --cn-prefix dev- --out "$T/csr"

jitrd_start() {
  "$JITRD" --config "$CFG" 2>>"$T/jitrd.log" &
  JPID=$!
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/srv.pem" "$URL/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  fail "jitrd did not become ready"; tail -20 "$T/jitrd.log" >&2
}
jitrd_stop() {
  kill -TERM "$JPID" 2>/dev/null || true; wait "$JPID" 2>/dev/null || true; JPID=
}
jitrd_start

sign() {
  code=$(curl -sS --cacert "$T/srv.pem" --cert "$T/st/line1.crt" --key "$T/st/line1.key" \
    -H 'Content-Type: application/x-pem-file' --data-binary @"$T/csr/dev-000001.csr" \
    -D "$T/hdr" -o "$T/body" -w '%{http_code}' "$URL/v1/sign" || true)
}
readyz() { code=$(curl -s -o "$T/body" -w '%{http_code}' "$ADMIN/readyz"); }
metric() { curl -s "$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
wait_metric() { # NAME VALUE: within 5 s
  for _ in $(seq 50); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.1; done
  fail "metric $1: got '$(metric "$1")', want '$2'"
}
no_path() { # the client's message never names the log
  grep -qF "audit.log" "$T/body" && fail "$1: the reply names the log's path: $(cat "$T/body")" || pass
}

sign; check_eq "sign with an intact log" "$code" 201
wait_metric jitrd_audit_damaged 0

# --- 1: a torn unacknowledged write ------------------------------------------------------------
printf '{"ca":"devices","prev":"00' >>"$LOG"
readyz; check_eq "readyz with a torn unacknowledged tail" "$code" 200
sign; check_eq "sign cuts the torn write" "$code" 201
ok "$JITRCTL" --config "$CFG" audit verify
wait_metric jitrd_audit_torn_tails_cut_total 1
ls "$LOG".quarantine.* >/dev/null 2>&1 && fail "a torn unacknowledged write was quarantined" || pass

# --- 2: bytes cut off an acknowledged record ---------------------------------------------------
cp "$LOG.head" "$T/pristine.head"   # the head first: an append between the copies only
cp "$LOG" "$T/pristine.log"         # leaves the copied head behind the copied log (allowed)
size=$(stat -c %s "$LOG")
truncate -s $(( size - 40 )) "$LOG"
readyz; check_eq "readyz with an acknowledged record cut" "$code" 503
grep -q "an acknowledged record was cut" "$T/body" && pass || fail "readyz reason: $(cat "$T/body")"
no_path readyz
wait_metric jitrd_audit_damaged 1
before=$(rcli --scan --pattern 'jitrca:cert:*' | wc -l)
sign; check_eq "sign with an acknowledged record cut" "$code" 503
jq -r .error.message "$T/body" | grep -q "audit log is damaged" && pass || fail "503 message: $(cat "$T/body")"
no_path sign
grep -qi '^retry-after:' "$T/hdr" && pass || fail "no Retry-After"
check_eq "nothing issued" "$(rcli --scan --pattern 'jitrca:cert:*' | wc -l)" "$before"
# jitrctl refuses too, and deletes nothing
lsize=$(stat -c %s "$LOG")
expect_fail 1 "refusing to append until it is repaired" "$JITRCTL" --config "$CFG" sign --csr "$T/csr/dev-000002.csr" --out "$T/x.pem"
check_eq "jitrctl left the log as it was" "$(stat -c %s "$LOG")" "$lsize"
grep -q "lines were removed from the end" "$T/err" && pass || fail "jitrctl's reason: $(cat "$T/err")"
q=$(ls "$LOG".quarantine.* 2>/dev/null | head -1)
[ -n "$q" ] && pass || fail "no quarantine file next to the log"
last=$(tail -n 1 "$T/pristine.log")
check_eq "quarantine holds the torn bytes" "$(cat "$q")" "${last:0:$(( ${#last} + 1 - 40 ))}"
check_eq "the log lost nothing else" "$(cat "$LOG" "$q" | cmp -s - <(head -c $(( size - 40 )) "$T/pristine.log") && echo same)" same
expect_fail 2 "lines were removed from the end" "$JITRCTL" --config "$CFG" audit verify
grep -q "quarantine: $q" "$T/err" && pass || fail "audit verify does not name the quarantine: $(cat "$T/err")"
wait_metric jitrd_audit_quarantine_files 1
[ "$(metric jitrd_audit_commit_failures_total)" -ge 1 ] && pass || fail "commit failures not counted"
# the operator restores the log: signing resumes without a restart
cp "$T/pristine.log" "$LOG"
cp "$T/pristine.head" "$LOG.head"
kill -HUP "$JPID"
for _ in $(seq 50); do readyz; [ "$code" = 200 ] && break; sleep 0.1; done
check_eq "readyz after the repair" "$code" 200
sign; check_eq "sign after the repair" "$code" 201

# --- 3: a line edited in the middle ------------------------------------------------------------
# edit_line3 STEP: one digit of line 3's time moved by STEP (in place: same file, same length;
# jitrd may append meanwhile, a scheduled CRL say, so the repair undoes the edit in place too)
edit_line3() {
  python3 - "$LOG" "$1" <<'PY'
import sys
p, step = sys.argv[1], int(sys.argv[2])
with open(p, 'r+b') as f:
    data = f.read()
    start = 0
    for _ in range(2):
        start = data.index(b'\n', start) + 1
    at = data.index(b'"ts":"', start) + 8
    f.seek(at)
    f.write(bytes([ord('0') + (data[at] - ord('0') + step) % 10]))
PY
}
edit_line3 1
expect_fail 2 "line 3: edited" "$JITRCTL" --config "$CFG" audit verify
kill -HUP "$JPID"
wait_metric jitrd_audit_damaged 1
sign; check_eq "sign with an edited line" "$code" 503
jq -r .error.message "$T/body" | grep -q "line 3: edited" && pass || fail "503 names the line: $(cat "$T/body")"
readyz; check_eq "readyz with an edited line" "$code" 503
grep -q "line 3: edited" "$T/body" && pass || fail "readyz names the line: $(cat "$T/body")"
edit_line3 9
ok "$JITRCTL" --config "$CFG" audit verify
kill -HUP "$JPID"
wait_metric jitrd_audit_damaged 0
sign; check_eq "sign after the edit was undone" "$code" 201

# --- 4: the log's filesystem is full ------------------------------------------------------------
MNT=$T/small
mkdir -p "$MNT"
if mount -t tmpfs -o size=256k,mode=0750 tmpfs "$MNT" 2>/dev/null; then
  jitrd_stop
  cp "$LOG" "$MNT/audit.log"
  cp "$LOG.head" "$MNT/audit.log.head"
  write_config "$MNT/audit.log"
  jitrd_start
  sign; check_eq "sign on the small filesystem" "$code" 201
  head -c 1M /dev/zero >"$MNT/filler" 2>/dev/null || true   # fills it up
  # the log's last page may still hold a record or two: sign until the disk refuses
  for _ in $(seq 8); do sign; [ "$code" = 201 ] || break; done
  check_eq "sign with the disk full" "$code" 503
  jq -r .error.message "$T/body" | grep -q "cannot be written" && pass || fail "disk full message: $(cat "$T/body")"
  no_path "disk full"
  grep -qi '^retry-after:' "$T/hdr" && pass || fail "no Retry-After with the disk full"
  check_eq "every indexed certificate is audited" \
    "$(rcli --scan --pattern 'jitrca:cert:*' | wc -l)" "$(grep -c '"type":"issue"' "$MNT/audit.log")"
  ok "$JITRCTL" --config "$CFG" audit verify   # no half-written record left behind
  rm -f "$MNT/filler"
  sign; check_eq "sign once space is freed" "$code" 201
  grep -q "No space left on device" "$T/jitrd.log" && pass || fail "the log does not say the disk is full"
  jitrd_stop
  umount "$MNT" && MNT=
else
  echo "skipped the full-disk part: cannot mount a tmpfs here" >&2
fi

finish
