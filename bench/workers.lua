-- bench/workers.lua: sluice.workers speed-up and per-job overhead.
--
--   build/sluice bench/workers.lua [jobs=40] [rounds=4000] [reps=3]
--
-- 1. A batch of CPU-bound jobs (a string hash in Lua, some 10 ms each)
--    through pools of 1 and 2 workers: wall time and speed-up.
-- 2. The round trip of an empty job, one caller at a time: from w:run
--    to its return (copy in, queue, thread wake-up, copy out, async
--    wake-up of the loop, task resumed), in microseconds.
-- Medians of reps runs after a warm-up (bench/timing.lua).
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local JOBS = tonumber(arg and arg[1]) or 40
local ROUNDS = tonumber(arg and arg[2]) or 4000
local REPS = tonumber(arg and arg[3]) or 3
local EMPTY = 20000

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function hash(s, rounds)
  local bit = require "bit"
  local h = 0
  for _ = 1, rounds do
    for i = 1, #s do h = bit.tobit(h * 31 + s:byte(i)) end
  end
  return h
end

local input = ("benchmark input "):rep(20)

local function batch(size)
  local w = sluice.workers{ size = size }
  local med = measure(function()
    local t0 = hrtime()
    sluice.scope(function(scope)
      for _ = 1, JOBS do scope:spawn(function() return w:run(hash, input, ROUNDS) end) end
    end)
    return (hrtime() - t0) / 1e6
  end, REPS)
  w:close()
  return med
end

local t1 = batch(1)
local t2 = batch(2)
print(string.format("workers: %d CPU jobs, 1 worker %.1f ms, 2 workers %.1f ms: speed-up %.2fx",
  JOBS, t1, t2, t1 / t2))

local w = sluice.workers{ size = 1 }
local function empty() end
local med = measure(function()
  local t0 = hrtime()
  for _ = 1, EMPTY do w:run(empty) end
  return (hrtime() - t0) / 1e3 / EMPTY
end, REPS)
w:close()
print(string.format("workers: empty job round trip, one caller: %.1f us/job", med))
