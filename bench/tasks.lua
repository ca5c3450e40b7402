-- bench/tasks.lua: spawn N tasks, then await them all.
--
--   build/sluice bench/tasks.lua [n=100000] [reps=5]
--
-- Each task does trivial work and returns a value; the main task spawns
-- all of them first and then awaits each in order.  The time is measured
-- in-process with the monotonic clock (uv.hrtime); one warm-up repetition
-- is not counted, then the median of `reps` repetitions is printed.
-- Same work as bench/node/tasks.mjs and bench/python/tasks.py.
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 100000
local REPS = tonumber(arg and arg[2]) or 5

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function work(i)
  return i * 2
end

local function once()
  collectgarbage()
  local tasks = {}
  local t0 = hrtime()
  for i = 1, N do
    tasks[i] = sluice.spawn(work, i)
  end
  local sum = 0
  for i = 1, N do
    sum = sum + tasks[i]:await()
  end
  local t1 = hrtime()
  assert(sum == N * (N + 1), "wrong sum")
  return (t1 - t0) / 1e6
end

local med, times = measure(once, REPS)
print(string.format("tasks: spawn+await %d tasks: %.1f ms (%.0f ns/task)", N, med, med * 1e6 / N))
print(string.format("  sluice %s, %s; median of %d runs, min %.1f ms, max %.1f ms",
  sluice._VERSION:match("[%d.]+$") or "?", jit.version, REPS, times[1], times[#times]))
