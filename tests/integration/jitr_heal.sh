#!/usr/bin/env bash
# JITR after a Redis loss (run under tests/sim/run_sim.py): devices register while Redis is down,
# Redis comes back empty (its data files removed) while a dead rebuilder's lock keeps the index
# incomplete for a few seconds, more devices register meanwhile. No device is rejected or
# dead-lettered because the index is empty: the flows wait, jitrd rebuilds the index by itself
# once the lock lapses, and every device ends ACTIVE exactly once (the events lost with Redis
# come back through the reconciler). A device certificate revoked before the loss is still
# refused after it (rejected by JITR, or revoked in AWS by its revocation's job).
source "$(dirname "$0")/jitr_lib.sh"
N=12
ids() { seq -f "dev-%06g" "$1" "$2" | paste -sd, -; }
gateway_rule
jitrd_start
make_devices $N "$T/d"
make_devices 1 "$T/rv" rv-
ok "$JITRCTL" revoke "$(openssl x509 -in "$T/rv/rv-000001.crt" -noout -serial | cut -d= -f2)" \
  --reason keyCompromise

# --- devices 1-4 before anything happens ----------------------------------------------------------
gw --dir "$T/d" --ids "$(ids 1 4)" --timeout 60 >"$T/gw1.json" 2>"$T/gw1.err" && pass || {
  fail "devices 1-4 provisioned"; cat "$T/gw1.json" "$T/gw1.err" >&2; tail -30 "$T/jitrd.log" >&2; }

# --- Redis down while devices 5-8 register; back empty, the index held incomplete ---------------
rcli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
sleep 0.3
rm -rf "$T/redis/appendonlydir" "$T/redis"/*.aof "$T/redis"/*.rdb
gw --dir "$T/d" --ids "$(ids 5 8)" --first-only >/dev/null 2>&1
sleep 1
redis_start
# a dead rebuilder's lock, long enough for the checks below on a loaded machine; it is made to
# lapse (deleted) when they are done
rcli SET jitrca:index:lock "dead-rebuilder" PX 60000 >/dev/null
check_eq "Redis came back empty" "$(rcli EXISTS jitrca:index:ready)" 0
gw --dir "$T/d" --ids "$(ids 9 $N)" --first-only >/dev/null 2>&1
gw --dir "$T/rv" --first-only >/dev/null 2>&1
sleep 2
# while incomplete: nothing rejected, nothing dead-lettered, no verdict
check_eq "index still incomplete (lock held)" "$(rcli EXISTS jitrca:index:ready)" 0
check_eq "no dead letter while the index is incomplete" "$(rcli XLEN jitrca:jitr:dlq)" 0
grep -q 'rejected' "$T/jitrd.log" && { fail "a device was rejected"; grep rejected "$T/jitrd.log" | head -3 >&2; } || pass
[ "$(rcli HGET jitrca:jitr:stats outcome:busy)" -ge 1 ] 2>/dev/null && pass ||
  fail "no flow waited for the index: $(rcli HGETALL jitrca:jitr:stats | paste -sd' ')"

# --- the lock lapses: jitrd rebuilds, every device ends ACTIVE ------------------------------------
rcli DEL jitrca:index:lock >/dev/null
gw --dir "$T/d" --ids "$(ids 5 $N)" --timeout 120 >"$T/gw2.json" 2>"$T/gw2.err" && pass || {
  fail "devices 5-$N provisioned after the loss"; cat "$T/gw2.json" "$T/gw2.err" >&2; tail -40 "$T/jitrd.log" >&2; }
check_eq "index complete again" "$(rcli EXISTS jitrca:index:ready)" 1
grep -q 'index rebuilt from the audit log' "$T/jitrd.log" && pass || fail "no rebuild in the log"
active=0
for i in $(seq 1 $N); do
  [ "$(aws_status "$T/d/$(printf 'dev-%06d' "$i").crt")" = ACTIVE ] && active=$((active + 1))
done
check_eq "all ACTIVE" "$active" $N
check_eq "no dead letters" "$(rcli XLEN jitrca:jitr:dlq)" 0
check_eq "activated once each" "$(count_records jitr_activate)" $N
# the certificate revoked before the loss: refused once the index is back, never activated. Two
# paths may get there first, both right: JITR's flow rejects it (jitr_reject), or the job of its
# revocation, queued again by the rebuild's replay, finds it registered now and revokes it in AWS
# (aws_status); the flow then finds it REVOKED and leaves it
RV_ID=$(cert_id_of "$T/rv/rv-000001.crt")
refused() { grep -E '"type":"(jitr_reject|aws_status)"' "$(audit_log)" | grep -q "$RV_ID"; }
for _ in $(seq 150); do refused && break; sleep 0.2; done
refused && pass || fail "the revoked device was neither rejected nor revoked in AWS"
check_eq "the certificate revoked before the loss is REVOKED in AWS" \
  "$(aws_status "$T/rv/rv-000001.crt")" REVOKED
check_eq "errors in the jitrd log other than Redis's absence" \
  "$(grep '"level":"error"' "$T/jitrd.log" | grep -vi 'redis' | head -3)" ""
finish
