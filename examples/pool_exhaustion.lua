-- examples/pool_exhaustion.lua: "connection pool exhaustion at 3 AM",
-- replayed against a real redis-server.
--
--   build/sluice examples/pool_exhaustion.lua [--seconds N]
--
-- The story: a service keeps a pool of 20 database connections with an
-- acquire timeout.  Normal traffic uses a few of them.  At 3 AM a cron
-- job starts 50 analytics queries at once, each holding a connection for
-- a long time.  The pool is exhausted at once; API requests queue behind
-- the analytics queries, hit the acquire timeout and fail.  The fix:
-- analytics get a separate pool (in the story, on a read replica), and
-- the cron job runs at most 5 queries at a time behind a semaphore.
--
-- Here the database is a redis-server this script starts itself (on
-- 127.0.0.1, a free port, nothing kept on disk, in a temporary directory;
-- stopped at the end, also on error or Ctrl-C).  A request is one GET or
-- SET on a connection borrowed from sluice.pool (create = redis.connect,
-- destroy = close): 200 requests a second for N seconds (default 10).
-- An analytics query is `BLPOP` on a list nobody pushes to, with a
-- timeout of N/5 seconds: it holds its connection that long without
-- blocking the server for anyone else (DEBUG SLEEP would stall the whole
-- server).  The 50 queries start N/10 seconds in; the pool's
-- acquire_timeout is N/10 seconds.  At the default that is 2 s queries
-- and a 1 s timeout; --seconds 2 replays the same story five times
-- faster.
--
-- The story runs twice, on the real clock:
--   run 1, naive: requests and analytics share the pool of 20;
--   run 2, fixed: analytics use their own pool of 5, behind a
--          semaphore of 5; requests keep the pool of 20 to themselves.
-- Each run prints the requests answered and timed out, the latency of
-- the answered requests (p50, p99, max), what became of the analytics
-- queries, the first timeout's message (it describes the pool) and a
-- verdict.  When the traffic window ends, analytics queries still
-- running or waiting are cancelled: the fix makes the cron job slower
-- (5 at a time), and the window does not wait for it.
local sluice = require "sluice"
local redis = sluice.redis
local uv = sluice.uv
local hrtime, now, sleep = uv.hrtime, sluice.now, sluice.sleep
local fmt = string.format

---------------------------------------------------------------- options

local SECONDS = 10
do
  local a1, a2 = arg and arg[1], arg and arg[2]
  if a1 == "--seconds" then
    SECONDS = tonumber(a2)
    if not SECONDS or SECONDS <= 0 or SECONDS ~= SECONDS or SECONDS == math.huge or arg[3] then
      io.stderr:write("pool_exhaustion: --seconds needs a positive number\n")
      os.exit(1)
    end
  elseif a1 ~= nil then
    io.stderr:write("usage: sluice examples/pool_exhaustion.lua [--seconds N]\n")
    os.exit(1)
  end
end

local RATE = 200                    -- requests per second
local POOL_MAX = 20                 -- the service's pool
local JOBS = 50                     -- analytics queries started at once
local ANALYTICS_MAX = 5             -- the fix: their own pool, and a semaphore
local ACQUIRE_TIMEOUT = SECONDS / 10
local QUERY = SECONDS / 5           -- how long an analytics query holds its connection
local JOBS_AT = SECONDS / 10        -- "3 AM", counted from the start of the run

---------------------------------------------------------------- the server

-- Blocking calls (os.execute, io.popen) on purpose: only before and after
-- the runs.
local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

