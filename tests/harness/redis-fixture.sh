#!/usr/bin/env bash
# Starts or stops a throwaway redis-server for the tests: unix socket DIR/redis.sock, no
# persistence, loopback only (port 0: no TCP listener at all).
set -euo pipefail
cmd=$1 dir=$2
case "$cmd" in
start)
  "$0" stop "$dir" || true
  mkdir -p "$dir"
  redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --dir "$dir"
  for _ in $(seq 100); do
    if redis-cli -s "$dir/redis.sock" ping 2>/dev/null | grep -q PONG; then exit 0; fi
    sleep 0.05
  done
  echo "redis-server did not start; log:" >&2
  cat "$dir/redis.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/redis.pid" ]; then
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$dir/redis.pid"
  fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
