// bench/node/gate.mjs: the Node.js side of bench/gate.lua.
//
//   node bench/node/gate.mjs [n=100000] [permits=100] [reps=5] [turn=immediate|microtask]
//
// N gated tasks through the seed's Semaphore (acquire, hand-off to the
// next waiter with queueMicrotask, release) with one change: its waiter
// queue is a ring buffer, O(1) per operation, where the seed's
// Array.prototype.shift is O(n) in the queue's length (both are in
// bench/node/semaphore.mjs).  Each task is an
// async function that acquires a permit, holds it across one scheduler
// turn and releases it; all N are started, then awaited with Promise.all.
//
// What "one scheduler turn" means here.  sluice.sleep(0) puts the task at
// the back of the ready queue: every task that was ready before it runs
// first, and the event loop polls I/O every so many passes of that queue.
// Node's closest match is setImmediate: the callbacks queued during one
// check phase run together in the next iteration of the loop, after I/O
// has been polled, which is the default (turn=immediate, the same
// equivalence bench/node/pingpong.mjs uses).  `await null` (turn=microtask)
// only goes to the back of the microtask queue: it is cheaper, but it
// never lets timers or I/O in, so it is a weaker yield than sleep(0);
// bench/limits.sh reports it as a second Node.js row.
//
// Timed in-process with process.hrtime.bigint(); one warm-up repetition
// is not counted, then the median of `reps` repetitions is printed.
const N = Number(process.argv[2] ?? 100000);
const PERMITS = Number(process.argv[3] ?? 100);
const REPS = Number(process.argv[4] ?? 5);
const TURN = process.argv[5] ?? "immediate";
if (TURN !== "immediate" && TURN !== "microtask") throw new Error(`turn: immediate or microtask, not ${TURN}`);

import { Semaphore } from "./semaphore.mjs";

const turn = TURN === "immediate" ? () => new Promise(setImmediate) : () => null;

async function once() {
  if (globalThis.gc) globalThis.gc();
  const sem = new Semaphore(PERMITS);
  let done = 0;
  async function body() {
    await sem.acquire();
    await turn();
    sem.release();
    done++;
  }
  const t0 = process.hrtime.bigint();
  const tasks = new Array(N);
  for (let i = 0; i < N; i++) tasks[i] = body();
  await Promise.all(tasks);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (done !== N) throw new Error("not all tasks ran");
  return ms;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

await once(); // warm-up
const times = [];
for (let r = 0; r < REPS; r++) times.push(await once());
times.sort((a, b) => a - b);
const med = median(times);
console.log(`gate: ${N} gated tasks, Semaphore(${PERMITS}) with O(1) queue, hold across ${TURN === "immediate" ? "setImmediate" : "await null"}: ${med.toFixed(1)} ms (${(med * 1e6 / N).toFixed(0)} ns/task)`);
console.log(`  node ${process.versions.node}; median of ${REPS} runs, min ${times[0].toFixed(1)} ms, max ${times[times.length - 1].toFixed(1)} ms`);
