#!/bin/sh
# bench/flow.sh: the flow-control benchmarks, one process each: token
# bucket take/try_take, channel send/recv (buffered, rendezvous, try_*),
# and imap over 1,000,000 items with the Lua heap at its start, middle and
# end (bounded look-ahead keeps it flat).  Each script times in-process
# (uv.hrtime), after a warm-up, and prints the median of its repetitions.
#
#   bench/flow.sh          (`make bench` runs it after bench/limits.sh)
#
# Environment: SLUICE (default build/sluice).
set -eu
cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-build/sluice}
if [ ! -x "$SLUICE" ]; then
  echo "bench: $SLUICE not found; run make first" >&2
  exit 1
fi
echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
echo "sluice:  $("$SLUICE" -v </dev/null | head -n 1)"
echo
"$SLUICE" bench/bucket.lua
"$SLUICE" bench/channel.lua
"$SLUICE" bench/imap.lua
