#!/bin/sh
# bench/limits.sh: the concurrency-limiter benchmarks side by side, the
# seed's "Concurrency Control Overhead" on sluice, the pure-LuaJIT floor,
# Node.js (the seed's Semaphore with an O(1) queue, the real p-limit from
# npm) and Python asyncio.  Every variant runs several times, each run its
# own process; the table shows the median of the per-process medians with
# the ratios and targets, then the per-operation figures (uncontended
# try_acquire+release, memory per waiting task and per queued call).
#
#   bench/limits.sh          (`make bench` runs it after bench/run.sh)
#
# It installs the npm packages it needs (bench/package.json: p-limit)
# into bench/node_modules when that is missing.
#
# Environment:
#   BENCH_RUNS     processes per variant at 100,000 (default 5)
#   BENCH_REPS     in-process repetitions per process, median taken (default 5)
#   BENCH_RUNS_1M  processes per variant at 1,000,000 (default 3)
#   BENCH_REPS_1M  repetitions per process at 1,000,000 (default 3)
#   BENCH_SLOW=0   skips the slowest variants: Python at 1,000,000 tasks
#                  (one repetition, about 20 s) and the seed's unchanged
#                  Semaphore (its O(n) Array.shift: about 6 s a repetition)
#   SLUICE, NODE, NPM, PYTHON  the programs (default build/sluice, node,
#                  npm, python3); a missing one shows as n/a.
set -eu
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-5}
REPS=${BENCH_REPS:-5}
RUNS_1M=${BENCH_RUNS_1M:-3}
REPS_1M=${BENCH_REPS_1M:-3}
SLOW=${BENCH_SLOW:-1}
SLUICE=${SLUICE:-build/sluice}
NODE=${NODE:-node}
NPM=${NPM:-npm}
PYTHON=${PYTHON:-python3}
N=100000
M=1000000
PERMITS=100

# Targets.
T_FLOOR=1.20      # sluice semaphore time / floor time, at most
T_PLIMIT=10       # p-limit time / sluice limit time, at least
T_PAIR=20         # ns per uncontended try_acquire+release, at most
T_PARKED=500      # bytes per parked task, at most
T_QUEUED=100      # bytes per queued limit() call, at most

if [ ! -x "$SLUICE" ]; then
  echo "bench: $SLUICE not found; run make first" >&2
  exit 1
