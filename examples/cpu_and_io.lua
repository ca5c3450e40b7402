-- examples/cpu_and_io.lua: CPU-bound work next to a timer, on the loop's
-- thread and then on sluice.workers.
--
--   build/sluice examples/cpu_and_io.lua [inputs=200] [rounds=5000]
--
-- A ticker task wakes every 10 ms and notes how late each tick is (the
-- loop lag it sees).  Meanwhile 200 inputs are hashed by a hash function
-- written in Lua.  On the main thread the hashing yields every 20 inputs
-- (as CPU-bound code that remembers to yield now and then does), and the
-- ticker is late by about that much CPU time: nothing else runs while a
-- task computes.  On the worker pool the loop stays free and the ticks are
-- on time.  Both runs must compute the same hashes.
local sluice = require "sluice"

local INPUTS = tonumber(arg and arg[1]) or 200
local ROUNDS = tonumber(arg and arg[2]) or 5000
local BATCH = 20   -- inputs hashed between yields on the main thread

-- The CPU work: a multiplicative string hash, rounds times over the
-- input.  No upvalues, so it can be sent to a worker as bytecode.
local function hash(s, rounds)
  local bit = require "bit"
  local h = 0
  for _ = 1, rounds do
    for i = 1, #s do h = bit.tobit(h * 31 + s:byte(i)) end
  end
  return h
end

local function inputs()
  local list = {}
  for i = 1, INPUTS do list[i] = ("input %d "):format(i):rep(20) end
  return list
end

-- Runs work() while a ticker ticks every 10 ms; returns the work's
-- results and the ticker's lateness percentiles in ms.
local function with_ticker(work)
  local lags, stop = {}, false
  local ticker = sluice.spawn(function()
    local next_at = sluice.now() + 0.01
    while not stop do
      sluice.sleep(next_at - sluice.now() > 0 and next_at - sluice.now() or 0)
      lags[#lags + 1] = sluice.now() - next_at
      next_at = next_at + 0.01
      if sluice.now() > next_at then next_at = sluice.now() + 0.01 end
    end
  end)
  local t0 = sluice.now()
  local results = work()
  local elapsed = sluice.now() - t0
  stop = true
  ticker:await()
  table.sort(lags)
  local function pct(p) return (lags[math.max(1, math.ceil(p * #lags))] or 0) * 1e3 end
  return results, { p50 = pct(0.5), p99 = pct(0.99), max = pct(1), ticks = #lags, elapsed = elapsed }
end

local function show(what, lag)
  print(("%-14s %5.2f s, %4d ticks, ticker lag p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms"):format(
    what, lag.elapsed, lag.ticks, lag.p50, lag.p99, lag.max))
end

local list = inputs()

local on_main, lag_main = with_ticker(function()
  local out = {}
  for i, s in ipairs(list) do
    out[i] = hash(s, ROUNDS)
    if i % BATCH == 0 then sluice.yield() end   -- let the ticker in now and then
  end
  return out
end)
show("main thread:", lag_main)

local pool = sluice.workers{ size = 2 }
local on_pool, lag_pool = with_ticker(function()
  return sluice.map(list, function(s) return pool:run(hash, s, ROUNDS) end, { concurrency = 4 })
end)
pool:close()
show("workers (2):", lag_pool)

for i = 1, INPUTS do assert(on_main[i] == on_pool[i], "hash mismatch at input " .. i) end
print(("same %d hashes both ways; p99 lag %.1f ms on the main thread, %.1f ms with workers"):format(
  INPUTS, lag_main.p99, lag_pool.p99))
