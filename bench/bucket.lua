-- bench/bucket.lua: sluice.token_bucket take / try_take costs.
--
--   build/sluice bench/bucket.lua [n=1000000] [tasks=10000] [reps=5]
--
-- uncontended: one task, a bucket that never runs dry (capacity and rate
-- 1e15), n calls of try_take() and of take() in a loop: the hot path, one
-- JIT-compiled FFI call that reads the clock (uv_hrtime) and allocates
-- nothing.
-- contended: `tasks` tasks each take() 10 times from a bucket of 1 token
-- that refills at 1000/s, so every take but the first parks in the FIFO
-- queue and is woken by the bucket's timer.  It runs under
-- sluice.run{clock = "virtual"}, so the simulated waiting costs nothing
-- and what is timed is the queueing, the timer and the wake-up.
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 1000000
local TASKS = tonumber(arg and arg[2]) or 10000
local REPS = tonumber(arg and arg[3]) or 5
local PER_TASK = 10

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function loop(method)
  return function()
    collectgarbage()
    local b = sluice.token_bucket{ capacity = 1e15, rate = 1e15 }
    local f = b[method]
    local t0 = hrtime()
    for _ = 1, N do f(b) end
    return (hrtime() - t0) / 1e6
  end
end

local function contended()
  collectgarbage()
  local ms
  sluice.run({ clock = "virtual" }, function()
    local b = sluice.token_bucket{ capacity = 1, rate = 1000 }
    local function body()
      for _ = 1, PER_TASK do b:take() end
    end
    local t0 = hrtime()
    sluice.scope(function(scope)
      for _ = 1, TASKS do scope:spawn(body) end
    end)
    ms = (hrtime() - t0) / 1e6
    assert(b:stats().acquired == TASKS * PER_TASK)
  end)
  return ms
end

local med = measure(loop("try_take"), REPS)
print(string.format("bucket: try_take, uncontended: %d calls: %.1f ms (%.1f ns/op)", N, med, med * 1e6 / N))
med = measure(loop("take"), REPS)
print(string.format("bucket: take, uncontended: %d calls: %.1f ms (%.1f ns/op)", N, med, med * 1e6 / N))
med = measure(contended, REPS)
print(string.format("bucket: take, contended: %d tasks x %d takes, each parked and woken by the timer: " ..
  "%.1f ms (%.0f ns/op)", TASKS, PER_TASK, med, med * 1e6 / (TASKS * PER_TASK)))
