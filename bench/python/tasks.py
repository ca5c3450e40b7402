"""bench/python/tasks.py: the Python asyncio side of bench/tasks.lua.

    python3 bench/python/tasks.py [n=100000] [reps=5]

Creates N asyncio tasks (each does trivial work and returns a value), then
awaits each in order.  Timed in-process with time.perf_counter_ns(); one
warm-up repetition is not counted, then the median of `reps` repetitions
is printed.
"""
import asyncio
import gc
import platform
import statistics
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5


async def work(i):
    return i * 2


async def once():
    gc.collect()
    t0 = time.perf_counter_ns()
    tasks = [asyncio.create_task(work(i)) for i in range(1, N + 1)]
    total = 0
    for t in tasks:
        total += await t
    t1 = time.perf_counter_ns()
    assert total == N * (N + 1), "wrong sum"
    return (t1 - t0) / 1e6


async def main():
    await once()  # warm-up
    times = sorted([await once() for _ in range(REPS)])
    med = statistics.median(times)
    print(f"tasks: spawn+await {N} tasks: {med:.1f} ms ({med * 1e6 / N:.0f} ns/task)")
    print(f"  python {platform.python_version()} asyncio; median of {REPS} runs, "
          f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms")


asyncio.run(main())
