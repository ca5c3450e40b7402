-- examples/demo.lua: 10,000 simulated requests through a concurrency
-- limit of 50.
--
--   build/sluice examples/demo.lua [--requests N] [--limit N] [--seed N] [--fast]
--   make demo
--
-- Each request "takes" a random latency between 5 and 200 ms (5 ms plus
-- an exponential tail, capped; mean about 67 ms) spent in sluice.sleep.
-- With 50 requests in flight the run lasts about 10000 * 67 ms / 50 =
-- 13.4 s (Little's law).  --fast runs the same program on the virtual
-- clock, where time jumps to the next timer whenever every task is
-- waiting: the simulated 13 s pass in a fraction of a second and the
-- numbers are exact.
-- (`build/sluice --virtual-time examples/demo.lua` does the same for the
-- whole process.)
--
-- While it runs, a progress line is drawn on stderr if stderr is a
-- terminal.  At the end it prints the total time, the throughput, latency
-- percentiles and the peak concurrency observed, and checks that the limit
-- held: exactly 50 requests in flight at the peak, never more.
local sluice = require "sluice"
local uv = sluice.uv

---------------------------------------------------------------- options

local opts = { requests = 10000, limit = 50, seed = 1, fast = false }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    local name = a:match("^%-%-(%a+)$")
    if name == "fast" then
      opts.fast = true
    elseif name and type(opts[name]) == "number" then
      local v = tonumber(arg[i + 1])
      if not v or v < 1 or v % 1 ~= 0 then
        io.stderr:write("demo: --", name, " needs a positive integer\n")
        os.exit(1)
      end
      opts[name] = v
      i = i + 1
    else
      io.stderr:write("usage: sluice examples/demo.lua [--requests N] [--limit N] [--seed N] [--fast]\n")
      os.exit(1)
    end
    i = i + 1
  end
end

local TOTAL, LIMIT = opts.requests, opts.limit
local MIN_LATENCY, MAX_LATENCY, TAIL_MEAN = 0.005, 0.200, 0.065

---------------------------------------------------------------- the work

math.randomseed(opts.seed)

-- Latency of request i: 5 ms plus an exponential tail, capped at 200 ms.
-- Drawn up front so a run is reproducible whatever the interleaving.
local latency = {}
for i = 1, TOTAL do
  local tail = -TAIL_MEAN * math.log(1 - math.random())
  latency[i] = math.min(MIN_LATENCY + tail, MAX_LATENCY)
end

---------------------------------------------------------------- the run

local stats = {
  done = 0, in_flight = 0, peak = 0, started_at = 0,
  took = {},   -- measured latency of each request, seconds
}

-- A simulated request: waits for its latency.  It counts the requests in
-- flight itself, so the check holds however the limit is implemented.
local function request(i)
  stats.in_flight = stats.in_flight + 1
  assert(stats.in_flight <= LIMIT, "concurrency limit exceeded")
  if stats.in_flight > stats.peak then stats.peak = stats.in_flight end
  local t = sluice.now()
  sluice.sleep(latency[i])
  stats.took[i] = sluice.now() - t
  stats.in_flight = stats.in_flight - 1
  stats.done = stats.done + 1
end

-- The concurrency limit, done by hand: LIMIT worker tasks pull the next
-- request index from a shared counter until none is left, so at most
-- LIMIT requests are ever in flight.  (Taking the next index needs no
-- lock: tasks switch only at blocking calls such as sluice.sleep.)  Once
-- sluice.limit exists this becomes:
--   local limit, tasks = sluice.limit(LIMIT), {}
--   for i = 1, TOTAL do tasks[i] = limit(request, i) end
--   for i = 1, TOTAL do tasks[i]:await() end
local next_index = 0

local function worker()
  while true do
    next_index = next_index + 1
    local i = next_index
    if i > TOTAL then return end
    request(i)
  end
end

local function progress_line()
  local elapsed = sluice.now() - stats.started_at
  local rate = elapsed > 0 and stats.done / elapsed or 0
  return string.format("%6d/%d done  %3d in flight  %5.0f req/s  %5.1f s",
    stats.done, TOTAL, stats.in_flight, rate, elapsed)
end

-- Redraws the progress line every 100 ms until cancelled.
local function reporter()
  while true do
    sluice.sleep(0.1)
    io.stderr:write("\r", progress_line(), "\27[K")
  end
end

local function run()
  local tty = uv.guess_handle(2) == "tty" and not opts.fast
  stats.started_at = sluice.now()
  -- pcall only to end the progress line if the run is interrupted
  -- (Ctrl-C cancels every task); the error is raised again below.
  local ok, err = pcall(sluice.scope, function(scope)
    local progress = tty and scope:spawn(reporter)
    -- The inner scope returns once every worker has finished (and would
    -- cancel the others and re-raise if one of them failed).
    sluice.scope(function(workers)
      for _ = 1, LIMIT do workers:spawn(worker) end
    end)
    if progress then progress:cancel() end
  end)
  if tty then io.stderr:write("\r", progress_line(), "\27[K\n") end
  if not ok then error(err, 0) end
  return sluice.now() - stats.started_at
end

local virtual = opts.fast or sluice.stats().virtual_clock
print(string.format("sluice demo: %d simulated requests, latency %d-%d ms, at most %d at a time%s",
  TOTAL, MIN_LATENCY * 1000, MAX_LATENCY * 1000, LIMIT, virtual and " (virtual clock)" or ""))

local wall0 = uv.hrtime()
local elapsed
if opts.fast then
  elapsed = sluice.run({ clock = "virtual" }, run)
else
  elapsed = run()
end
local wall = (uv.hrtime() - wall0) / 1e9

---------------------------------------------------------------- summary

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(p / 100 * #sorted))]
end

local sorted, sum_nominal = {}, 0
for i = 1, TOTAL do
  sorted[i] = stats.took[i]
  sum_nominal = sum_nominal + latency[i]
end
table.sort(sorted)
local mean = sum_nominal / TOTAL

assert(stats.done == TOTAL, "not every request finished")
assert(stats.in_flight == 0)
local expected_peak = math.min(LIMIT, TOTAL)
print(string.format("  total time       %.2f s%s (Little's law: %d x %.1f ms / %d = %.2f s)",
  elapsed, virtual and string.format(" simulated in %.2f s", wall) or "",
  TOTAL, mean * 1000, expected_peak, TOTAL * mean / expected_peak))
print(string.format("  throughput       %.0f requests/s", TOTAL / elapsed))
print(string.format("  latency          p50 %.1f ms   p90 %.1f ms   p99 %.1f ms   max %.1f ms",
  percentile(sorted, 50) * 1000, percentile(sorted, 90) * 1000,
  percentile(sorted, 99) * 1000, sorted[#sorted] * 1000))
print(string.format("  peak concurrency %d (limit %d)", stats.peak, LIMIT))
assert(stats.peak == expected_peak,
  string.format("peak concurrency was %d, expected exactly %d", stats.peak, expected_peak))
print("  the limit held")
