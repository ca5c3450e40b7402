-- bench/limit.lua: N calls through sluice.limit(concurrency), all made
-- first, then all awaited (as Promise.all over p-limit calls in Node).
--
--   build/sluice bench/limit.lua [n=100000] [reps=5] [concurrency=100] [work=sleep|return]
--
-- Each call does one scheduler turn (sluice.sleep(0)) or returns at once.
-- In-process time (uv.hrtime), one warm-up, median of `reps`.  A second
-- line gives the memory of a queued call: N calls queued behind a blocked
-- limit(1), Lua heap (collectgarbage "count") plus the C side's bytes.
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 100000
local REPS = tonumber(arg and arg[2]) or 5
local CONC = tonumber(arg and arg[3]) or 100
local WORK = arg and arg[4] or "sleep"

local sleep = sluice.sleep
local work = WORK == "return" and function(i) return i end or function(i) sleep(0) return i end

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function once()
  collectgarbage()
  local lim = sluice.limit(CONC)
  local calls = {}
  local t0 = hrtime()
  for i = 1, N do calls[i] = lim(work, i) end
  local sum = 0
  for i = 1, N do sum = sum + calls[i]:await() end
  local ms = (hrtime() - t0) / 1e6
  assert(sum == N * (N + 1) / 2, "wrong sum")
  return ms
end

local function queued_bytes()
  local lim = sluice.limit(1)
  local gate = sluice.semaphore(1)
  gate:acquire()
  local blocker = lim(function() gate:acquire() gate:release() end)
  local function f() end
  local calls = {}
  for i = 1, N do calls[i] = false end   -- the caller's own list, not counted
  collectgarbage() collectgarbage()
  local lua0, c0 = collectgarbage("count") * 1024, sluice._limit_bytes()
  for i = 1, N do calls[i] = lim(f) end
  collectgarbage() collectgarbage()
  local lua1, c1 = collectgarbage("count") * 1024, sluice._limit_bytes()
  gate:release()
  for i = 1, N do calls[i]:await() end
  blocker:await()
  return (lua1 - lua0) / N, (c1 - c0) / N
end

local lua_b, c_b = queued_bytes()   -- first: nothing grown yet
local med, times = measure(once, REPS)
print(string.format("limit: %d calls through limit(%d), %s: %.1f ms (%.0f ns/call)",
  N, CONC, WORK == "return" and "returning at once" or "sleep(0) each", med, med * 1e6 / N))
print(string.format("  queued call: %.1f bytes (Lua %.1f + C %.1f); median of %d runs, min %.1f ms, max %.1f ms",
  lua_b + c_b, lua_b, c_b, REPS, times[1], times[#times]))
