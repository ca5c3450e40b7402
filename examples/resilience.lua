-- examples/resilience.lua: retry, a circuit breaker and hedging against a
-- simulated flaky service, on a virtual clock (the whole run takes well
-- under a second of real time and is the same every time).
--
--   build/sluice examples/resilience.lua [--seed N]
--
-- 1. retry:   a service failing 30% of calls at random; with 4 attempts
--             and exponential backoff nearly every request succeeds.
-- 2. breaker: the service goes down for 20 s; the breaker opens, fails
--             calls fast instead of piling them on the dead service,
--             probes it after each cooldown and closes once it is back.
-- 3. hedge:   1 call in 20 takes a second instead of ~15 ms; a second
--             attempt after 50 ms cuts the tail for ~5% extra calls.
local sluice = require "sluice"

local seed = 1
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--seed" and tonumber(arg[i + 1]) then seed = tonumber(arg[i + 1]); i = i + 2
    else
      io.stderr:write("resilience: usage: resilience.lua [--seed N]\n")
      os.exit(1)
    end
  end
end

local fmt = string.format
local random = math.random

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function ms(s) return fmt("%.0f ms", s * 1000) end

---------------------------------------------------------------- retry

local function show_retry()
  print("1. retry: a service failing 30% of calls, 1000 requests")
  local function call()
    sluice.sleep(0.01 + random() * 0.01)
    if random() < 0.3 then error("503 service unavailable", 0) end
    return "ok"
  end
  for _, attempts in ipairs { 1, 4 } do
    local ok, calls, t_total = 0, 0, 0
    local tasks = {}
    for i = 1, 1000 do
      tasks[i] = sluice.spawn(function()
        local t0 = sluice.now()
        local good = pcall(sluice.retry, function() calls = calls + 1 return call() end,
          { attempts = attempts, base = 0.05 })
        if good then ok = ok + 1 end
        t_total = t_total + (sluice.now() - t0)
      end)
    end
    for i = 1, 1000 do tasks[i]:await() end
    print(fmt("   attempts=%d: %4d succeeded, %4d calls made, mean time %s",
      attempts, ok, calls, ms(t_total / 1000)))
  end
end

---------------------------------------------------------------- breaker

local function show_breaker()
  print("2. breaker: the service is down from t=10 s to t=30 s; a call every 100 ms for 60 s")
  local down_from, down_to = 10, 30
  local reached, reached_down, failed_fast, ok = 0, 0, 0, 0
  local b = sluice.breaker {
    failure_ratio = 0.5, min_calls = 10, window = 5, cooldown = 4,
    on_change = function(from, to) print(fmt("   t=%5.2f s  %s -> %s", sluice.now(), from, to)) end,
  }
  local function call()
    reached = reached + 1
    local now = sluice.now()
    -- a dead service answers slowly, with an error
    if now >= down_from and now < down_to then
      reached_down = reached_down + 1
      sluice.sleep(0.5)
      error("connection refused", 0)
    end
    sluice.sleep(0.02)
    return "ok"
  end
  local tasks = {}
  for i = 1, 600 do
    tasks[i] = sluice.spawn(function()
      local good, err = pcall(b.call, b, call)
      if good then ok = ok + 1
      elseif sluice.is_error(err, "open") then failed_fast = failed_fast + 1 end
    end)
    sluice.sleep(0.1)
  end
  for i = 1, 600 do tasks[i]:await() end
  print(fmt("   %d calls: %d ok, %d failed fast without reaching the service, " ..
    "%d of the 200 made while it was down reached it", 600, ok, failed_fast, reached_down))
end

---------------------------------------------------------------- hedge

local function show_hedge()
  print("3. hedge: 1 call in 20 takes 1 s, the others 10-20 ms; 2000 requests")
  local calls = 0
  local function call()
    calls = calls + 1
    if random() < 0.05 then sluice.sleep(1) else sluice.sleep(0.01 + random() * 0.01) end
    return "ok"
  end
  for _, hedged in ipairs { false, true } do
    calls = 0
    local lat, tasks = {}, {}
    for i = 1, 2000 do
      tasks[i] = sluice.spawn(function()
        local t0 = sluice.now()
        if hedged then sluice.hedge(call, { delay = 0.05 }) else call() end
        lat[i] = sluice.now() - t0
      end)
    end
    for i = 1, 2000 do tasks[i]:await() end
    table.sort(lat)
    print(fmt("   %-22s p50 %s, p95 %s, p99 %s, max %s, %d calls",
      hedged and "hedged after 50 ms:" or "single call:", ms(percentile(lat, 0.5)),
      ms(percentile(lat, 0.95)), ms(percentile(lat, 0.99)), ms(lat[#lat]), calls))
  end
end

sluice.run({ clock = "virtual" }, function()
  math.randomseed(seed)
  show_retry()
  show_breaker()
  show_hedge()
  print(fmt("simulated %.1f s of service time on the virtual clock", sluice.now()))
end)
