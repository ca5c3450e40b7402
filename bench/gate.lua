-- bench/gate.lua: N gated tasks through sluice.semaphore(permits).
--
--   build/sluice bench/gate.lua [n=100000] [permits=100] [reps=5]
--
-- Each task acquires a permit, holds it across one scheduler turn
-- (sluice.sleep(0)) and releases it; all run in one scope.  Same work as
-- bench/floor.lua (pure LuaJIT) and bench/node/gate.mjs.
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 100000
local PERMITS = tonumber(arg and arg[2]) or 100
local REPS = tonumber(arg and arg[3]) or 5

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function once()
  collectgarbage()
  local sem = sluice.semaphore(PERMITS)
  local done = 0
  local function body()
    sem:acquire()
    sluice.sleep(0)
    sem:release()
    done = done + 1
  end
  local t0 = hrtime()
  sluice.scope(function(scope)
    for _ = 1, N do scope:spawn(body) end
  end)
  local ms = (hrtime() - t0) / 1e6
  assert(done == N)
  return ms
end

local med = measure(once, REPS)
print(string.format("gate: %d gated tasks, semaphore(%d): %.1f ms (%.0f ns/task)", N, PERMITS, med, med * 1e6 / N))
