#!/usr/bin/env bash
# sentinel-fixture.sh start|stop|kill-primary DIR: a Redis primary, one replica and three
# redis-sentinel (redis-server --sentinel) on 127.0.0.1, on free ports picked now, no
# persistence, a failover one second after the primary stops answering. `start` writes DIR/env
# (shell variables: SENTINEL_URL, MASTER, PRIMARY_PORT, REPLICA_PORT, SENTINEL_PORTS,
# PRIMARY_PID) and waits until every sentinel knows the replica and its peers, so that a failover
# can happen. `kill-primary` SIGKILLs the current primary (asked of a sentinel).
set -euo pipefail
cmd=$1 dir=$2
master=jitrca
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
primary_port() {
  local p
  for p in $SENTINEL_PORTS; do
    cli "$p" SENTINEL get-master-addr-by-name "$master" 2>/dev/null | sed -n 2p && return 0
  done
  return 1
}
case "$cmd" in
start)
  "$0" stop "$dir" || true
  mkdir -p "$dir"
  # ports are picked free and then bound by the servers: another process may take one in
  # between (redis-server --daemonize returns before it binds): every server must answer, else
  # all stop and the start is tried again on new ports
  for attempt in 1 2 3 4 5; do
    read -r pp rp s1 s2 s3 < <(free_ports 5)
    for n in primary replica; do
      port=$pp; extra=()
      if [ "$n" = replica ]; then port=$rp; extra=(--replicaof 127.0.0.1 "$pp"); fi
      redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$dir/$n.pid" --logfile "$dir/$n.log" --dir "$dir" "${extra[@]}"
    done
    i=0
    for p in $s1 $s2 $s3; do
      i=$((i + 1))
      cat > "$dir/sentinel$i.conf" <<CONF
port $p
bind 127.0.0.1
daemonize yes
pidfile $dir/sentinel$i.pid
logfile $dir/sentinel$i.log
dir $dir
sentinel monitor $master 127.0.0.1 $pp 2
sentinel down-after-milliseconds $master 1000
sentinel failover-timeout $master 10000
sentinel parallel-syncs $master 1
CONF
      redis-server "$dir/sentinel$i.conf" --sentinel
    done
    # each port answered by our own server: the process_id it reports is its pid file's (a
    # port taken by another test's Redis would answer PONG too)
    up=1
    for pf in "$pp primary" "$rp replica" "$s1 sentinel1" "$s2 sentinel2" "$s3 sentinel3"; do
      read -r p n <<<"$pf"
      mine=0
      for _ in $(seq 100); do
        if [ -s "$dir/$n.pid" ] && cli "$p" INFO server 2>/dev/null | tr -d '\r' |
            grep -qx "process_id:$(cat "$dir/$n.pid")"; then
          mine=1; break
        fi
        sleep 0.05
      done
      [ $mine = 1 ] || { up=0; break; }
    done
    [ $up = 1 ] && break
    echo "sentinel fixture: a server did not start (port taken?), attempt $attempt; again" >&2
    tail -n 3 "$dir"/*.log >&2 || true
    "$0" stop "$dir" || true
    # a server that failed to bind left no pid file but may still exit: its log is kept
    [ "$attempt" = 5 ] && { echo "sentinel fixture: could not start" >&2; exit 1; }
  done
  cat > "$dir/env" <<ENV
SENTINEL_URL=redis-sentinel://127.0.0.1:$s1,127.0.0.1:$s2,127.0.0.1:$s3/$master
MASTER=$master
PRIMARY_PORT=$pp
REPLICA_PORT=$rp
SENTINEL_PORTS="$s1 $s2 $s3"
PRIMARY_PID=$(cat "$dir/primary.pid")
ENV
  # ready: the replica in sync, and each sentinel sees the replica and two other sentinels
  for _ in $(seq 300); do
    ok=1
    cli "$rp" INFO replication 2>/dev/null | grep -q 'master_link_status:up' || ok=0
    for p in $s1 $s2 $s3; do
      info=$(cli "$p" INFO sentinel 2>/dev/null || true)
      echo "$info" | grep -q "slaves=1,sentinels=3" || ok=0
    done
    [ $ok = 1 ] && exit 0
    sleep 0.1
  done
  echo "sentinel fixture did not become ready; logs:" >&2
  tail -n 20 "$dir"/*.log >&2
  exit 1
  ;;
kill-primary)
  . "$dir/env"
  port=$(primary_port)
  for n in primary replica; do
    if [ "$(cat "$dir/$n.pid" 2>/dev/null)" ] && cli "$port" CONFIG GET pidfile 2>/dev/null |
        grep -q "$dir/$n.pid"; then
      kill -KILL "$(cat "$dir/$n.pid")"
      echo "$n"
      exit 0
    fi
  done
  echo "no primary found on port $port" >&2
  exit 1
  ;;
stop)
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$f"
  done
  ;;
*) echo "usage: $0 start|stop|kill-primary DIR" >&2; exit 2 ;;
esac
