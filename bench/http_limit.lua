-- bench/http_limit.lua: n GETs through sluice.limit(concurrency) against
-- an HTTP server in another process; the sluice half of bench/http.sh
-- (bench/node/http_limit.mjs is the Node.js half).
--
--   build/sluice bench/http_limit.lua serve              the shared server: prints its port
--   build/sluice bench/http_limit.lua URL [n=10000] [concurrency=100] [reps=3]
--
-- serve: an HTTP/1.1 server (sluice.http.serve) on 127.0.0.1, a random
-- port, answering every request with a 2-byte body at once; it prints
-- "port N" and runs until killed.
--
-- The client: one warm-up round that is not counted, then reps rounds;
-- each makes n GETs through one limit(concurrency), checks every status
-- and body, and is timed with hrtime.  Prints the median as
-- "sluice <ms> <requests/s>".  Connections are kept alive across rounds,
-- as Node's fetch keeps them.
local sluice = require "sluice"
local http = sluice.http
local hrtime = sluice.uv.hrtime

if arg[1] == "serve" then
  local srv = http.serve { handler = function() return "ok" end }
  io.stdout:write("port ", srv.port, "\n")
  io.stdout:flush()
  return   -- an open server keeps the process alive
end

local URL = arg[1] or error("usage: sluice bench/http_limit.lua serve | URL [n] [concurrency] [reps]")
local N = tonumber(arg[2]) or 10000
local CONC = tonumber(arg[3]) or 100
local REPS = tonumber(arg[4]) or 3

local measure = dofile((arg[0]:match("^(.*/)") or "") .. "timing.lua")

local function round()
  collectgarbage()
  local limit = sluice.limit(CONC)
  local ok = 0
  local function one()
    local res = http.get(URL)
    if res.status == 200 and res.body == "ok" then ok = ok + 1 end
  end
  local calls = {}
  local t0 = hrtime()
  for i = 1, N do calls[i] = limit(one) end
  for i = 1, N do calls[i]:await() end
  local ms = (hrtime() - t0) / 1e6
  assert(ok == N, "only " .. ok .. " of " .. N .. " requests succeeded")
  return ms
end

local ms = measure(round, REPS)
print(string.format("sluice %.1f %.0f", ms, N / ms * 1000))
