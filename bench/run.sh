#!/bin/sh
# bench/run.sh: runs each benchmark on sluice, Node.js and Python asyncio,
# several times each (every run its own process), and prints a table of
# the median in-process times with the ratio sluice/node and the machine.
#
#   bench/run.sh            (or `make bench`, which builds sluice first)
#
# Environment:
#   BENCH_RUNS  processes per variant (default 5)
#   BENCH_REPS  in-process repetitions per process, median taken (default 5)
#   BENCH_N     tasks / round trips per repetition (default 100000)
#   SLUICE, NODE, PYTHON  the interpreters (default build/sluice, node, python3);
#   a missing node or python3 is shown as n/a.
set -eu
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-5}
REPS=${BENCH_REPS:-5}
N=${BENCH_N:-100000}
SLUICE=${SLUICE:-build/sluice}
NODE=${NODE:-node}
PYTHON=${PYTHON:-python3}

if [ ! -x "$SLUICE" ]; then
  echo "bench: $SLUICE not found; run make first" >&2
  exit 1
fi
have() { command -v "$1" >/dev/null 2>&1; }

median() { sort -n | awk '{ v[NR] = $1 } END {
  if (NR == 0) exit 1
  if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]
  else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run_variant LABEL CMD...: runs CMD $RUNS times; prints the median of
# the in-process medians (ms), read from the result line "...: X ms (...",
# and keeps them all for the details.
run_variant() {
  label=$1
  shift
  i=0
  : >"$tmp/times"
  while [ "$i" -lt "$RUNS" ]; do
    if ! "$@" "$N" "$REPS" >"$tmp/out" 2>&1; then
      echo "bench: failed: $*" >&2
      cat "$tmp/out" >&2
      exit 1
    fi
    sed -n 's/^[a-z]*: .*: \([0-9.]*\) ms (.*/\1/p' "$tmp/out" >>"$tmp/times"
    i=$((i + 1))
  done
  printf '  %-9s %-7s %s\n' "$bench" "$label" "$(sort -n "$tmp/times" | tr '\n' ' ')" >>"$tmp/details"
  median <"$tmp/times"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
: >"$tmp/details"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
[ -n "$cpu" ] || cpu=$(uname -m)
os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -s)
echo "machine: $(nproc) CPUs, $cpu; $os, Linux $(uname -r)"
echo "load:    $(cut -d" " -f1-3 /proc/loadavg 2>/dev/null || echo n/a) (1/5/15 min, at start)"
echo "sluice:  $("$SLUICE" -v </dev/null | head -n 1)"
if have "$NODE"; then echo "node:    $("$NODE" --version)"; fi
if have "$PYTHON"; then echo "python:  $("$PYTHON" --version 2>&1)"; fi
echo "method:  $RUNS processes per variant, each the median of $REPS in-process repetitions after a warm-up; median of the processes shown"
echo

row() {  # row NAME UNIT PER: runs the three variants of bench NAME
  name=$1 unit=$2 per=$3
  bench=$name
  s=$(run_variant sluice "$SLUICE" "bench/$name.lua")
  n=n/a p=n/a
  if have "$NODE"; then n=$(run_variant node "$NODE" --expose-gc "bench/node/$name.mjs"); fi
  if have "$PYTHON"; then p=$(run_variant python "$PYTHON" "bench/python/$name.py"); fi
  cell() {
    [ "$1" = n/a ] && { echo n/a; return; }
    awk -v ms="$1" -v per="$per" -v unit="$unit" 'BEGIN { printf "%.1f ms (%.0f ns/%s)", ms, ms * 1e6 / per, unit }'
  }
  ratio=n/a
  [ "$n" = n/a ] || ratio=$(awk -v a="$s" -v b="$n" 'BEGIN { printf "%.2f", a / b }')
  printf '| %-26s | %-26s | %-26s | %-26s | %-11s |\n' "$4" "$(cell "$s")" "$(cell "$n")" "$(cell "$p")" "$ratio"
}

printf '| %-26s | %-26s | %-26s | %-26s | %-11s |\n' benchmark sluice "node" "python asyncio" sluice/node
printf '|%s|%s|%s|%s|%s|\n' ---------------------------- ---------------------------- ---------------------------- ---------------------------- -------------
row tasks task "$N" "tasks: spawn+await $N"
row pingpong switch "$((2 * N))" "pingpong: $N rounds"
echo
echo "Times are in-process (start-up excluded); lower is better; sluice/node < 1 means sluice is faster."
echo "Per-process medians (ms), sorted:"
cat "$tmp/details"
