-- spec/support/redis_worker.lua: one process of the multi-process specs
-- of sluice.redis's distributed limits (spec/redis_limits_spec.lua).
--
--   sluice spec/support/redis_worker.lua MODE PORT NAME ...
--
--   sem PORT NAME PERMITS TASKS HOLD
--     TASKS tasks each hold a permit of semaphore NAME for HOLD s; on
--     entering, a script increments NAME:cur and keeps NAME:max; on
--     leaving it decrements NAME:cur and increments NAME:done.
--   bucket PORT NAME CAPACITY RATE SECONDS
--     takes one token at a time for SECONDS s (real clock), counting the
--     grants in NAME:taken.
--   hold PORT NAME PERMITS N LEASE
--     acquires N permits, prints "held", and waits to be killed.
--
-- Runs on the real clock; prints "ok" at the end.
local sluice = require "sluice"
local redis = sluice.redis
if not redis.semaphore then require("sluice.redis_limits")(redis, nil) end

local mode, port = arg[1], tonumber(arg[2])
local name = arg[3]

local ENTER = [[
local c = redis.call('INCR', KEYS[1])
local m = tonumber(redis.call('GET', KEYS[2]) or '0')
if c > m then redis.call('SET', KEYS[2], c) end
return c
]]

sluice.run(function()
  local c = redis.connect { port = port }
  if mode == "sem" then
    local permits, tasks, hold = tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
    local sem = redis.semaphore(c, name, permits, { lease = 2 })
    local all = {}
    for i = 1, tasks do
      all[i] = sluice.spawn(function()
        sem:with(function()
          c:call("EVAL", ENTER, 2, name .. ":cur", name .. ":max")
          sluice.sleep(hold)
          c:call("DECR", name .. ":cur")
        end)
        c:call("INCR", name .. ":done")
      end)
    end
    for i = 1, tasks do all[i]:await() end
    sem:close()
  elseif mode == "bucket" then
    local cap, rate, secs = tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
    local b = redis.token_bucket(c, name, { capacity = cap, rate = rate })
    local stop = sluice.now() + secs
    while sluice.now() < stop do
      b:take(1)
      c:call("INCR", name .. ":taken")
    end
  elseif mode == "hold" then
    local permits, n, lease = tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
    local sem = redis.semaphore(c, name, permits, { lease = lease })
    for _ = 1, n do sem:acquire() end
    io.write("held\n")
    io.stdout:flush()
    sluice.sleep(3600)
  end
  c:close()
end)
io.write("ok\n")
