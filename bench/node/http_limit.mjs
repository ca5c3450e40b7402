// bench/node/http_limit.mjs: n GETs through pLimit(concurrency) with
// Node's built-in fetch, against the server bench/http.sh starts; the
// Node.js half of bench/http.sh (bench/http_limit.lua is sluice's).
//
//   node bench/node/http_limit.mjs URL [n=10000] [concurrency=100] [reps=3]
//   node bench/node/http_limit.mjs serve    a server printing "port N" (bench/http.sh with SERVER=node)
//
// The client: one warm-up round that is not counted, then reps rounds;
// each makes n GETs through one pLimit(concurrency) (the real p-limit
// package from bench/node_modules), reads and checks every body, and is
// timed with process.hrtime.bigint().  Prints the median as
// "node <ms> <requests/s>".  fetch keeps its connections alive across
// rounds (undici's pool), as the sluice client does.
import http from "node:http";
import pLimit from "p-limit";

// The same server as `sluice bench/http_limit.lua serve`: "ok" at once.
function serve() {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Length": 2 });
    res.end("ok");
  });
  srv.keepAliveTimeout = 60000;
  srv.listen(0, "127.0.0.1", () => console.log(`port ${srv.address().port}`));
}

async function client(url, n, conc, reps) {
  async function round() {
    const limit = pLimit(conc);
    let ok = 0;
    const one = async () => {
      const res = await fetch(url);
      const body = await res.text();
      if (res.status === 200 && body === "ok") ok++;
    };
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: n }, () => limit(one)));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ok !== n) throw new Error(`only ${ok} of ${n} requests succeeded`);
    return ms;
  }
  await round();
  const times = [];
  for (let r = 0; r < reps; r++) times.push(await round());
  times.sort((a, b) => a - b);
  const k = times.length;
  const ms = k % 2 ? times[(k - 1) / 2] : (times[k / 2 - 1] + times[k / 2]) / 2;
  console.log(`node ${ms.toFixed(1)} ${Math.round(n / ms * 1000)}`);
}

const [arg, n, conc, reps] = process.argv.slice(2);
if (arg === "serve") {
  serve();
} else if (arg) {
  await client(arg, Number(n ?? 10000), Number(conc ?? 100), Number(reps ?? 3));
} else {
  console.error("usage: node bench/node/http_limit.mjs URL [n] [concurrency] [reps] | serve");
  process.exit(1);
}