local function read(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- A port nobody listens on now: bind port 0, read it, close.
local function free_port()
  local tcp = uv.new_tcp()
  assert(tcp:bind("127.0.0.1", 0))
  local port = tcp:getsockname().port
  tcp:close()
  return port
end

local server = {}

-- SIGTERM, and once the server has removed its pid file (its shutdown is
-- done; exiting then takes it a second or more), SIGKILL: nothing is kept.
function server.stop()
  local pid, dir = server.pid, server.dir
  if pid and sh("kill " .. pid .. " 2>/dev/null") then
    for _ = 1, 250 do
      local f = io.open(dir .. "/redis.pid")
      if not f then break end
      f:close()
      sh("sleep 0.02")
    end
    sh("kill -KILL " .. pid .. " 2>/dev/null")
  end
  server.pid = nil
  if dir then sh("rm -rf " .. quote(dir)) end
  server.dir = nil
end

-- Starts redis-server, daemonized (so no handle of this process is
-- involved), and returns once it answers PING.
function server.start()
  if not sh("command -v redis-server >/dev/null 2>&1") then
    error("pool_exhaustion: redis-server is not installed (Debian: apt-get install redis-server)", 0)
  end
  local dir = read("mktemp -d"):gsub("%s+$", "")
  assert(dir ~= "", "pool_exhaustion: mktemp -d failed")
  server.dir, server.port = dir, free_port()
  local ok = sh(table.concat({ "redis-server", "--port", server.port, "--bind", "127.0.0.1",
    "--save", quote(""), "--appendonly", "no", "--dir", quote(dir), "--daemonize", "yes",
    "--pidfile", quote(dir .. "/redis.pid"), "--logfile", quote(dir .. "/redis.log") }, " "))
  if not ok then
    server.stop()
    error("pool_exhaustion: could not start redis-server", 0)
  end
  for _ = 1, 250 do
    -- the pid file first: a server that never answers is still stopped
    local f = io.open(dir .. "/redis.pid")
    if f then
      server.pid = tonumber(f:read("*a"))
      f:close()
    end
    if server.pid and read("redis-cli -h 127.0.0.1 -p " .. server.port .. " ping 2>&1"):find("PONG") then
      return
    end
    sh("sleep 0.02")
  end
  server.stop()
  error("pool_exhaustion: redis-server did not answer PING on port " .. server.port, 0)
end

---------------------------------------------------------------- one run

local function connect() return redis.connect { port = server.port, connect_timeout = 5 } end
local function close(c) c:close() end

local function new_pool(max, timeout)
  return sluice.pool { create = connect, destroy = close, max = max, acquire_timeout = timeout }
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(p / 100 * #sorted))]
end

-- One run of the story.  fixed: analytics on their own pool behind a
-- semaphore.  Returns the figures.
local function run(fixed)
  local pool = new_pool(POOL_MAX, ACQUIRE_TIMEOUT)
  local analytics_pool = fixed and new_pool(ANALYTICS_MAX) or pool
  local sem = fixed and sluice.semaphore(ANALYTICS_MAX)
  local r = { sent = 0, answered = 0, timeouts = 0, errors = 0, took = {}, peak = 0,
              jobs_done = 0, jobs_timeouts = 0, jobs_failed = 0, jobs_running = 0 }

  local function use(c, i)
    local active = pool.active
    if active > r.peak then r.peak = active end
    local key = "user:" .. i % 100
    if i % 4 == 0 then c:call("SET", key, "v" .. i) else c:call("GET", key) end
  end

  local function request(i)
    local t0 = hrtime()
    local ok, err = pcall(pool.with, pool, use, i)
    if ok then
      r.answered = r.answered + 1
      r.took[#r.took + 1] = (hrtime() - t0) / 1e9
    elseif sluice.is_error(err, "cancelled") then
      error(err, 0)
    elseif sluice.is_error(err, "timeout") then
      r.timeouts = r.timeouts + 1
      r.first_timeout = r.first_timeout or err.message
    else
      r.errors = r.errors + 1
      r.first_error = r.first_error or tostring(err)
    end
  end

  local function query(c)
    r.jobs_running = r.jobs_running + 1
    c:call("BLPOP", "analytics:nothing", QUERY)
    r.jobs_running = r.jobs_running - 1
  end

  local function job()
    local ok, err
    if fixed then
      ok, err = pcall(sem.with, sem, analytics_pool.with, analytics_pool, query)
    else
      ok, err = pcall(analytics_pool.with, analytics_pool, query)
    end
    if ok then
      r.jobs_done = r.jobs_done + 1
    elseif sluice.is_error(err, "cancelled") then
      error(err, 0)
    elseif sluice.is_error(err, "timeout") then
      r.jobs_timeouts = r.jobs_timeouts + 1
    else
      r.jobs_failed = r.jobs_failed + 1
      r.first_error = r.first_error or tostring(err)
    end
  end

  local start = now()
  sluice.scope(function(outer)
    local analytics
    outer:spawn(function()
      sluice.scope(function(scope)
        analytics = scope
        sleep(JOBS_AT)
        for _ = 1, JOBS do scope:spawn(job) end
      end)
    end)
    -- The traffic: one request every 1/RATE s, on a fixed schedule (a
    -- late tick starts its requests at once, so none is lost).
    sluice.scope(function(scope)
      local total = math.floor(RATE * SECONDS + 0.5)
      for i = 1, total do
        local d = start + (i - 1) / RATE - now()
        if d > 0 then sleep(d) end
        r.sent = r.sent + 1
        scope:spawn(request, i)
      end
    end)
    -- the window is over: the analytics still running or waiting are cut off
    r.jobs_cut = JOBS - r.jobs_done - r.jobs_timeouts - r.jobs_failed
    r.jobs_cut_running = r.jobs_running
    if analytics then analytics:cancel() end
  end)
  pool:close()
  if fixed then analytics_pool:close() end
  table.sort(r.took)
  return r
end

---------------------------------------------------------------- report

local function ms(s) return fmt("%.1f ms", s * 1000) end

local function report(title, r, fixed)
  print(title)
  print(fmt("  requests       %d sent, %d answered, %d timed out%s", r.sent, r.answered, r.timeouts,
    r.errors > 0 and fmt(", %d failed otherwise", r.errors) or ""))
  print(fmt("  latency        p50 %s   p99 %s   max %s   (answered requests)",
    ms(percentile(r.took, 50)), ms(percentile(r.took, 99)), ms(r.took[#r.took] or 0)))
  print(fmt("  request pool   %d of %d connections in use at the peak", r.peak, POOL_MAX))
  local cut = ""
  if r.jobs_cut > 0 then
    cut = fmt(", %d cut off at the end (%d running, %d waiting)", r.jobs_cut, r.jobs_cut_running,
      r.jobs_cut - r.jobs_cut_running)
  end
  print(fmt("  analytics      %d of %d queries done, %d timed out waiting for a connection%s",
    r.jobs_done, JOBS, r.jobs_timeouts, cut))
  if r.first_timeout then print("  first timeout  " .. r.first_timeout) end
  if r.first_error then print("  first error    " .. r.first_error) end
  local verdict
  if r.timeouts == 0 and r.errors == 0 then
    verdict = fmt("OK: no request timed out; the analytics ran %d at a time on their own pool", ANALYTICS_MAX)
  elseif fixed then
    verdict = fmt("FAIL: %d requests still timed out", r.timeouts + r.errors)
  else
    verdict = fmt("FAIL: %d requests (%.1f%%) timed out: the analytics queries held all %d connections",
      r.timeouts, 100 * r.timeouts / r.sent, POOL_MAX)
  end
  print("  verdict        " .. verdict)
end

local function main()
  server.start()
  print(fmt("pool exhaustion at 3 AM: %d requests/s for %s s; at t = %s s, %d analytics queries of %s s each",
    RATE, SECONDS, JOBS_AT, JOBS, QUERY))
  print(fmt("redis-server on 127.0.0.1:%d (temporary); pool of %d connections, acquire_timeout %s s",
    server.port, POOL_MAX, ACQUIRE_TIMEOUT))
  print()
  report("run 1, naive: requests and analytics share the pool of " .. POOL_MAX, run(false), false)
  print()
  report(fmt("run 2, fixed: analytics on their own pool of %d behind semaphore(%d)", ANALYTICS_MAX,
    ANALYTICS_MAX), run(true), true)
end

-- The server is stopped however the runs end; an error is then raised
-- again as it was.
local ok, err = pcall(main)
server.stop()
if not ok then error(err, 0) end
