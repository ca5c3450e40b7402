"""bench/python/pingpong.py: the Python asyncio side of bench/pingpong.lua.

    python3 bench/python/pingpong.py [rounds=100000] [reps=5]

Two coroutines take turns, each awaiting asyncio.sleep(0) once per round:
one round trip is one resumption of each, so 2 * rounds switches in all.
A shared turn variable checks that they really alternate.  Timed
in-process with time.perf_counter_ns(); one warm-up repetition is not
counted, then the median of `reps` repetitions is printed.
"""
import asyncio
import gc
import platform
import statistics
import sys
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5

turn = None


async def player(me, other):
    global turn
    for _ in range(ROUNDS):
        assert turn == me, "out of turn"
        turn = other
        await asyncio.sleep(0)


async def once():
    global turn
    gc.collect()
    turn = "ping"
    t0 = time.perf_counter_ns()
    a = asyncio.create_task(player("ping", "pong"))
    b = asyncio.create_task(player("pong", "ping"))
    await a
    await b
    return (time.perf_counter_ns() - t0) / 1e6


async def main():
    await once()  # warm-up
    times = sorted([await once() for _ in range(REPS)])
    med = statistics.median(times)
    print(f"pingpong: {ROUNDS} round trips ({2 * ROUNDS} switches): {med:.1f} ms "
          f"({med * 1e6 / (2 * ROUNDS):.0f} ns/switch)")
    print(f"  python {platform.python_version()} asyncio; median of {REPS} runs, "
          f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms")


asyncio.run(main())
