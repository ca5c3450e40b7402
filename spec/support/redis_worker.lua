-- spec/support/redis_worker.lua: one process of the multi-process specs
-- of sluice.redis's distributed limits (spec/redis_limits_spec.lua).
--
--   sluice spec/support/redis_worker.lua MODE PORT NAME ...
--
--   sem PORT NAME PERMITS TASKS HOLD
--     TASKS tasks each hold a permit of semaphore NAME for HOLD s; on
--     entering, a script increments NAME:cur and keeps NAME:max; on
--     leaving it decrements NAME:cur and increments NAME:done.
--   bucket PORT NAME CAPACITY RATE SECONDS [BATCH]
--     takes one token at a time for SECONDS s (real clock), counting the
--     grants in NAME:taken and pushing the server's time of each onto
--     the list NAME:times (seconds, as a string).
--   restart PORT NAME PERMITS SECONDS FALLBACK
--     4 tasks loop over sem:with for SECONDS s, holding 10 ms each, while
--     the harness restarts Redis; FALLBACK is the local share's permits
--     (0: none, fail fast).  Then waits (up to 5 s) for a shared lease.
--     Prints "shared=S local=L failed=F events=... after=shared|none"
--     (grants on each side, unavailable errors, on_change's calls, the
--     lease after the run) before "ok".
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

local STAMP = [[
local t = redis.call('TIME')
redis.call('RPUSH', KEYS[1], t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
return redis.call('INCR', KEYS[2])
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
    local batch = tonumber(arg[7]) or 1
    local b = redis.token_bucket(c, name, { capacity = cap, rate = rate, batch = batch })
    local stop = sluice.now() + secs
    while sluice.now() < stop do
      b:take(1)
      c:call("EVAL", STAMP, 2, name .. ":times", name .. ":taken")
    end
    b:close()
  elseif mode == "restart" then
    local permits, secs, fb = tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
    local events, n = {}, { shared = 0, ["local"] = 0, failed = 0 }
    local sem = redis.semaphore(c, name, permits, { lease = 2,
      fallback = fb > 0 and { permits = fb } or nil,
      on_change = function(from, to) events[#events + 1] = from .. ">" .. to end })
    local stop = sluice.now() + secs
    local all = {}
    for i = 1, 4 do
      all[i] = sluice.spawn(function()
        while sluice.now() < stop do
          local ok, e = pcall(function()
            local l = sem:acquire()
            local side = l.fallback and "local" or "shared"
            sluice.sleep(0.01)
            sem:release(l)
            n[side] = n[side] + 1
          end)
          if not ok then
            if not sluice.is_error(e, "unavailable") then error(e, 0) end
            n.failed = n.failed + 1
            sluice.sleep(0.05)
          end
        end
      end)
    end
    for i = 1, 4 do all[i]:await() end
    -- then, within 5 s, a shared lease again (the probe's backoff is at
    -- most 2 s; a slow machine may have revived Redis late in the run)
    local after = "none"
    for _ = 1, 50 do
      local ok, l = pcall(sem.acquire, sem)
      if ok and not l.fallback then sem:release(l) after = "shared" break end
      if ok then sem:release(l) end
      sluice.sleep(0.1)
    end
    sem:close()
    io.write(string.format("shared=%d local=%d failed=%d events=%s after=%s\n", n.shared, n["local"],
      n.failed, table.concat(events, ","), after))
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
