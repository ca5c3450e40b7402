-- bench/redis.lua: GET/SET throughput of sluice.redis against a running
-- redis-server.
--
--   build/sluice bench/redis.lua [port=6379] [n=100000] [tasks=50] [reps=3] [clients=10]
--
-- Three shapes, each for SET then GET:
--   1 task:    n calls one after the other on one connection (one round
--              trip each);
--   k tasks:   n calls spread over k concurrent tasks, which pipeline
--              on the one connection (each command is written as it comes);
--   pool:      n calls spread over k tasks, each call borrowing one of
--              `clients` connections from sluice.pool (pool:with) for
--              that one command, as a request handler would.
-- Compare with redis-benchmark -p <port> -t get,set -n <n> -q, which uses
-- 50 connections without pipelining (-c 50 -P 1).
local sluice = require "sluice"
local redis = sluice.redis
local hrtime = sluice.uv.hrtime

local PORT = tonumber(arg and arg[1]) or 6379
local N = tonumber(arg and arg[2]) or 100000
local TASKS = tonumber(arg and arg[3]) or 50
local REPS = tonumber(arg and arg[4]) or 3
local CLIENTS = tonumber(arg and arg[5]) or 10

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local c = redis.connect { port = PORT }
local VALUE = string.rep("x", 3)   -- redis-benchmark's default payload (3 bytes)

local function sequential(cmd)
  return function()
    collectgarbage()
    local t0 = hrtime()
    if cmd == "SET" then
      for i = 1, N do c:call("SET", "key:" .. i % 1000, VALUE) end
    else
      for i = 1, N do c:call("GET", "key:" .. i % 1000) end
    end
    return (hrtime() - t0) / 1e6
  end
end

local function concurrent(cmd)
  return function()
    collectgarbage()
    local per = N / TASKS
    local t0 = hrtime()
    sluice.scope(function(scope)
      for t = 1, TASKS do
        scope:spawn(function()
          local base = t * per
          if cmd == "SET" then
            for i = 1, per do c:call("SET", "key:" .. (base + i) % 1000, VALUE) end
          else
            for i = 1, per do c:call("GET", "key:" .. (base + i) % 1000) end
          end
        end)
      end
    end)
    return (hrtime() - t0) / 1e6
  end
end

-- The pool is filled (every client connected) before the timing.
local pool = sluice.pool {
  create = function() return redis.connect { port = PORT } end,
  destroy = function(client) client:close() end,
  max = CLIENTS,
}
do
  local held = {}
  for i = 1, CLIENTS do held[i] = pool:acquire() end
  for i = 1, CLIENTS do pool:release(held[i]) end
end

local function set(client, key) return client:call("SET", key, VALUE) end
local function get(client, key) return client:call("GET", key) end

local function pooled(cmd)
  local op = cmd == "SET" and set or get
  return function()
    collectgarbage()
    local per = N / TASKS
    local t0 = hrtime()
    sluice.scope(function(scope)
      for t = 1, TASKS do
        scope:spawn(function()
          local base = t * per
          for i = 1, per do pool:with(op, "key:" .. (base + i) % 1000) end
        end)
      end
    end)
    return (hrtime() - t0) / 1e6
  end
end

local function report(label, ms)
  print(string.format("redis: %-34s %8.1f ms  %9.0f ops/s", label, ms, N / ms * 1e3))
end

for _, cmd in ipairs { "SET", "GET" } do
  report(string.format("%s, 1 task, %d calls", cmd, N), measure(sequential(cmd), REPS))
  report(string.format("%s, %d tasks pipelining", cmd, TASKS), measure(concurrent(cmd), REPS))
  report(string.format("%s, %d tasks, pool of %d", cmd, TASKS, CLIENTS), measure(pooled(cmd), REPS))
end
c:close()
pool:close()
