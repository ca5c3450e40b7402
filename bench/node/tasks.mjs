// bench/node/tasks.mjs: the Node.js side of bench/tasks.lua.
//
//   node bench/node/tasks.mjs [n=100000] [reps=5]
//
// Starts N async functions (each does trivial work and returns a value),
// then awaits them all with Promise.all.  Timed in-process with
// process.hrtime.bigint(); one warm-up repetition is not counted, then the
// median of `reps` repetitions is printed.
const N = Number(process.argv[2] ?? 100000);
const REPS = Number(process.argv[3] ?? 5);

async function work(i) {
  return i * 2;
}

async function once() {
  if (globalThis.gc) globalThis.gc();
  const t0 = process.hrtime.bigint();
  const promises = new Array(N);
  for (let i = 0; i < N; i++) promises[i] = work(i + 1);
  const results = await Promise.all(promises);
  const t1 = process.hrtime.bigint();
  let sum = 0;
  for (const v of results) sum += v;
  if (sum !== N * (N + 1)) throw new Error("wrong sum");
  return Number(t1 - t0) / 1e6;
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
console.log(`tasks: spawn+await ${N} tasks: ${med.toFixed(1)} ms (${(med * 1e6 / N).toFixed(0)} ns/task)`);
console.log(`  node ${process.versions.node}; median of ${REPS} runs, min ${times[0].toFixed(1)} ms, max ${times[times.length - 1].toFixed(1)} ms`);
