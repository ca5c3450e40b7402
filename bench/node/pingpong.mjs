// bench/node/pingpong.mjs: the Node.js side of bench/pingpong.lua.
//
//   node bench/node/pingpong.mjs [rounds=100000] [reps=5]
//
// Two async loops take turns, each awaiting `new Promise(setImmediate)`
// once per round: one round trip is one resumption of each loop, so
// 2 * rounds switches in all.  A shared turn variable checks that they
// really alternate.  Timed in-process with process.hrtime.bigint(); one
// warm-up repetition is not counted, then the median of `reps` repetitions
// is printed.
const ROUNDS = Number(process.argv[2] ?? 100000);
const REPS = Number(process.argv[3] ?? 5);

let turn;

async function player(me, other) {
  for (let i = 0; i < ROUNDS; i++) {
    if (turn !== me) throw new Error("out of turn");
    turn = other;
    await new Promise(setImmediate);
  }
}

async function once() {
  if (globalThis.gc) globalThis.gc();
  turn = "ping";
  const t0 = process.hrtime.bigint();
  const a = player("ping", "pong");
  const b = player("pong", "ping");
  await a;
  await b;
  return Number(process.hrtime.bigint() - t0) / 1e6;
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
console.log(`pingpong: ${ROUNDS} round trips (${2 * ROUNDS} switches): ${med.toFixed(1)} ms (${(med * 1e6 / (2 * ROUNDS)).toFixed(0)} ns/switch)`);
console.log(`  node ${process.versions.node}; median of ${REPS} runs, min ${times[0].toFixed(1)} ms, max ${times[times.length - 1].toFixed(1)} ms`);
