#!/usr/bin/env bash
# jitrctl's AWS credentials from every source of the chain, against the AWS IoT stand-in (run
# under tests/sim/run_sim.py): the stand-in verifies every SigV4 signature, STS (moto's) issues
# assumed-role and web-identity credentials, the SSO portal serves GetRoleCredentials; the IoT
# call (`ca show`'s live DescribeCACertificate) must be signed with what the source gave:
#   - a role profile with source_profile (external_id, role_session_name, duration_seconds sent;
#     AssumeRole signed with the source's keys), a chain of two roles, an STS 503 retried;
#   - credential_source = Environment with the profile chosen explicitly (aws_profile);
#   - credential_process (off the loop; its stderr in the error when it fails);
#   - an SSO profile (sso-session) with the token `aws sso login` caches; expired, refused and
#     missing tokens tell to run aws sso login;
#   - web identity before the shared files (whose keys would be refused);
#   - configured endpoints win over FIPS (AWS_USE_FIPS_ENDPOINT=true with AWS_ENDPOINT_URL_IOT).
source "$(dirname "$0")/lib.sh"
: "${JITRCA_SIM_IOT_URL:?run under tests/sim/run_sim.py}"
STANDIN=$JITRCA_SIM_IOT_URL
curl -sf -X POST "$STANDIN/_standin/reset" >/dev/null
stats() { curl -sf "$STANDIN/_standin/stats"; }
ACCOUNT=123456789012

ok "$JITRCTL" ca init root --subject "/CN=Creds Root"
ok "$JITRCTL" ca init dev --parent root --subject "/CN=Creds Device CA"
ok "$JITRCTL" ca register dev

# live CMD-ENV...: `jitrctl --json ca show dev` with the environment changed as given (no keys in
# the environment unless given); the live DescribeCACertificate must have succeeded
live() {
  curl -sf -X POST "$STANDIN/_standin/stats/reset" >/dev/null
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_CONFIG_FILE="$T/config" \
    AWS_SHARED_CREDENTIALS_FILE="$T/credentials" AWS_ENDPOINT_URL_STS="$STANDIN" \
    AWS_ENDPOINT_URL_SSO="$STANDIN" HOME="$T/home" "$@" "$JITRCTL" --json ca show dev \
    >"$T/out" 2>"$T/err" || true
}
live_ok() { # WHAT
  if [ "$(jq -r '.aws[0].live.status // empty' "$T/out")" = ACTIVE ]; then pass; else
    fail "$1: the live call did not succeed"; cat "$T/out" "$T/err" >&2
  fi
}
live_err() { # WHAT MESSAGE-PART
  if jq -r '.aws[0].live_error // empty' "$T/out" | grep -qF -- "$2"; then pass; else
    fail "$1: expected live_error with '$2'"; cat "$T/out" "$T/err" >&2
  fi
}
signed_by() { stats | jq -r --arg k "$1" '.signers[$k] // 0'; }

mkdir -p "$T/home"
cat >"$T/credentials" <<EOF
[base]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = $AWS_SECRET_ACCESS_KEY
[default]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = not-the-secret
EOF
cat >"$T/config" <<EOF
[profile deploy]
role_arn = arn:aws:iam::$ACCOUNT:role/jitrca-deploy
source_profile = base
external_id = factory-7
role_session_name = jitrca-it
duration_seconds = 900
[profile chained]
role_arn = arn:aws:iam::$ACCOUNT:role/jitrca-second
source_profile = deploy
[profile envsrc]
role_arn = arn:aws:iam::$ACCOUNT:role/jitrca-env
credential_source = Environment
[profile proc]
credential_process = "$T/creds process.sh" ok
[profile procfail]
credential_process = "$T/creds process.sh" fail
[profile sso]
sso_session = corp
sso_account_id = $ACCOUNT
sso_role_name = JitrcaAdmin
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = $AWS_REGION
EOF