fi
have() { command -v "$1" >/dev/null 2>&1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
: >"$tmp/details"
: >"$tmp/notes"

# Node.js and p-limit.
have_node=0 have_plimit=0
if have "$NODE"; then
  have_node=1
  if [ ! -d bench/node_modules/p-limit ] && have "$NPM"; then
    echo "bench: installing the npm packages of bench/package.json into bench/node_modules" >&2
    "$NPM" install --prefix bench --no-audit --no-fund --no-package-lock --loglevel=error >"$tmp/npm" 2>&1 ||
      { cat "$tmp/npm" >&2; echo "bench: npm install failed; p-limit shows as n/a" >&2; }
  fi
  [ -d bench/node_modules/p-limit ] && have_plimit=1
fi
have_python=0
have "$PYTHON" && have_python=1

# Does this sluice have limit() (and bench/limit.lua)?
have_limit=0
printf 'print(require("sluice").limit and "yes" or "no")\n' >"$tmp/haslimit.lua"
if [ -f bench/limit.lua ] && [ "$("$SLUICE" "$tmp/haslimit.lua" 2>/dev/null)" = yes ]; then
  have_limit=1
fi

median() { sort -n | awk '{ v[NR] = $1 } END {
  if (NR == 0) exit 1
  if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]
  else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run KEY RUNS CMD...: runs CMD RUNS times (each its own process), reads
# the in-process median (ms) from the result line "name: ...: X ms (...",
# writes the median of those to $tmp/KEY (n/a if the command failed) and
# keeps them all for the details.
run() {
  key=$1 runs=$2
  shift 2
  i=0
  : >"$tmp/$key.times"
  while [ "$i" -lt "$runs" ]; do
    if ! "$@" >"$tmp/out" 2>&1; then
      echo "bench: failed: $*" >&2
      sed 's/^/  /' "$tmp/out" >&2
      echo "$key: failed: $*" >>"$tmp/notes"
      echo n/a >"$tmp/$key"
      return 0
    fi
    sed -n 's/^[a-z]*: .*: \([0-9.]*\) ms (.*/\1/p' "$tmp/out" | head -n 1 >>"$tmp/$key.times"
    cp "$tmp/out" "$tmp/$key.out"
    i=$((i + 1))
  done
  printf '  %-16s %s\n' "$key" "$(sort -n "$tmp/$key.times" | tr '\n' ' ')" >>"$tmp/details"
  median <"$tmp/$key.times" >"$tmp/$key"
}
skip() { echo n/a >"$tmp/$1"; }
get() { cat "$tmp/$1"; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -s)
echo "machine: $(nproc) CPUs, $cpu; $os, Linux $(uname -r)"
echo "load:    $(cut -d" " -f1-3 /proc/loadavg 2>/dev/null || echo n/a) (1/5/15 min, at start)"
echo "sluice:  $("$SLUICE" -v </dev/null | head -n 1)"
if [ "$have_node" = 1 ]; then
  pl=n/a
  [ "$have_plimit" = 1 ] && pl=$("$NODE" -p 'require("./bench/node_modules/p-limit/package.json").version')
  echo "node:    $("$NODE" --version), p-limit $pl"
fi
if [ "$have_python" = 1 ]; then echo "python:  $("$PYTHON" --version 2>&1)"; fi
echo "method:  each variant is its own process, run $RUNS times at 100,000 tasks ($RUNS_1M at 1,000,000), each process the"
echo "         median of $REPS ($REPS_1M) in-process repetitions after a warm-up; the median of the processes shown"
echo "         (Python at 1,000,000 and the seed's unchanged Semaphore: one process, one repetition)"
echo

# ---------------------------------------------------------------- runs
NODE_RUN="$NODE --expose-gc"
for n in $N $M; do
  if [ "$n" = "$N" ]; then r=$RUNS k=$REPS; else r=$RUNS_1M k=$REPS_1M; fi
  run "floor_$n" "$r" "$SLUICE" bench/floor.lua "$n" "$PERMITS" "$k"
  run "gate_$n" "$r" "$SLUICE" bench/gate.lua "$n" "$PERMITS" "$k"
  if [ "$have_node" = 1 ]; then
    run "nodeimm_$n" "$r" $NODE_RUN bench/node/gate.mjs "$n" "$PERMITS" "$k" immediate
    run "nodemic_$n" "$r" $NODE_RUN bench/node/gate.mjs "$n" "$PERMITS" "$k" microtask
  else
    skip "nodeimm_$n"; skip "nodemic_$n"
  fi
  if [ "$have_python" = 1 ] && [ "$n" = "$N" ]; then
    run "py_$n" "$r" "$PYTHON" bench/python/gate.py "$n" "$PERMITS" "$k"
  elif [ "$have_python" = 1 ] && [ "$SLOW" != 0 ]; then
    run "py_$n" 1 "$PYTHON" bench/python/gate.py "$n" "$PERMITS" 1 0
  else
    skip "py_$n"
    [ "$have_python" = 1 ] && echo "py_$n: skipped (BENCH_SLOW=0)" >>"$tmp/notes"
  fi
done

if [ "$have_limit" = 1 ]; then
  run lim_ret "$RUNS" "$SLUICE" bench/limit.lua "$N" "$REPS" "$PERMITS" return
  run lim_turn "$RUNS" "$SLUICE" bench/limit.lua "$N" "$REPS" "$PERMITS" sleep
else
  skip lim_ret; skip lim_turn
  echo "limit: sluice.limit (or bench/limit.lua) is not there yet: its rows show n/a" >>"$tmp/notes"
fi
if [ "$have_plimit" = 1 ]; then
  run plim_ret "$RUNS" $NODE_RUN bench/node/plimit.mjs "$N" "$REPS" plimit resolve
  run plim_turn "$RUNS" $NODE_RUN bench/node/plimit.mjs "$N" "$REPS" plimit immediate
else
  skip plim_ret; skip plim_turn
fi
if [ "$have_node" = 1 ]; then
  run nsem_ret "$RUNS" $NODE_RUN bench/node/plimit.mjs "$N" "$REPS" semaphore resolve
  run raw_ret "$RUNS" $NODE_RUN bench/node/plimit.mjs "$N" "$REPS" raw resolve
  if [ "$SLOW" != 0 ]; then
    run seed_ret 1 $NODE_RUN bench/node/plimit.mjs "$N" 1 seedsem resolve
  else
    skip seed_ret
    echo "seed_ret: skipped (BENCH_SLOW=0)" >>"$tmp/notes"
  fi
else
  skip nsem_ret; skip raw_ret; skip seed_ret
fi
if [ "$have_python" = 1 ]; then
  run pyl_ret "$RUNS" "$PYTHON" bench/python/limit.py "$N" "$REPS" return
  run pyl_turn "$RUNS" "$PYTHON" bench/python/limit.py "$N" "$REPS" sleep
else
  skip pyl_ret; skip pyl_turn
fi

# Per-operation figures: one value per process, median of the processes.
: >"$tmp/pair.all"
: >"$tmp/parked.all"
: >"$tmp/queued.all"
: >"$tmp/counter.all"
i=0
while [ "$i" -lt "$RUNS" ]; do
  if "$SLUICE" bench/trypair.lua 10000000 "$REPS" >"$tmp/out" 2>&1; then
    sed -n 's/^trypair: .*(\([0-9.]*\) ns\/pair).*/\1/p' "$tmp/out" >>"$tmp/pair.all"
  else
    sed 's/^/  /' "$tmp/out" >&2
    echo "trypair: failed" >>"$tmp/notes"
  fi
  if "$SLUICE" bench/memory.lua "$N" >"$tmp/out" 2>&1; then
    cp "$tmp/out" "$tmp/memory.out"
    sed -n 's/^memory: .* parked .*: \([0-9.]*\) bytes (.*/\1/p' "$tmp/out" >>"$tmp/parked.all"
    sed -n 's/^memory: .* queued in limit.*: \([0-9.]*\) bytes (.*/\1/p' "$tmp/out" >>"$tmp/queued.all"
  else
    sed 's/^/  /' "$tmp/out" >&2
    echo "memory: failed" >>"$tmp/notes"
  fi
  i=$((i + 1))
done
printf '  %-16s %s\n' trypair_ns "$(sort -n "$tmp/pair.all" | tr '\n' ' ')" >>"$tmp/details"
printf '  %-16s %s\n' parked_bytes "$(sort -n "$tmp/parked.all" | tr '\n' ' ')" >>"$tmp/details"
printf '  %-16s %s\n' queued_bytes "$(sort -n "$tmp/queued.all" | tr '\n' ' ')" >>"$tmp/details"
median <"$tmp/pair.all" >"$tmp/pair" 2>/dev/null || echo n/a >"$tmp/pair"
median <"$tmp/parked.all" >"$tmp/parked" 2>/dev/null || echo n/a >"$tmp/parked"
median <"$tmp/queued.all" >"$tmp/queued" 2>/dev/null || echo n/a >"$tmp/queued"

# ---------------------------------------------------------------- table
# cell MS PER UNIT: "12.3 ms (123 ns/UNIT)"
cell() {
  [ "$1" = n/a ] && { echo n/a; return; }
  awk -v ms="$1" -v per="$2" -v unit="$3" 'BEGIN { printf "%.1f ms (%.0f ns/%s)", ms, ms * 1e6 / per, unit }'
}
# ratio A B: A/B to two places, n/a if either is
ratio() {
  { [ "$1" = n/a ] || [ "$2" = n/a ]; } && { echo n/a; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}
# check VALUE OP LIMIT: ✓ or ✗ (OP: le or ge)
check() {
  [ "$1" = n/a ] && { echo "n/a"; return; }
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = op == "le" ? v <= t : v >= t; print ok ? "✓" : "✗" }'
}
row() {  # row BENCH VARIANT CELL RATIO TARGET
  printf '| %-27s | %-44s | %-26s | %-19s | %s |\n' "$1" "$2" "$3" "$4" "$5"
}

row benchmark variant "median time" ratio target
printf '|%s|%s|%s|%s|%s|\n' ----------------------------- ---------------------------------------------- ---------------------------- --------------------- ------------------
for n in $N $M; do
  b="gate: $n tasks"
  f=$(get "floor_$n") s=$(get "gate_$n")
  rf=$(ratio "$s" "$f")
  row "$b" "pure-LuaJIT floor (bench/floor.lua)" "$(cell "$f" "$n" task)" "" ""
  row "$b" "sluice.semaphore($PERMITS)" "$(cell "$s" "$n" task)" "sluice/floor $rf" "≤ $T_FLOOR× floor $(check "$rf" le "$T_FLOOR")"
  row "$b" "Node Semaphore O(1) queue, setImmediate" "$(cell "$(get "nodeimm_$n")" "$n" task)" "node/sluice $(ratio "$(get "nodeimm_$n")" "$s")" ""
  row "$b" "Node Semaphore O(1) queue, await null" "$(cell "$(get "nodemic_$n")" "$n" task)" "node/sluice $(ratio "$(get "nodemic_$n")" "$s")" ""
  row "$b" "Python asyncio.Semaphore, sleep(0)" "$(cell "$(get "py_$n")" "$n" task)" "python/sluice $(ratio "$(get "py_$n")" "$s")" ""
done
b="limit: $N calls"
l=$(get lim_ret) p=$(get plim_ret)
rp=$(ratio "$p" "$l")
row "$b" "sluice.limit($PERMITS), fn returns at once" "$(cell "$l" "$N" call)" "" ""
row "$b" "p-limit($PERMITS), Promise.resolve(1)" "$(cell "$p" "$N" call)" "p-limit/sluice $rp" "≥ $T_PLIMIT× $(check "$rp" ge "$T_PLIMIT")"
row "$b" "Node Semaphore O(1) queue, withPermit" "$(cell "$(get nsem_ret)" "$N" call)" "node/sluice $(ratio "$(get nsem_ret)" "$l")" ""
row "$b" "seed Semaphore (Array.shift), withPermit" "$(cell "$(get seed_ret)" "$N" call)" "node/sluice $(ratio "$(get seed_ret)" "$l")" ""
row "$b" "raw Promise.all, no limit" "$(cell "$(get raw_ret)" "$N" call)" "node/sluice $(ratio "$(get raw_ret)" "$l")" ""
row "$b" "Python asyncio.Semaphore, returns at once" "$(cell "$(get pyl_ret)" "$N" call)" "python/sluice $(ratio "$(get pyl_ret)" "$l")" ""
b="limit: $N calls, 1 turn"
l=$(get lim_turn)
row "$b" "sluice.limit($PERMITS), fn does sleep(0)" "$(cell "$l" "$N" call)" "" ""
row "$b" "p-limit($PERMITS), fn awaits setImmediate" "$(cell "$(get plim_turn)" "$N" call)" "p-limit/sluice $(ratio "$(get plim_turn)" "$l")" ""
row "$b" "Python asyncio.Semaphore, fn does sleep(0)" "$(cell "$(get pyl_turn)" "$N" call)" "python/sluice $(ratio "$(get pyl_turn)" "$l")" ""
echo

pair=$(get pair) parked=$(get parked) queued=$(get queued)
unit() { [ "$1" = n/a ] && echo n/a || echo "$1 $2"; }
printf '| %-44s | %-12s | %s |\n' "per operation (sluice)" "median" target
printf '|%s|%s|%s|\n' ---------------------------------------------- -------------- ----------------
printf '| %-44s | %-12s | %s |\n' "uncontended try_acquire() + release()" "$(unit "$pair" ns)" "≤ $T_PAIR ns $(check "$pair" le "$T_PAIR")"
printf '| %-44s | %-12s | %s |\n' "memory per task parked in acquire()" "$(unit "$parked" bytes)" "≤ $T_PARKED bytes $(check "$parked" le "$T_PARKED")"
printf '| %-44s | %-12s | %s |\n' "memory per call queued in limit()" "$(unit "$queued" bytes)" "≤ $T_QUEUED bytes $(check "$queued" le "$T_QUEUED")"
echo
echo "Times are in-process (start-up excluded); lower is better.  x/sluice > 1 means sluice is faster."
echo "One scheduler turn: sluice.sleep(0); Node.js setImmediate (or await null, a microtask, which never"
echo "lets I/O in); Python asyncio.sleep(0).  Memory: Lua heap (collectgarbage) + C heap (malloc)."
if [ -f "$tmp/memory.out" ]; then
  echo "Memory, last run of bench/memory.lua:"
  sed 's/^/  /' "$tmp/memory.out"
fi
if [ -s "$tmp/notes" ]; then
  echo "Notes:"
  sed 's/^/  /' "$tmp/notes"
fi
echo "Per-process medians (ms; trypair ns, memory bytes), sorted:"
cat "$tmp/details"
