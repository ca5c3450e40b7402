"""bench/python/limit.py: the Python asyncio side of bench/limit.lua and
bench/node/plimit.mjs.

    python3 bench/python/limit.py [n=100000] [reps=5] [work=return|sleep]

N calls through asyncio.Semaphore(100), the usual way to limit
concurrency in asyncio (it has no p-limit): each call is a task running
`async with sem: return await fn()`; all N are started with
asyncio.create_task, then awaited with asyncio.gather.  fn returns 1 at
once (work=return, like the seed's `() => Promise.resolve(1)`) or after
one turn of the event loop (work=sleep: asyncio.sleep(0)).  Timed
in-process with time.perf_counter_ns(); one warm-up repetition is not
counted, then the median of `reps` repetitions is printed.
"""
import asyncio
import gc
import platform
import statistics
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
WORK = sys.argv[3] if len(sys.argv) > 3 else "return"
CONCURRENCY = 100

if WORK == "return":
    async def fn():
        return 1
elif WORK == "sleep":
    async def fn():
        await asyncio.sleep(0)
        return 1
else:
    sys.exit(f"work: return or sleep, not {WORK}")


async def once():
    gc.collect()
    sem = asyncio.Semaphore(CONCURRENCY)

    async def limited():
        async with sem:
            return await fn()

    t0 = time.perf_counter_ns()
    results = await asyncio.gather(*[asyncio.create_task(limited()) for _ in range(N)])
    ms = (time.perf_counter_ns() - t0) / 1e6
    assert sum(results) == N, "wrong sum"
    return ms


async def main():
    await once()  # warm-up
    times = sorted([await once() for _ in range(REPS)])
    med = statistics.median(times)
    what = "returning at once" if WORK == "return" else "sleep(0) each"
    print(f"limit: {N} calls through asyncio.Semaphore({CONCURRENCY}), {what}: "
          f"{med:.1f} ms ({med * 1e6 / N:.0f} ns/call)")
    print(f"  python {platform.python_version()} asyncio; median of {REPS} runs, "
          f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms")


asyncio.run(main())
