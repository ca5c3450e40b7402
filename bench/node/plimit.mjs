// bench/node/plimit.mjs: the seed's "Concurrency Control Overhead"
// benchmark, one variant per process: N calls of `() => Promise.resolve(1)`
// made at once, then awaited with Promise.all.
//
//   node bench/node/plimit.mjs [n=100000] [reps=5] [variant=plimit] [work=resolve|immediate]
//
// variant:
//   raw       no limit: Array.from({length: n}, () => fn()), as the seed
//   plimit    through pLimit(100) of the real p-limit package (npm,
//             installed into bench/node_modules by bench/limits.sh)
//   semaphore through Semaphore(100).withPermit, the seed's class with an
//             O(1) waiter queue (bench/node/semaphore.mjs)
//   seedsem   through the seed's Semaphore unchanged (Array.shift, O(n))
// work:
//   resolve   fn = () => Promise.resolve(1), as in the seed (default)
//   immediate fn = () => new Promise(r => setImmediate(r, 1)): the call
//             holds its place across one turn of the event loop (the
//             equivalent of sluice.sleep(0); see bench/node/gate.mjs)
//
// Timed in-process with process.hrtime.bigint(); one warm-up repetition
// is not counted, then the median of `reps` repetitions is printed.
import { Semaphore, SeedSemaphore } from "./semaphore.mjs";

const N = Number(process.argv[2] ?? 100000);
const REPS = Number(process.argv[3] ?? 5);
const VARIANT = process.argv[4] ?? "plimit";
const WORK = process.argv[5] ?? "resolve";
const CONCURRENCY = 100;

const fn = WORK === "resolve" ? () => Promise.resolve(1)
  : WORK === "immediate" ? () => new Promise((r) => setImmediate(r, 1))
  : null;
if (!fn) throw new Error(`work: resolve or immediate, not ${WORK}`);

let make, label;
if (VARIANT === "raw") {
  make = () => Array.from({ length: N }, () => fn());
  label = "raw Promise.all";
} else if (VARIANT === "plimit") {
  const { default: pLimit } = await import("p-limit");
  make = () => {
    const limit = pLimit(CONCURRENCY);
    return Array.from({ length: N }, () => limit(fn));
  };
  label = `p-limit(${CONCURRENCY})`;
} else if (VARIANT === "semaphore" || VARIANT === "seedsem") {
  const Sem = VARIANT === "semaphore" ? Semaphore : SeedSemaphore;
  make = () => {
    const sem = new Sem(CONCURRENCY);
    return Array.from({ length: N }, () => sem.withPermit(fn));
  };
  label = VARIANT === "semaphore" ? `Semaphore(${CONCURRENCY}) O(1) queue` : `seed Semaphore(${CONCURRENCY}) Array.shift`;
} else {
  throw new Error(`variant: raw, plimit, semaphore or seedsem, not ${VARIANT}`);
}

async function once() {
  if (globalThis.gc) globalThis.gc();
  const t0 = process.hrtime.bigint();
  const results = await Promise.all(make());
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  let sum = 0;
  for (const v of results) sum += v;
  if (sum !== N) throw new Error("wrong sum");
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
let pkg = "";
if (VARIANT === "plimit") {
  const { createRequire } = await import("node:module");
  try { pkg = ` (p-limit ${createRequire(import.meta.url)("p-limit/package.json").version})`; } catch { pkg = ""; }
}
console.log(`limit: ${N} calls through ${label}, ${WORK === "resolve" ? "Promise.resolve(1)" : "setImmediate"} each: ${med.toFixed(1)} ms (${(med * 1e6 / N).toFixed(0)} ns/call)`);
console.log(`  node ${process.versions.node}${pkg}; median of ${REPS} runs, min ${times[0].toFixed(1)} ms, max ${times[times.length - 1].toFixed(1)} ms`);
