-- examples/webhook_storm.lua: delivering webhooks to thousands of
-- endpoints without hammering any one of them (`make demo`).
--
--   build/sluice examples/webhook_storm.lua [--deliveries 20000] [--destinations 500]
--                                           [--concurrency 500] [--rate 10]
--
-- The seed's war story: a service delivers webhooks to 50,000 customer
-- endpoints.  Unlimited, it opens tens of thousands of sockets at once and
-- floods the slow endpoints; one global limit alone still lets a burst of
-- deliveries for one customer hit that customer all at once.  The fix is
-- two limits: a global semaphore of 500 deliveries in flight (sockets,
-- memory) and a token bucket per destination (10 requests/s, no burst),
-- made on first use by sluice.keyed and dropped when idle.
--
-- The token comes first and the global permit second, so a delivery
-- waiting for its destination's next token holds no permit: a slow or
-- busy destination never blocks the others.
--
-- Everything is real: an HTTP server on 127.0.0.1 (random port) plays all
-- the destinations (the destination is in the path, /hook/<id>; each
-- answer takes 50-150 ms, as a customer's endpoint might) and records
-- when each delivery arrived.  A progress line is drawn on stderr (a line
-- a second when stderr is not a terminal).  The report gives
-- deliveries/s, the peak in flight, the peak of open file descriptors,
-- and the busiest destination's rate over any 1 s window, both as sent
-- (when the token was granted) and as seen by the server.
-- (A window counts the deliveries in the second after a delivery: eleven
-- at a steady 10/s span exactly 1 s, and a millisecond of network jitter
-- must not count as a twelfth.)
local sluice = require "sluice"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local report = require "support.report"
local http = sluice.http

local o = report.options("webhook_storm",
  { deliveries = 20000, destinations = 500, concurrency = 500, rate = 10 },
  "[--deliveries 20000] [--destinations 500] [--concurrency 500] [--rate 10]")

---------------------------------------------------------------- the destinations

local arrived = {}        -- destination -> list of arrival times at the server
local sent = {}           -- destination -> list of times its tokens were granted
local srv_active, srv_peak = 0, 0
local srv = http.serve { port = 0, handler = function(req)
  local id = tonumber(req.path:match("^/hook/(%d+)$"))
  if not id then return { status = 404, body = "no such hook" } end
  local list = arrived[id]
  list[#list + 1] = sluice.now()
  srv_active = srv_active + 1
  if srv_active > srv_peak then srv_peak = srv_active end
  sluice.sleep(0.05 + math.random() * 0.1)
  srv_active = srv_active - 1
  return { status = 200, body = "ok" }
end }
local base = "http://127.0.0.1:" .. srv.port .. "/hook/"
for d = 1, o.destinations do arrived[d], sent[d] = {}, {} end

---------------------------------------------------------------- the limits

local global = sluice.semaphore(o.concurrency)
local per_destination = sluice.keyed(function()
  return sluice.token_bucket { capacity = 1, rate = o.rate }
end, { idle = 10 })

local delivered, failed, in_flight, peak_in_flight = 0, 0, 0, 0

local function deliver(i)
  local dest = (i - 1) % o.destinations + 1
  local payload = '{"event":"invoice.paid","delivery":' .. i .. '}'
  per_destination:with(dest, function()
    local s = sent[dest]
    s[#s + 1] = sluice.now()
    global:with(function()
      in_flight = in_flight + 1
      if in_flight > peak_in_flight then peak_in_flight = in_flight end
      local ok, res = pcall(http.post, base .. dest, payload,
        { headers = { ["Content-Type"] = "application/json" }, timeout = 10 })
      in_flight = in_flight - 1
      if ok and res.status == 200 then delivered = delivered + 1 else failed = failed + 1 end
    end)
  end)
end

-- The rate seen by one destination: the most deliveries in the 1 s after
-- any delivery, i.e. in any window (t, t + 1] starting at a delivery,
-- from a sorted list of times.  A steady 10/s gives 10; a burst of 11 at
-- once gives 10 too if the 12th comes a second later than the first, and
-- 20 if 21 come within 1 s.
local function busiest_second(times)
  local best, j = 0, 1
  for i = 1, #times do
    if j < i then j = i end
    while times[j + 1] and times[j + 1] - times[i] <= 1 do j = j + 1 end
    if j - i > best then best = j - i end
  end
  return best
end

---------------------------------------------------------------- the run

print(string.format("webhook storm: %d deliveries to %d destinations", o.deliveries, o.destinations))
print(string.format("  limits: %d in flight in all (semaphore), %d/s per destination (token bucket via keyed)",
  o.concurrency, o.rate))
print(string.format("  endpoints: a local HTTP server on 127.0.0.1:%d, /hook/<id>", srv.port))
print()

local fds = report.sampler()
local t0 = sluice.now()
local function line()
  local el = sluice.now() - t0
  local done = delivered + failed
  return string.format("  %s %6d/%d  %6.0f/s  %3d in flight  %4d fds  %2d failed",
    report.bar(done, o.deliveries), done, o.deliveries, el > 0 and done / el or 0,
    in_flight, report.open_fds() or 0, failed)
end

sluice.scope(function(s)
  local sampler = report.ticker(s, 0.01, fds.sample)
  local ticks = 0
  local progress = report.ticker(s, 0.1, function()
    ticks = ticks + 1
    if report.tty then report.progress(line()) elseif ticks % 10 == 0 then report.progress(line(), true) end
  end)
  sluice.scope(function(work)
    for i = 1, o.deliveries do work:spawn(deliver, i) end
  end)
  sampler:cancel()
  progress:cancel()
end)
report.progress_done(line())
local elapsed = sluice.now() - t0

---------------------------------------------------------------- the report

local max_sent, max_arrived = 0, 0
for d = 1, o.destinations do
  table.sort(arrived[d])
  max_sent = math.max(max_sent, busiest_second(sent[d]))
  max_arrived = math.max(max_arrived, busiest_second(arrived[d]))
end
local per_dest = math.ceil(o.deliveries / o.destinations)
print(string.format("  delivered        %d of %d in %.2f s: %.0f deliveries/s", delivered, o.deliveries,
  elapsed, delivered / elapsed))
print(string.format("  failures         %d", failed))
print(string.format("  peak in flight   %d (limit %d); the server saw at most %d at once",
  peak_in_flight, o.concurrency, srv_peak))
print(string.format("  peak open fds    %s (%s before the run: both ends of each connection count)",
  report.fmt_fds(fds.peak), report.fmt_fds(fds.base)))
print(string.format("  per destination  %d deliveries each, no faster than (%d - 1) / %d = %.1f s",
  per_dest, per_dest, o.rate, (per_dest - 1) / o.rate))
print(string.format("  busiest 1 s      at most %d deliveries sent to one destination in the 1 s after any", max_sent))
print(string.format("                   other, and at most %d arrived there (limit %d/s)", max_arrived, o.rate))
print()
local ok = failed == 0 and peak_in_flight <= o.concurrency and max_sent <= o.rate and max_arrived <= o.rate
print(ok and "every delivery made; no destination got more than its rate"
         or "LIMITS BROKEN")
print("(try --destinations 50, --rate 2 or --concurrency 20; the code is examples/webhook_storm.lua)")
srv:close()
os.exit(ok and 0 or 1)
