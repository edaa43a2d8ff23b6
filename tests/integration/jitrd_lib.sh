# Helpers of the jitrd black-box tests (sourced after lib.sh): a private redis-server that the
# test may stop and restart, the PKI of a jitrd (root, devices and stations CAs, a server
# certificate from a separate CA), stations' credentials, jitrd itself, and clients (curl for
# requests, openssl s_client for raw bytes).
JITRD=${JITRD:-$JITRCA_BUILD_DIR/daemon/jitrd}
[ -x "$JITRD" ] || { echo "no jitrd at $JITRD" >&2; exit 1; }

mkdir -p "$T/redis"
redis_start() {
  redis-server --port 0 --unixsocket "$T/redis/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --daemonize yes --pidfile "$T/redis/redis.pid" --logfile "$T/redis/log" \
    --dir "$T/redis" --dbfilename dump.rdb
  for _ in $(seq 100); do redis-cli -s "$T/redis/redis.sock" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "redis did not start" >&2; return 1
}
redis_start
export JITRCA_REDIS_URL=unix://$T/redis/redis.sock
rcli() { redis-cli -s "$T/redis/redis.sock" "$@"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

JPID=
jitrd_stop() {
  if [ -n "$JPID" ] && kill -0 "$JPID" 2>/dev/null; then
    kill -TERM "$JPID" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$JPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$JPID" 2>/dev/null || true
  fi
  if [ -n "$JPID" ]; then wait "$JPID" 2>/dev/null || true; fi
  JPID=
}
# stop_extra: what a test started besides jitrd and Redis (load clients, mounts), stopped first
stop_extra() { :; }
stop_all() {
  stop_extra
  jitrd_stop
  redis-cli -s "$T/redis/redis.sock" shutdown nosave >/dev/null 2>&1 || true
}
trap 'rc=$?; stop_all; (exit $rc); cleanup' EXIT

# pki_setup: CAs root (retired), devices, stations in the store; $T/srvca.pem signs $T/srv.pem
pki_setup() {
  ok "$JITRCTL" ca init root --subject "/CN=Test Root/O=Acme" --days 3650
  ok "$JITRCTL" ca init devices --parent root --subject "/CN=Test Devices CA/O=Acme"
  ok "$JITRCTL" ca init stations --parent root --subject "/CN=Test Stations CA/O=Acme"
  ok "$JITRCTL" ca retire root
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srvca.key" \
    -out "$T/srvca.pem" -subj /CN=srvca -days 2 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
    -out "$T/srv.csr" -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/srv.ext"
  openssl x509 -req -in "$T/srv.csr" -CA "$T/srvca.pem" -CAkey "$T/srvca.key" -CAcreateserial \
    -out "$T/srv.pem" -days 1 -extfile "$T/srv.ext" 2>/dev/null
  chmod 600 "$T/srv.key"
  cat "$JITRCA_DATA_DIR/ca/devices/cert.pem" "$JITRCA_DATA_DIR/ca/root/cert.pem" >"$T/devchain.pem"
}

# stations_issue CFG NAME...: credentials in $T/st/NAME.{crt,key}
stations_issue() {
  local cfg=$1; shift
  for s in "$@"; do ok "$JITRCTL" --config "$cfg" station issue "$s" --out "$T/st"; done
}

# jitrd_start CFG: starts jitrd (log in $T/jitrd.log) and waits for its listener ($URL)
jitrd_start() {
  "$JITRD" --config "$1" 2>>"$T/jitrd.log" &
  JPID=$!
  for _ in $(seq 150); do
    curl -s --cacert "$T/srvca.pem" "$URL/healthz" >/dev/null 2>&1 && return 0; sleep 0.1
  done
  fail "jitrd did not start"; cat "$T/jitrd.log" >&2; return 1
}

# req STATION|- [curl args...]: status into $code, body into $T/body, headers into $T/hdr
req() {
  local st=$1; shift
  local certargs=()
  if [ "$st" != - ]; then certargs=(--cert "$T/st/$st.crt" --key "$T/st/$st.key"); fi
  code=$(curl -sS --cacert "$T/srvca.pem" "${certargs[@]}" -D "$T/hdr" -o "$T/body" \
    -w '%{http_code}' "$@" || true)
}
# expect_err STATUS CODE "message part"
expect_err() {
  if [ "$code" != "$1" ]; then fail "want HTTP $1, got $code: $(head -c 300 "$T/body")"; return; fi
  if [ "$(jq -r .error.code "$T/body" 2>/dev/null)" != "$2" ]; then
    fail "want error code $2, got: $(head -c 300 "$T/body")"; return; fi
  if ! jq -r .error.message "$T/body" | grep -qF -- "$3"; then
    fail "want message '$3', got: $(jq -r .error.message "$T/body")"; return; fi
  pass
}
# raw BYTES (printf format): over TLS without a client certificate; status into $code
raw() {
  printf "$1" | timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$T/srvca.pem" \
    -quiet 2>/dev/null >"$T/raw" || true
  code=$(head -1 "$T/raw" | cut -d' ' -f2)
  awk 'seen { print } /^\r$/ { seen = 1 }' "$T/raw" >"$T/body"
}
# metric NAME{LABELS}: its value on admin_listen ($ADMIN), 0 when absent
metric() {
  curl -s "$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2; found = 1} END {if (!found) print 0}'
}
audit_lines() { wc -l <"$JITRCA_DATA_DIR/audit/audit.log"; }
