#!/usr/bin/env bash
# jitrd soak: SECONDS (first argument) of mixed traffic on one jitrd (2 workers) with a Redis
# restart in the middle (SHUTDOWN NOSAVE, started again empty: the index heals by itself). The
# load (tests/integration/jitrd_soak.py): stations signing single CSRs and reading them back,
# a rate-limited station sending batches, an admin station revoking, certificate-less clients
# (403), malformed requests (400), slowloris clients (408 after request_timeout), silent TCP
# connections. It asserts:
# - every reply is one that client may get: 201/200, 429 with Retry-After for the rate-limited
#   station, 503 with Retry-After only while the index is down or healing, 4xx for strangers;
# - jitrd's RSS and descriptors are flat: per process, the last third's maximum is at most the
#   first third's plus a margin (after a warm-up; jitrd_soak.py, flat);
# - no worker was replaced (the processes are the same, jitrd_worker_restarts_total 0, no
#   "died" in the log);
# - every certificate handed out is in the audit log and in the index, the revoked ones revoked
#   in both; one deny record per 429 and none for anything else; the audit chain verifies.
# It prints one summary line "soak: ..." (requests by kind and status, RSS and descriptors per
# process, restarts). The ctest tests it_jitrd_soak and it_jitrd_soak_long (label slow) run it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/jitrd_lib.sh"

SECONDS_RUN=${1:?usage: jitrd_soak.sh SECONDS}
REQUEST_TIMEOUT=5
# Margins of "flat" (jitrd_soak.py): see docs/testing.md, "The soak". The worker that rebuilds
# the index keeps the rebuild's peak once (up to 5.2 MiB measured), hence 8 MiB.
RSS_MARGIN_KIB=8192
FD_MARGIN=2
# Under ASan, RSS is printed, not asserted: its allocator (quarantine, redzones, size classes it
# never gives back) grew the workers by 6 to 10 MiB in a 300 s run whose developer-build twin
# grew 0.1 MiB. A small quarantine keeps the figures readable (the default 256 MiB fills first).
if grep -q '^JITRCA_SANITIZE:BOOL=ON' "$JITRCA_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4
  RSS_MARGIN_KIB=-1
fi

pki_setup
port=$(free_port)
aport=$(free_port)
URL=https://127.0.0.1:$port
ADMIN=http://127.0.0.1:$aport
cat >"$T/stations.json" <<EOF
{"stations": {
  "line1": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
  "line2": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
  "line3": {"cas": ["devices"], "profiles": ["device"], "rate": 0},
  "batch1": {"cas": ["devices"], "profiles": ["device"], "rate": 20, "burst": 16},
  "admin1": {"cas": ["devices"], "profiles": ["device"], "rate": 0, "admin": true}
}}
EOF
cat >"$T/jitrd.json" <<EOF
{"data_dir": "$JITRCA_DATA_DIR", "redis_url": "$JITRCA_REDIS_URL", "default_ca": "devices",
 "station_ca": "stations", "stations_file": "$T/stations.json", "default_profile": "device",
 "tls_cert_file": "$T/srv.pem", "tls_key_file": "$T/srv.key", "listen": "127.0.0.1:$port",
 "admin_listen": "127.0.0.1:$aport", "workers": 2, "request_timeout": $REQUEST_TIMEOUT,
 "drain_timeout": 5}
EOF
CFG=$T/jitrd.json
stations_issue "$CFG" line1 line2 line3 batch1 admin1
"$GENCSR" --count 64 --cn-prefix dev- --out "$T/csr"
jitrd_start "$CFG"
for _ in $(seq 100); do [ "$(metric jitrd_index_complete)" = 1 ] && break; sleep 0.1; done
check_eq "index complete before the load" "$(metric jitrd_index_complete)" 1
deny0=$(count_records deny)

mkdir -p "$T/soak"
python3 "$JITRCA_SOURCE_DIR/tests/integration/jitrd_soak.py" --port "$port" \
  --cafile "$T/srvca.pem" --st "$T/st" --csr "$T/csr" --seconds "$SECONDS_RUN" --out "$T/soak" \
  --jitrd "$JPID" --request-timeout "$REQUEST_TIMEOUT" --rss-margin-kib "$RSS_MARGIN_KIB" \
  --fd-margin "$FD_MARGIN" >"$T/soak/summary" 2>"$T/soak/failures" &
