-- bench/redis_limits.lua: cost of sluice.redis's distributed limits.
--
--   sluice bench/redis_limits.lua [N]          (needs redis-server)
--
-- Starts a throwaway redis-server and reports, for an uncontended
-- semaphore acquire/release pair and a token bucket take (one token per
-- round trip, and with batch = 16: up to 16 per round trip): the round trips
-- per operation (the scripts the server ran, from INFO commandstats) and
-- throughput from
-- one process (64 tasks pipelining on one client), then from 4
-- processes at once.
local sluice = require "sluice"
local redis = sluice.redis
if not redis.semaphore then require("sluice.redis_limits")(redis, nil) end

local N = tonumber(arg[1] ~= "--worker" and arg[1] or arg[4]) or 5000
local TASKS = 64

local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

-- the commands clients sent: the calls of EVALSHA, EVAL and SCRIPT (all
-- the limits send; the commands inside scripts are not round trips)
local function commands(c)
  local info, n = c:call("INFO", "commandstats"), 0
  for _, cmd in ipairs { "evalsha", "eval", "script" } do
    n = n + tonumber(info:match("cmdstat_" .. cmd .. ":calls=(%d+)") or 0)
  end
  return n
end

-- n operations of kind spread over TASKS tasks; returns the seconds taken
local function run_ops(c, kind, n)
  local sem = redis.semaphore(c, "bench", TASKS * 8, { lease = 30 })
  local bucket = redis.token_bucket(c, "bench", { capacity = 1e9, rate = 1e9,
    batch = kind == "batch" and 16 or 1 })
  local per = math.ceil(n / TASKS)
  local start = sluice.uv.hrtime()
  local all = {}
  for i = 1, TASKS do
    all[i] = sluice.spawn(function()
      for _ = 1, per do
        if kind == "sem" then sem:release(sem:acquire()) else bucket:take() end
      end
    end)
  end
  for i = 1, TASKS do all[i]:await() end
  sem:close()
  bucket:close()
  return (sluice.uv.hrtime() - start) / 1e9, per * TASKS
end

if arg[1] == "--worker" then
  sluice.run(function()
    local c = redis.connect { port = tonumber(arg[3]) }
    run_ops(c, arg[2], N)
    c:close()
  end)
  return
end

local port = 6200 + math.random(0, 99)
local dir = os.tmpname()
os.remove(dir)
assert(sh("mkdir -p " .. dir))
assert(sh(string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no " ..
  "--daemonize yes --dir %s --logfile /dev/null", port, dir)), "could not start redis-server")
for _ = 1, 100 do
  if io.popen("redis-cli -p " .. port .. " ping 2>&1"):read("*a"):find("PONG") then break end
  sh("sleep 0.02")
end

local bin, self = arg[-1] or "sluice", debug.getinfo(1, "S").source:sub(2)

sluice.run(function()
  local c = redis.connect { port = port }
  local LABEL = { sem = "semaphore acquire+release", take = "token_bucket take",
                  batch = "take, batch = 16" }
  for _, kind in ipairs { "sem", "take", "batch" } do
    local label = LABEL[kind]
    run_ops(c, kind, TASKS)                     -- scripts loaded
    local before = commands(c)
    local secs, n = run_ops(c, kind, N)
    local cmds = commands(c) - before
    print(string.format("%-26s 1 process : %6.2f round trips/op, %8.0f ops/s", label, cmds / n, n / secs))
    local start = sluice.uv.hrtime()
    local cmd = {}
    for _ = 1, 4 do cmd[#cmd + 1] = string.format("%s %s --worker %s %d %d &", bin, self, kind, port, N) end
    sh("(" .. table.concat(cmd, " ") .. " wait)")
    secs = (sluice.uv.hrtime() - start) / 1e9
    print(string.format("%-26s 4 processes:                    %8.0f ops/s (with process start)",
      label, 4 * n / secs))
  end
  pcall(c.call, c, "SHUTDOWN", "NOSAVE")
  c:close()
end)
sh("rm -rf " .. dir)
