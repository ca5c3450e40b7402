#!/bin/sh
# bench/redis.sh: sluice.pool and sluice.redis benchmarks, with
# redis-benchmark on the same server for comparison.
#
#   bench/redis.sh
#
# Starts a redis-server of its own (127.0.0.1, a free port, nothing kept
# on disk, in a temporary directory; stopped at the end, also on error or
# Ctrl-C), then runs, one process each:
#   bench/pool.lua   acquire/release, uncontended and contended (no server);
#   bench/redis.lua  GET/SET throughput: 1 task sequential, 50 tasks
#                    pipelining on one client, and 50 tasks through a pool
#                    of 10 clients (one pool:with per command);
#   redis-benchmark -p PORT -t get,set -n 100000 -q  (50 connections,
#                    no pipelining: the server's own client, in C).
#
# Environment: SLUICE (default build/sluice), REDIS_N (calls per figure,
# default 100000), REDIS_TASKS (50), REDIS_CLIENTS (10), REDIS_REPS (3).
set -eu
cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-build/sluice}
N=${REDIS_N:-100000}
TASKS=${REDIS_TASKS:-50}
CLIENTS=${REDIS_CLIENTS:-10}
REPS=${REDIS_REPS:-3}
if [ ! -x "$SLUICE" ]; then
  echo "bench: $SLUICE not found; run make first" >&2
  exit 1
fi
for tool in redis-server redis-cli redis-benchmark; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench: $tool not found (Debian: apt-get install redis-server redis-tools)" >&2
    exit 1
  fi
done

# A free port: bind port 0, read it, close (the same trick as the specs).
PORT=$("$SLUICE" -e 'local t = require("sluice").uv.new_tcp() assert(t:bind("127.0.0.1", 0))
print(t:getsockname().port) t:close()' </dev/null)
dir=$(mktemp -d)
stop() {
  if [ -f "$dir/redis.pid" ]; then
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    # shut down once the pid file is gone; skip the slow exit after it
    i=0
    while [ -f "$dir/redis.pid" ] && [ "$i" -lt 250 ]; do sleep 0.02; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
i=0
until redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -q PONG; do
  i=$((i + 1))
  if [ "$i" -ge 250 ]; then
    echo "bench: redis-server did not answer on port $PORT" >&2
    cat "$dir/redis.log" >&2
    exit 1
  fi
  sleep 0.02
done

echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
echo "load:    $(cut -d" " -f1-3 /proc/loadavg 2>/dev/null || echo n/a) (1/5/15 min, at start)"
echo "sluice:  $("$SLUICE" -v </dev/null | head -n 1)"
echo "redis:   $(redis-server --version | sed 's/ sha=.*//') on 127.0.0.1:$PORT"
echo
"$SLUICE" bench/pool.lua
echo
"$SLUICE" bench/redis.lua "$PORT" "$N" "$TASKS" "$REPS" "$CLIENTS"
echo
echo "redis-benchmark -p $PORT -t get,set -n $N -q (50 connections, no pipelining):"
redis-benchmark -h 127.0.0.1 -p "$PORT" -t get,set -n "$N" -q 2>&1 | tr '\r' '\n' | grep -v '^ *$' | grep -v 'rps=' || true
