-- bench/pingpong.lua: two tasks taking turns, ROUNDS times each.
--
--   build/sluice bench/pingpong.lua [rounds=100000] [reps=5]
--
-- Each task calls sluice.sleep(0) (a yield to the back of the ready
-- queue) once per round, so one round trip is one
-- resume of each task: 2 * rounds switches in all.  A shared turn variable
-- checks that they really alternate.  The time is measured in-process
-- with the monotonic clock (uv.hrtime); one warm-up repetition is not
-- counted, then the median of `reps` repetitions is printed.
-- Same work as bench/node/pingpong.mjs and bench/python/pingpong.py.
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local ROUNDS = tonumber(arg and arg[1]) or 100000
local REPS = tonumber(arg and arg[2]) or 5

local turn

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function player(me, other)
  for _ = 1, ROUNDS do
    assert(turn == me, "out of turn")
    turn = other
    sluice.sleep(0)
  end
end

local function once()
  collectgarbage()
  turn = "ping"
  local t0 = hrtime()
  local a = sluice.spawn(player, "ping", "pong")
  local b = sluice.spawn(player, "pong", "ping")
  a:await()
  b:await()
  return (hrtime() - t0) / 1e6
end

local med, times = measure(once, REPS)
print(string.format("pingpong: %d round trips (%d switches): %.1f ms (%.0f ns/switch)",
  ROUNDS, 2 * ROUNDS, med, med * 1e6 / (2 * ROUNDS)))
print(string.format("  sluice %s, %s; median of %d runs, min %.1f ms, max %.1f ms",
  sluice._VERSION:match("[%d.]+$") or "?", jit.version, REPS, times[1], times[#times]))
