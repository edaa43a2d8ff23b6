#!/usr/bin/env bash
# SIGHUP reloads JITR with signing (run under tests/sim/run_sim.py): every worker reads the
# configuration file again off its loop and swaps in the template, the certificate profiles,
# the intake secrets (jitr.secrets_file) and the CA table. After a new secret and a new template
# are written and SIGHUP sent, the old secret is refused, the new one accepted, and the next
# device gets the new template's attributes. A template that does not load is logged and the
# running one stays; so do the secrets.
source "$(dirname "$0")/jitr_lib.sh"

ev() { # cert_id
  printf '{"certificateId":"%s","caCertificateId":"%s","timestamp":1795671724146,"certificateStatus":"PENDING_ACTIVATION","awsAccountId":"123456789012"}' \
    "$1" "$DEV_CA_ID"
}
post() { # secret body -> prints status
  curl -s -o "$T/post.out" -w '%{http_code}' -X POST "$INTAKE/v1/jitr/events" \
    -H 'content-type: application/json' ${1:+-H "x-jitr-secret: $1"} --data-binary "$2"
}
# template PROVISIONER: the default template with the thing's provisioner attribute set to it
template() {
  jq --arg p "$1" '.Resources.thing.Properties.AttributePayload.provisioner = $p' \
    "$JITRCA_SOURCE_DIR/policies/templates/default.json" >"$T/template.new"
  mv "$T/template.new" "$T/template.json"
}
provisioner() { # thing -> its provisioner attribute
  aws --endpoint-url "$STANDIN" iot describe-thing --thing-name "$1" \
    --query attributes.provisioner --output text 2>/dev/null
}
device() { # prefix: a device connects (provisioned through the rule) and prints its thing
  make_devices 1 "$T/$1" "$1-"
  gw --dir "$T/$1" --timeout 30 >"$T/$1.json" 2>"$T/$1.err" && pass ||
    { fail "$1 did not connect"; cat "$T/$1.json" "$T/$1.err" >&2; tail -20 "$T/jitrd.log" >&2; }
}
# SIGHUP, then until every worker (2) logged what it made of it (the N-th time: N * 2 lines)
reloaded() { # expected count of "jitr: reloaded" + "jitr: reload failed" lines
  kill -HUP "$JPID"
  for _ in $(seq 100); do
    [ "$(grep -c 'jitr: reload' "$T/jitrd.log" | head -1)" -ge "$1" ] && return 0
    sleep 0.1
  done
  fail "the workers did not reload"; tail -20 "$T/jitrd.log" >&2
}

printf '# the topic rule sends it\nfirst-secret\n' >"$T/secrets"
chmod 600 "$T/secrets"
template jitrca-one
write_config "\"secrets_file\": \"$T/secrets\", \"secrets_env\": \"\", \"template\": \"$T/template.json\""
jitrd_start
gateway_rule first-secret
device one
check_eq "the first template" "$(provisioner one-000001)" jitrca-one
FAKE=$(printf '%064x' 1)
check_eq "the first secret" "$(post first-secret "$(ev "$FAKE")")" 202
check_eq "not yet the second" "$(post second-secret "$(ev "$FAKE")")" 401

# --- a new secret and a new template, then SIGHUP ---------------------------------------------
printf 'second-secret\n' >"$T/secrets"
template jitrca-two
# "reloading ..." and "reloaded: ..." per worker
reloaded 4
check_eq "reloaded in both workers" "$(grep -c 'jitr: reloaded: template' "$T/jitrd.log")" 2
check_eq "the first secret refused" "$(post first-secret "$(ev "$FAKE")")" 401
check_eq "the second accepted" "$(post second-secret "$(ev "$FAKE")")" 202
gateway_rule second-secret
device two
check_eq "the new template used" "$(provisioner two-000001)" jitrca-two
check_eq "the first device unchanged" "$(provisioner one-000001)" jitrca-one

# --- a template that does not load: logged, the running one and the secrets stay ---------------
echo '{"Resources": ' >"$T/template.json"
printf 'third-secret\n' >"$T/secrets"
reloaded 8
check_eq "the failure logged in both workers" "$(grep -c 'jitr: reload failed' "$T/jitrd.log")" 2
check_eq "the second secret still accepted" "$(post second-secret "$(ev "$FAKE")")" 202
check_eq "the third not" "$(post third-secret "$(ev "$FAKE")")" 401
device three
check_eq "the running template used" "$(provisioner three-000001)" jitrca-two
kill -0 "$JPID" 2>/dev/null && pass || fail "jitrd died"
finish
