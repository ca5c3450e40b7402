-- bench/channel.lua: channel throughput, ns per message.
--
--   build/sluice bench/channel.lua [n=1000000] [reps=5]
--
-- Three runs of n messages each: one task sends and another receives
-- through a buffered channel (capacity 64; the tasks switch once per
-- 64 messages or so), through a rendezvous (capacity 0; every message
-- is a hand-off between the two tasks, a switch each way), and one task
-- doing try_send then try_recv (the uncontended path, no switch).
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 1000000
local REPS = tonumber(arg and arg[2]) or 5

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function pair(capacity)
  return function()
    collectgarbage()
    local ch = sluice.channel(capacity)
    local sum = 0
    local t0 = hrtime()
    local consumer = sluice.spawn(function()
      for v in ch:iter() do sum = sum + v end
    end)
    for i = 1, N do ch:send(i) end
    ch:close()
    consumer:await()
    local ms = (hrtime() - t0) / 1e6
    assert(sum == N * (N + 1) / 2)
    return ms
  end
end

local function trypair()
  collectgarbage()
  local ch = sluice.channel(1)
  local sum = 0
  local t0 = hrtime()
  for i = 1, N do
    ch:try_send(i)
    sum = sum + ch:try_recv()
  end
  local ms = (hrtime() - t0) / 1e6
  assert(sum == N * (N + 1) / 2)
  return ms
end

for _, c in ipairs({
  { "buffered (capacity 64), 2 tasks", pair(64) },
  { "rendezvous (capacity 0), 2 tasks", pair(0) },
  { "try_send + try_recv, 1 task", trypair },
}) do
  local med = measure(c[2], REPS)
  print(string.format("channel: %d messages, %s: %.1f ms (%.0f ns/message)", N, c[1], med, med * 1e6 / N))
end
