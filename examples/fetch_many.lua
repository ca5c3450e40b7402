-- examples/fetch_many.lua: 10,000 URLs fetched through limit(50), then
-- the same kind of fetch with no limit at all.
--
--   build/sluice examples/fetch_many.lua [--n 10000] [--limit 50] [--unlimited 2000]
--
-- The seed's war story: `await Promise.all(urls.map(fetch))` opens one
-- socket per URL at once.  With a few hundred URLs it works; with tens of
-- thousands the process runs out of file descriptors ("EMFILE: too many
-- open files") or the peer starts refusing connections.  A limit keeps
-- the sockets in use at the limit, however long the list.
--
-- The example starts its own HTTP server on 127.0.0.1 (a random port;
-- each answer takes 5-15 ms), fetches --n URLs through
-- sluice.limit(--limit) with a progress line on stderr (when it is a
-- terminal), and prints the throughput, latency percentiles and the peak
-- of open file descriptors, sampled every 5 ms by a ticker task from
-- /proc/self/fd.  Both ends of each connection live in this process, so
-- one connection costs two descriptors.
--
-- Then it fetches --unlimited URLs with no limit (a task per URL, all at
-- once), at a size chosen so that it cannot exhaust the descriptors: the
-- peak grows with the number of requests instead of staying at the limit.
local sluice = require "sluice"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local report = require "support.report"
local http = sluice.http

local o = report.options("fetch_many", { n = 10000, limit = 50, unlimited = 2000 },
  "[--n 10000] [--limit 50] [--unlimited 2000]")

-- The unlimited run must stay well inside the descriptor limit: each
-- request costs two descriptors (client and server side).
local max_fds
do
  local f = io.open("/proc/self/limits")
  if f then
    max_fds = tonumber(f:read("*a"):match("Max open files%s+(%d+)"))
    f:close()
  end
end
if max_fds and o.unlimited * 2 + 100 > max_fds then
  o.unlimited = math.floor((max_fds - 100) / 4)
  print(string.format("(descriptor limit %d: the unlimited run is cut to %d requests)", max_fds, o.unlimited))
end

local srv = http.serve { port = 0, handler = function(req)
  sluice.sleep(0.005 + math.random() * 0.010)
  return "item " .. req.params.id
end }
local base = "http://127.0.0.1:" .. srv.port .. "/item?id="

-- Fetches n URLs; schedule(n, one) decides how the calls one(i) run.
-- Returns the elapsed time, the latencies, the failures and the peak fds.
local function measure(label, n, schedule)
  local fds = report.sampler()
  local took, done, failed = {}, 0, 0
  local t0 = sluice.now()
  local function one(i)
    local t = sluice.now()
    local ok, res = pcall(http.get, base .. i)
    if ok and res.status == 200 and res.body == "item " .. i then
      took[#took + 1] = sluice.now() - t
    else
      failed = failed + 1
    end
    done = done + 1
  end
  local function line()
    local el = sluice.now() - t0
    return string.format("  %-9s %s %6d/%d  %6.0f req/s  %5d fds open",
      label, report.bar(done, n), done, n, el > 0 and done / el or 0, fds.peak)
  end
  sluice.scope(function(s)
    local ticker = report.ticker(s, 0.005, fds.sample)
    local progress = report.tty and report.ticker(s, 0.1, function() report.progress(line()) end)
    schedule(n, one)
    fds.sample()
    ticker:cancel()
    if progress then progress:cancel() end
  end)
  report.progress_done(line())
  return sluice.now() - t0, took, failed, fds
end

local function summary(n, elapsed, took, failed, fds, note)
  print(string.format("  %d requests in %.2f s: %.0f requests/s, %d failed", n, elapsed, n / elapsed, failed))
  print("  latency   " .. report.latency(took))
  print(string.format("  peak open fds %s (%s before the run)%s", report.fmt_fds(fds.peak),
    report.fmt_fds(fds.base), note or ""))
end

print(string.format("fetch_many: %d URLs from a local server (127.0.0.1:%d), at most %d at a time",
  o.n, srv.port, o.limit))
local limited = sluice.limit(o.limit)
local e1, t1, f1, fd1 = measure("limit(" .. o.limit .. ")", o.n, function(n, one)
  local calls = {}
  for i = 1, n do calls[i] = limited(one, i) end
  for i = 1, n do calls[i]:await() end
end)
summary(o.n, e1, t1, f1, fd1)

print()
print(string.format("no limit: %d URLs, a task each, all at once (the seed's Promise.all)", o.unlimited))
local e2, t2, f2, fd2 = measure("no limit", o.unlimited, function(n, one)
  sluice.scope(function(s)
    for i = 1, n do s:spawn(one, i) end
  end)
end)
summary(o.unlimited, e2, t2, f2, fd2)

print()
local grow1 = fd1.peak - (fd1.base or 0)
local grow2 = fd2.peak - (fd2.base or 0)
print(string.format("limit(%d): %d requests opened at most %d descriptors (the idle connections stay open for reuse);", o.limit, o.n, grow1))
print(string.format("no limit: %d requests opened %d, about %.1f per request.", o.unlimited, grow2,
  grow2 / o.unlimited))
print(string.format("At %d URLs with no limit that would be about %d descriptors%s.", o.n * 10,
  math.floor(grow2 / o.unlimited * o.n * 10),
  max_fds and string.format(" (this process may open %d)", max_fds) or ""))
print(string.format("failures: %d", f1 + f2))
srv:close()
if f1 + f2 > 0 then os.exit(1) end