SOAKPID=$!
trap 'rc=$?; kill "$SOAKPID" 2>/dev/null || true; stop_all; (exit $rc); cleanup' EXIT

# --- Redis goes away in the middle and comes back empty; the index heals by itself ------------
sleep $((SECONDS_RUN / 2))
rebuilds0=$(metric 'jitrd_index_rebuilds_total{result="ok"}')
date +%s%3N >"$T/soak/redis_down_ms"
rcli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
sleep 1
redis_start
for _ in $(seq 600); do
  if [ "$(metric 'jitrd_index_rebuilds_total{result="ok"}')" -gt "$rebuilds0" ] &&
     [ "$(metric jitrd_index_complete)" = 1 ]; then
    date +%s%3N >"$T/soak/healed_ms"
    break
  fi
  sleep 0.1
done
[ -s "$T/soak/healed_ms" ] && pass || fail "the index did not heal within 60 s"

rc=0
wait "$SOAKPID" || rc=$?
cat "$T/soak/summary"
cat "$T/soak/failures" >&2
check_eq "the soak's own checks (replies, RSS, descriptors, workers)" "$rc" 0

# --- workers: never replaced --------------------------------------------------------------------
check_eq "jitrd_worker_restarts_total" "$(metric jitrd_worker_restarts_total)" 0
check_eq "no worker died (log)" "$(grep -c 'died' "$T/jitrd.log" || true)" 0

# --- every certificate handed out is audited and indexed; revocations in both --------------------
sort "$T/soak/served" >"$T/served"
sort "$T/soak/revoked" >"$T/revoked"
grep '"type":"issue"' "$(audit_log)" | jq -r .serial | sort >"$T/audited"
grep '"type":"revoke"' "$(audit_log)" | jq -r .serial | sort >"$T/audited_revoked"
check_eq "every certificate served is audited" "$(comm -23 "$T/served" "$T/audited" | head -3)" ""
check_eq "every revocation is audited" "$(comm -23 "$T/revoked" "$T/audited_revoked" | head -3)" ""
# the index's status of each served serial, in one redis-cli session
sed 's/^/HGET jitrca:cert:/; s/$/ status/' "$T/served" | rcli >"$T/status"
paste -d' ' "$T/served" "$T/status" >"$T/served_status"
check_eq "every certificate served is indexed" "$(awk 'NF < 2' "$T/served_status" | head -3)" ""
check_eq "revoked in the index exactly when revoked" \
  "$(join "$T/served_status" <(sed 's/$/ R/' "$T/revoked") -a1 |
     awk '($3 == "R") != ($2 == "revoked")' | head -3)" ""
check_eq "audit log intact" "$("$JITRCTL" --config "$CFG" audit verify >/dev/null 2>&1; echo $?)" 0
# and as an operator asks: jitrctl cert show of the first, the last and a revoked certificate
for s in "$(head -1 "$T/soak/served")" "$(tail -1 "$T/soak/served")"; do
  ok "$JITRCTL" --config "$CFG" --json cert show "$s"
  check_eq "cert show $s" \
    "$(jq -r '.serial + " " + (.status == "revoked" or .status == "valid" | tostring)' "$T/out")" \
    "$s true"
done
r=$(head -1 "$T/soak/revoked")
if [ -n "$r" ]; then
  ok "$JITRCTL" --config "$CFG" --json cert show "$r"
  check_eq "cert show of a revoked one" "$(jq -r .status "$T/out")" revoked
else
  fail "nothing was revoked"
fi
# one deny record per 429 of the rate-limited station, none for the 503s nor the strangers; the
# strangers and slow clients counted in /metrics as they were refused
n() { jq -r --arg k "$1" --arg s "$2" '.[$k][$s] // 0' "$T/soak/counts.json"; }
check_eq "deny records: one per 429" "$(( $(count_records deny) - deny0 ))" "$(n batch 429)"
check_eq "refused: no_certificate" \
  "$(metric 'jitrd_refused_requests_total{reason="no_certificate"}')" "$(n stranger 403)"
check_eq "refused: malformed" "$(metric 'jitrd_refused_requests_total{reason="malformed"}')" \
  "$(n stranger 400)"
check_eq "refused: request_timeout" \
  "$(metric 'jitrd_refused_requests_total{reason="request_timeout"}')" "$(n slowloris 408)"

finish