# --- a role with a source profile ------------------------------------------------------------
live AWS_PROFILE=deploy
live_ok "source_profile"
stats >"$T/st.json"
check_eq "one AssumeRole" "$(jq '[.sts[] | select(.action == "AssumeRole")] | length' "$T/st.json")" 1
check_eq "signed with the source profile's keys" "$(jq -r '.sts[0].signed_by' "$T/st.json")" "$AWS_ACCESS_KEY_ID"
check_eq "role" "$(jq -r '.sts[0].role' "$T/st.json")" "arn:aws:iam::$ACCOUNT:role/jitrca-deploy"
check_eq "external id" "$(jq -r '.sts[0].external_id' "$T/st.json")" factory-7
check_eq "session name" "$(jq -r '.sts[0].session' "$T/st.json")" jitrca-it
check_eq "duration" "$(jq -r '.sts[0].duration' "$T/st.json")" 900
role_key=$(jq -r '.sts[0].issued' "$T/st.json")
check_eq "the IoT call signed with the role's credentials" "$(signed_by "$role_key")" 1
check_eq "not with the source's" "$(signed_by "$AWS_ACCESS_KEY_ID")" 0

# a chain: deploy's role, then the second role signed with deploy's credentials
live AWS_PROFILE=chained
live_ok "chained roles"
stats >"$T/st.json"
check_eq "two AssumeRoles" "$(jq '.sts | length' "$T/st.json")" 2
check_eq "the second signed by the first role" "$(jq -r '.sts[1].signed_by' "$T/st.json")" \
  "$(jq -r '.sts[0].issued' "$T/st.json")"
check_eq "the second role" "$(jq -r '.sts[1].role' "$T/st.json")" "arn:aws:iam::$ACCOUNT:role/jitrca-second"
check_eq "IoT signed by the last role" "$(signed_by "$(jq -r '.sts[1].issued' "$T/st.json")")" 1

# STS answering 503 once: retried
curl -sf -X POST "$STANDIN/_standin/config" -H 'content-type: application/json' \
  -d '{"next_faults": {"sts:AssumeRole": [503]}}' >/dev/null
live AWS_PROFILE=deploy
live_ok "AssumeRole after a 503"
check_eq "two AssumeRole attempts" "$(stats | jq '.sts | length')" 2

# --- credential_source = Environment, the profile chosen explicitly -----------------------------
live JITRCA_AWS_PROFILE=envsrc AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
live_ok "credential_source Environment"
stats >"$T/st.json"
check_eq "AssumeRole signed with the environment's keys" "$(jq -r '.sts[0].signed_by' "$T/st.json")" "$AWS_ACCESS_KEY_ID"
check_eq "the environment role" "$(jq -r '.sts[0].role' "$T/st.json")" "arn:aws:iam::$ACCOUNT:role/jitrca-env"
check_eq "IoT signed by the role" "$(signed_by "$(jq -r '.sts[0].issued' "$T/st.json")")" 1
# with AWS_PROFILE only, the environment's keys come first (botocore's order): no AssumeRole
live AWS_PROFILE=envsrc AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
live_ok "environment keys with AWS_PROFILE"
check_eq "no AssumeRole" "$(stats | jq '.sts | length')" 0

# --- credential_process ---------------------------------------------------------------------------
cat >"$T/creds process.sh" <<'EOF'
#!/bin/sh
if [ "$1" = fail ]; then echo "badge reader unplugged" >&2; exit 2; fi
exp=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
printf '{"Version": 1, "AccessKeyId": "%s", "SecretAccessKey": "%s", "SessionToken": "%s", "Expiration": "%s"}\n' \
  "$JITRCA_SIM_TEMP_ACCESS_KEY_ID" "$JITRCA_SIM_TEMP_SECRET_ACCESS_KEY" "$JITRCA_SIM_TEMP_SESSION_TOKEN" "$exp"
EOF
chmod 700 "$T/creds process.sh"
live AWS_PROFILE=proc
live_ok "credential_process"
check_eq "IoT signed with the process's credentials" "$(signed_by "$JITRCA_SIM_TEMP_ACCESS_KEY_ID")" 1
live AWS_PROFILE=procfail
live_err "credential_process failing" "exited with status 2: badge reader unplugged"

