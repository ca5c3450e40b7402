#!/bin/sh
# bench/http.sh: 10,000 GETs through a concurrency limit of 100, sluice
# (sluice.limit + sluice.http, libcurl) against Node.js (p-limit + the
# built-in fetch, undici), both clients hitting the same server process.
#
#   bench/http.sh
#
# One server runs for the whole script (by default sluice's, from
# bench/http_limit.lua; SERVER=node uses Node's http module instead).  The
# two clients then run alternately, each BENCH_RUNS times as its own
# process; each process prints the median of BENCH_REPS rounds after a
# warm-up round.  The table shows the median of the processes' medians and
# the throughput ratio.  The server and the client under test share the
# machine's cores, as they would on one host.
#
# Environment:
#   BENCH_RUNS   processes per client (default 5)
#   BENCH_REPS   rounds per process, median taken (default 3)
#   BENCH_N      GETs per round (default 10000)
#   BENCH_CONC   the limit (default 100)
#   SERVER       sluice (default) or node
#   SLUICE, NODE, NPM  the programs (default build/sluice, node, npm)
set -eu
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-5}
REPS=${BENCH_REPS:-3}
N=${BENCH_N:-10000}
CONC=${BENCH_CONC:-100}
SERVER=${SERVER:-sluice}
SLUICE=${SLUICE:-build/sluice}
NODE=${NODE:-node}
NPM=${NPM:-npm}

if [ ! -x "$SLUICE" ]; then
  echo "bench: $SLUICE not found; run make first" >&2
  exit 1
fi
have() { command -v "$1" >/dev/null 2>&1; }
have_node=0
if have "$NODE"; then
  if [ ! -d bench/node_modules/p-limit ] && have "$NPM"; then
    echo "bench: installing the npm packages of bench/package.json into bench/node_modules" >&2
    "$NPM" install --prefix bench --no-audit --no-fund --no-package-lock --loglevel=error >&2 ||
      echo "bench: npm install failed; Node.js shows as n/a" >&2
  fi
  [ -d bench/node_modules/p-limit ] && have_node=1
fi
if [ "$SERVER" = node ] && [ "$have_node" = 0 ]; then
  echo "bench: SERVER=node needs node and p-limit" >&2
  exit 1
fi

tmp=$(mktemp -d)
srv_pid=
cleanup() {
  [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# The server: start it, wait for its "port N" line.
if [ "$SERVER" = node ]; then
  "$NODE" bench/node/http_limit.mjs serve >"$tmp/server" 2>&1 &
else
  "$SLUICE" bench/http_limit.lua serve >"$tmp/server" 2>&1 &
fi
srv_pid=$!
i=0
while ! grep -q '^port ' "$tmp/server" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -gt 100 ] || ! kill -0 "$srv_pid" 2>/dev/null; then
    echo "bench: the server did not start:" >&2
    cat "$tmp/server" >&2
    exit 1
  fi
  sleep 0.05
done
URL="http://127.0.0.1:$(sed -n 's/^port //p' "$tmp/server")/"

median() { sort -n | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "n/a"; exit }
  if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]
  else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$tmp/sluice.ms"
: >"$tmp/node.ms"
r=0
while [ "$r" -lt "$RUNS" ]; do
  "$SLUICE" bench/http_limit.lua "$URL" "$N" "$CONC" "$REPS" | awk '$1 == "sluice" { print $2 }' >>"$tmp/sluice.ms"
  if [ "$have_node" = 1 ]; then
    "$NODE" bench/node/http_limit.mjs "$URL" "$N" "$CONC" "$REPS" | awk '$1 == "node" { print $2 }' >>"$tmp/node.ms"
  fi
  r=$((r + 1))
done

s_ms=$(median <"$tmp/sluice.ms")
n_ms=$(median <"$tmp/node.ms")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "machine: $(nproc) CPUs, ${cpu:-$(uname -m)}; load $(cut -d" " -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
echo "sluice:  $("$SLUICE" -v </dev/null | head -n 1), $("$SLUICE" -e 'print((require("sluice").http.curl_version:match("^%S+")))' 2>/dev/null || echo libcurl)"
[ "$have_node" = 1 ] && echo "node:    $("$NODE" --version), p-limit $("$NODE" -p 'require("./bench/node_modules/p-limit/package.json").version'), fetch (undici)"
echo "server:  $SERVER, one process for both clients ($URL)"
echo "method:  $N GETs through a limit of $CONC; $RUNS processes per client, run alternately, each the median"
echo "         of $REPS rounds after a warm-up; the median of the processes shown"
echo
rate() { awk -v ms="$1" -v n="$N" 'BEGIN { if (ms == "n/a") print "n/a"; else printf "%.0f", n / ms * 1000 }'; }
printf '| client | time | requests/s |\n|---|---|---|\n'
printf '| sluice: limit(%s) + sluice.http | %s ms | %s |\n' "$CONC" "$s_ms" "$(rate "$s_ms")"
printf '| Node.js: pLimit(%s) + fetch | %s ms | %s |\n' "$CONC" "$n_ms" "$(rate "$n_ms")"
echo
if [ "$n_ms" != n/a ]; then
  awk -v s="$s_ms" -v n="$n_ms" 'BEGIN { printf "sluice/Node.js throughput: %.2fx (target: at least 2x: %s)\n", n / s, (n / s >= 2 ? "met" : "missed") }'
fi
echo "per process (ms): sluice $(sort -n "$tmp/sluice.ms" | tr '\n' ' ')"
[ "$have_node" = 1 ] && echo "                  node   $(sort -n "$tmp/node.ms" | tr '\n' ' ')"
exit 0
