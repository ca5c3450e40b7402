-- examples/distributed_limits.lua: limits shared by several processes
-- through Redis (sluice.redis's semaphore and token bucket).
--
--   sluice examples/distributed_limits.lua        (needs redis-server)
--
-- Starts a throwaway redis-server, then 4 worker processes (this same
-- script with --worker), twice: first each worker runs 25 tasks that
-- call a pretend service at most 5 at a time in all (a semaphore), then
-- 25 tasks that take a token each from a bucket of 50 a second shared by
-- all.  The workers record what they do in Redis; the parent prints the
-- global concurrency and rate it observed.
local sluice = require "sluice"
local redis = sluice.redis
if not redis.semaphore then require("sluice.redis_limits")(redis, nil) end

local PERMITS, RATE, WORKERS, TASKS = 5, 50, 4, 25

local ENTER = [[
local c = redis.call('INCR', KEYS[1])
if c > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], c) end
return c
]]

local function worker(mode, port)
  sluice.run(function()
    local c = redis.connect { port = port }
    local sem = redis.semaphore(c, "demo", PERMITS, { lease = 5 })
    local bucket = redis.token_bucket(c, "demo", { capacity = 1, rate = RATE })
    local all = {}
    for i = 1, TASKS do
      all[i] = sluice.spawn(function()
        if mode == "sem" then
          sem:with(function()
            c:call("EVAL", ENTER, 2, "demo:cur", "demo:max")
            sluice.sleep(0.1)                  -- the pretend call
            c:call("DECR", "demo:cur")
          end)
        else
          bucket:take()
        end
        c:call("INCR", "demo:" .. mode)
      end)
    end
    for i = 1, TASKS do all[i]:await() end
    sem:close()
    c:close()
  end)
end

local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

if arg[1] == "--worker" then return worker(arg[2], tonumber(arg[3])) end

local port = 6300 + math.random(0, 99)
local dir = os.tmpname()
os.remove(dir)
assert(sh("mkdir -p " .. dir))
assert(sh(string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no " ..
  "--daemonize yes --dir %s --pidfile %s/redis.pid --logfile /dev/null", port, dir, dir)),
  "could not start redis-server")
for _ = 1, 100 do
  if io.popen("redis-cli -p " .. port .. " ping 2>&1"):read("*a"):find("PONG") then break end
  sh("sleep 0.02")
end

local bin = arg[-1] or "sluice"
local self = debug.getinfo(1, "S").source:sub(2)
-- runs the workers in mode; the seconds they took
local function phase(mode)
  local cmd = {}
  for _ = 1, WORKERS do cmd[#cmd + 1] = string.format("%s %s --worker %s %d &", bin, self, mode, port) end
  local start = sluice.uv.hrtime()
  sh("(" .. table.concat(cmd, " ") .. " wait)")
  return (sluice.uv.hrtime() - start) / 1e9
end
phase("sem")
local secs = phase("rate")

sluice.run(function()
  local c = redis.connect { port = port }
  local done, max = tonumber(c:call("GET", "demo:sem")), tonumber(c:call("GET", "demo:max"))
  print(string.format("semaphore: %d workers x %d tasks, %d calls, max global concurrency %d (limit %d)",
    WORKERS, TASKS, done, max, PERMITS))
  local taken = tonumber(c:call("GET", "demo:rate"))
  print(string.format("bucket: %d tokens in %.2f s, %.1f/s (limit %d/s, after a burst of 1)",
    taken, secs, (taken - 1) / secs, RATE))
  pcall(c.call, c, "SHUTDOWN", "NOSAVE")   -- the server closes the connection
  c:close()
end)
sh("rm -rf " .. dir)
