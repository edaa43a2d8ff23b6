#!/usr/bin/env bash
# The certificate lock is a lease (docs/jitr.md "The lock is a lease"): every AWS call
# answers in 1.5 s, longer than jitr.lock_ms (1000, its minimum), and each device's event is
# posted again three times while its flow runs (AWS sends one at every connection attempt of a
# pending device). The worker renews the lock of every flow it runs, so each repeat finds the
# certificate's lock held and is a duplicate: exactly one CreateThing and one UpdateCertificate
# per certificate at the stand-in, every device ACTIVE, one jitr_activate record each. (With the
# lock living lock_ms from its last save, a repeat took the expired lock and provisioned the
# certificate a second time alongside the first flow.)
export JITRD_WORKERS=2
source "$(dirname "$0")/jitr_lib.sh"
N=4
write_config
jq '.jitr.lock_ms = 1000' "$CFG" >"$T/cfg.tmp" && mv "$T/cfg.tmp" "$CFG"
jitrd_start
gateway_rule
make_devices "$N" "$T/d"
ev() { # cert_id
  printf '{"certificateId":"%s","caCertificateId":"%s","timestamp":1795671724146,"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"123456789012"}' \
    "$1" "$DEV_CA_ID"
}
repost() {
  local c
  for c in "$T"/d/*.crt; do
    curl -sf -o /dev/null -X POST "$INTAKE/v1/jitr/events" -H 'content-type: application/json' \
      -H "x-jitr-secret: s3cret-new" --data-binary "$(ev "$(cert_id_of "$c")")" || echo "repost failed" >&2
  done
}
curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"faults": {"latency_ms": 1500}}' >/dev/null
gw --dir "$T/d" --timeout 120 >"$T/gw.json" 2>"$T/gw.err" &
GW=$!
# repeats while the flows wait on AWS, each more than lock_ms after the flows took their locks
sleep 3; repost
sleep 2; repost
sleep 2; repost
wait "$GW" && pass || { fail "devices did not connect"; cat "$T/gw.json" "$T/gw.err" >&2; tail -30 "$T/jitrd.log" >&2; }
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"faults": {"latency_ms": 0}}' >/dev/null
stats >"$T/st.json"
check_eq "connected after provisioning" "$(jq -r .connected "$T/gw.json")" "$N"
check_eq "one CreateThing per certificate" "$(jq -r '.operations.CreateThing.admitted // 0' "$T/st.json")" "$N"
check_eq "one UpdateCertificate per certificate" "$(jq -r '.operations.UpdateCertificate.admitted // 0' "$T/st.json")" "$N"
for c in "$T"/d/*.crt; do
  check_eq "$(basename "$c") ACTIVE" "$(aws_status "$c")" ACTIVE
  check_eq "$(basename "$c") DONE" "$(rcli HGET "jitrca:jitr:dev:$(cert_id_of "$c")" state)" DONE
done
check_eq "one jitr_activate record each" "$(count_records jitr_activate)" "$N"
# the repeats were duplicates of a held lock, not retries of a busy one
rcli HGET jitrca:jitr:stats outcome:duplicate >"$T/dup"
[ "$(cat "$T/dup")" -ge 1 ] 2>/dev/null && pass || fail "repeats seen as duplicates (got '$(cat "$T/dup")')"
jitrd_stop
finish