# --- SSO --------------------------------------------------------------------------------------------
mkdir -p "$T/home/.aws/sso/cache"
cache="$T/home/.aws/sso/cache/$(printf %s corp | sha1sum | cut -c1-40).json"
sso_cache() { # TOKEN EXPIRES-AT
  printf '{"startUrl": "https://corp.awsapps.com/start", "region": "%s", "accessToken": "%s", "expiresAt": "%s", "refreshToken": "r"}' \
    "$AWS_REGION" "$1" "$2" >"$cache"
}
curl -sf -X POST "$STANDIN/_standin/sso/tokens" -H 'content-type: application/json' \
  -d "{\"token\": \"sso-tok-1\", \"accountId\": \"$ACCOUNT\", \"roleName\": \"JitrcaAdmin\"}" >/dev/null
sso_cache sso-tok-1 "$(date -u -d '+8 hours' +%Y-%m-%dT%H:%M:%SZ)"
live AWS_PROFILE=sso
live_ok "SSO"
check_eq "one GetRoleCredentials" "$(stats | jq -r '.operations["sso:GetRoleCredentials"].admitted // 0')" 1
check_eq "the IoT call signed with the SSO role's credentials" \
  "$(stats | jq '[.signers | to_entries[] | select(.key != env.AWS_ACCESS_KEY_ID) | .value] | add')" 1
sso_cache sso-tok-1 "$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)"
live AWS_PROFILE=sso
live_err "expired SSO token" "run \`aws sso login --sso-session corp\`"
live_err "expired SSO token" "the SSO token expired at"
check_eq "no portal call with an expired token" "$(stats | jq -r '.operations["sso:GetRoleCredentials"].requests // 0')" 0
sso_cache revoked-tok "$(date -u -d '+8 hours' +%Y-%m-%dT%H:%M:%SZ)"
live AWS_PROFILE=sso
live_err "refused SSO token" "the SSO portal refused the token (HTTP 401 UnauthorizedException): run \`aws sso login --sso-session corp\`"
rm -f "$cache"
live AWS_PROFILE=sso
live_err "no SSO token" "no SSO token cached: run \`aws sso login --sso-session corp\`"

# --- web identity comes before the shared files ([default] there has a wrong secret) --------------
printf 'eyJraWQiOiJ0ZXN0In0.web.identity\n' >"$T/wit"
curl -sf -X POST "$STANDIN/_standin/sts/web-identity-tokens" -H 'content-type: application/json' \
  -d '{"token": "eyJraWQiOiJ0ZXN0In0.web.identity"}' >/dev/null
live AWS_WEB_IDENTITY_TOKEN_FILE="$T/wit" AWS_ROLE_ARN="arn:aws:iam::$ACCOUNT:role/jitrca-pod"
live_ok "web identity"
stats >"$T/st.json"
check_eq "AssumeRoleWithWebIdentity, unsigned" "$(jq -c '[.sts[0].action, .sts[0].signed_by]' "$T/st.json")" \
  '["AssumeRoleWithWebIdentity",null]'
check_eq "IoT signed by the web identity role" "$(signed_by "$(jq -r '.sts[0].issued' "$T/st.json")")" 1
live
live_err "the shared file's wrong secret, without web identity" "InvalidSignatureException"
printf 'not-registered\n' >"$T/wit"
live AWS_WEB_IDENTITY_TOKEN_FILE="$T/wit" AWS_ROLE_ARN="arn:aws:iam::$ACCOUNT:role/jitrca-pod"
live_err "a token STS refuses: no fall-back to the shared files" "InvalidIdentityToken"

# --- a configured endpoint wins over FIPS ---------------------------------------------------------
live AWS_USE_FIPS_ENDPOINT=true AWS_PROFILE=deploy
live_ok "AWS_ENDPOINT_URL_IOT with AWS_USE_FIPS_ENDPOINT=true"
live AWS_USE_FIPS_ENDPOINT=yes AWS_PROFILE=deploy
grep -qF "AWS_USE_FIPS_ENDPOINT must be true or false, not 'yes'" "$T/err" "$T/out" && pass ||
  { fail "a bad FIPS setting is named"; cat "$T/out" "$T/err" >&2; }
finish
