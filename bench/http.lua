-- bench/http.lua: GET requests per second against the in-process server
-- (sluice.http.serve), sequential and concurrent, on one loop.
--
--   build/sluice bench/http.lua [n=10000] [concurrency=50] [reps=3]
--
-- Sequential: one task, n/10 GETs one after another on one kept-alive
-- connection.  Concurrent: n GETs through sluice.limit(concurrency); the
-- client keeps up to `concurrency` connections alive.  The handler
-- answers a 2-byte body.  Client and server share one thread, so this
-- measures the whole round trip: curl, the loop, the parser, the tasks.
local sluice = require "sluice"
local http = sluice.http
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 10000
local CONC = tonumber(arg and arg[2]) or 50
local REPS = tonumber(arg and arg[3]) or 3

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local srv = http.serve{ handler = function() return "ok" end }
local url = "http://127.0.0.1:" .. srv.port .. "/"

local function sequential()
  local n = math.max(1, math.floor(N / 10))
  local t0 = hrtime()
  for _ = 1, n do assert(http.get(url).status == 200) end
  return (hrtime() - t0) / 1e6, n
end

local function concurrent()
  collectgarbage()
  local limit = sluice.limit(CONC)
  local ok = 0
  local function one() if http.get(url).status == 200 then ok = ok + 1 end end
  local tasks = {}
  local t0 = hrtime()
  for i = 1, N do tasks[i] = limit(one) end   -- a queued call costs no coroutine
  for i = 1, N do tasks[i]:await() end
  assert(ok == N)
  return (hrtime() - t0) / 1e6, N
end

local _, n = sequential()
local med = measure(function() return (sequential()) end, REPS)
print(string.format("http: %d sequential GETs: %.1f ms (%.0f req/s)", n, med, n / med * 1e3))
med = measure(function() return (concurrent()) end, REPS)
print(string.format("http: %d GETs, %d at a time: %.1f ms (%.0f req/s; %d server connections)",
  N, CONC, med, N / med * 1e3, srv.connections))
srv:close()
