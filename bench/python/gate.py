"""bench/python/gate.py: the Python asyncio side of bench/gate.lua.

    python3 bench/python/gate.py [n=100000] [permits=100] [reps=5] [warmup=1]

N gated tasks through asyncio.Semaphore(permits): each task acquires a
permit, holds it across one turn of the event loop (asyncio.sleep(0), the
equivalent of sluice.sleep(0)) and releases it; all N are started with
asyncio.create_task, then awaited with asyncio.gather.  Timed in-process
with time.perf_counter_ns(); one warm-up repetition is not counted, then
the median of `reps` repetitions is printed (warmup=0 skips the warm-up:
at a million tasks one repetition takes tens of seconds).
"""
import asyncio
import gc
import platform
import statistics
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
PERMITS = int(sys.argv[2]) if len(sys.argv) > 2 else 100
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
WARMUP = int(sys.argv[4]) if len(sys.argv) > 4 else 1


async def once():
    gc.collect()
    sem = asyncio.Semaphore(PERMITS)
    done = 0

    async def body():
        nonlocal done
        await sem.acquire()
        await asyncio.sleep(0)
        sem.release()
        done += 1

    t0 = time.perf_counter_ns()
    await asyncio.gather(*[asyncio.create_task(body()) for _ in range(N)])
    ms = (time.perf_counter_ns() - t0) / 1e6
    assert done == N, "not all tasks ran"
    return ms


async def main():
    if WARMUP:
        await once()  # warm-up
    times = sorted([await once() for _ in range(REPS)])
    med = statistics.median(times)
    print(f"gate: {N} gated tasks, asyncio.Semaphore({PERMITS}), hold across sleep(0): "
          f"{med:.1f} ms ({med * 1e6 / N:.0f} ns/task)")
    print(f"  python {platform.python_version()} asyncio; median of {REPS} runs, "
          f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms")


asyncio.run(main())
