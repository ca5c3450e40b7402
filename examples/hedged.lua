-- examples/hedged.lua: cutting tail latency with sluice.hedge over real
-- HTTP, and showing that the losing requests are really aborted.
--
--   build/sluice examples/hedged.lua [--n 1000] [--concurrency 20] [--delay 50]
--
-- A local server (127.0.0.1, random port) answers most requests in 5-20
-- ms, but 5% of them take 500 ms: a slow tail, as from a GC pause or a
-- cold cache on one replica.  The client makes --n requests (at most
-- --concurrency at once), first plainly, then hedged: if an answer has
-- not come after --delay ms, a second identical request goes out, and the
-- first answer wins.  p99 falls from about 500 ms to about delay + 20 ms,
-- at the cost of a few percent more requests.
--
-- The loser is cancelled, which aborts its transfer and closes its
-- connection; the server sees the client go and cancels the handler (the
-- seed's hedgedRequest leaves the loser running).  The server counts the
-- handlers that were cancelled that way.
local sluice = require "sluice"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local report = require "support.report"
local http = sluice.http

local o = report.options("hedged", { n = 1000, concurrency = 20, delay = 50, seed = 1 },
  "[--n 1000] [--concurrency 20] [--delay 50 (ms)] [--seed 1]")
math.randomseed(o.seed)

local server = { requests = 0, slow = 0, finished = 0, cancelled = 0 }
local srv = http.serve { port = 0, handler = function()
  server.requests = server.requests + 1
  local slow = math.random() < 0.05
  if slow then server.slow = server.slow + 1 end
  local ok, err = pcall(sluice.sleep, slow and 0.5 or 0.005 + math.random() * 0.015)
  if not ok then
    server.cancelled = server.cancelled + 1   -- the client went away
    error(err, 0)
  end
  server.finished = server.finished + 1
  return "ok"
end }
local url = "http://127.0.0.1:" .. srv.port .. "/item"

local function run(label, fetch)
  local before = { requests = server.requests, slow = server.slow, cancelled = server.cancelled }
  local took, failed = {}, 0
  local items = {}
  for i = 1, o.n do items[i] = i end
  local t0 = sluice.now()
  sluice.map(items, function(i)
    local t = sluice.now()
    local ok, body = pcall(fetch)
    if ok and body == "ok" then took[#took + 1] = sluice.now() - t else failed = failed + 1 end
  end, { concurrency = o.concurrency, progress = true })
  local elapsed = sluice.now() - t0
  sluice.sleep(0.05)   -- let the server see the last dropped connections
  local lat, sorted = report.latency(took)
  print(string.format("%-9s %s", label, lat))
  print(string.format("          %d requests in %.2f s, %d failed; the server got %d requests (%d slow), %d cancelled",
    o.n, elapsed, failed, server.requests - before.requests, server.slow - before.slow,
    server.cancelled - before.cancelled))
  return report.percentile(sorted, 99), server.cancelled - before.cancelled, failed
end

print(string.format("hedged: %d GETs, %d at a time, from a server where 5%% of answers take 500 ms (others 5-20 ms)",
  o.n, o.concurrency))
print()
local attempts = 0
local p99_plain, _, f1 = run("plain", function() return http.get(url).body end)
local p99_hedged, aborted, f2 = run("hedged", function()
  return sluice.hedge(function()
    attempts = attempts + 1
    return http.get(url).body
  end, { delay = o.delay / 1000 })
end)
print()
print(string.format("p99 %.0f ms -> %.0f ms with a hedge after %d ms: %d extra requests (%.1f%%)",
  p99_plain * 1000, p99_hedged * 1000, o.delay, attempts - o.n, (attempts - o.n) / o.n * 100))
print(string.format("losers aborted: %d server handlers cancelled when their client dropped the connection", aborted))
print(string.format("failures: %d", f1 + f2))
srv:close()
os.exit((f1 + f2 == 0 and p99_hedged < p99_plain) and 0 or 1)
