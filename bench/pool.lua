-- bench/pool.lua: acquire/release through sluice.pool, uncontended and
-- contended.
--
--   build/sluice bench/pool.lua [n=1000000] [tasks=100] [max=10] [reps=5]
--
-- Uncontended: one task acquires and releases n times from a pool of
-- max idle resources (an idle pop and push in C, no scheduler turn).
-- Contended: `tasks` tasks share max resources; each acquires, holds
-- across one scheduler turn (sluice.sleep(0)) and releases, n / 10 times
-- in all, so most acquires wait and are served by a FIFO hand-off.
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 1000000
local TASKS = tonumber(arg and arg[2]) or 100
local MAX = tonumber(arg and arg[3]) or 10
local REPS = tonumber(arg and arg[4]) or 5

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function new_pool()
  local n = 0
  return sluice.pool{ max = MAX, create = function() n = n + 1 return { id = n } end }
end

local function uncontended()
  collectgarbage()
  local pool = new_pool()
  pool:release(pool:acquire())
  local t0 = hrtime()
  for _ = 1, N do
    local r = pool:acquire()
    pool:release(r)
  end
  local ms = (hrtime() - t0) / 1e6
  pool:close()
  return ms
end

local function contended()
  collectgarbage()
  local pool = new_pool()
  local per, done = math.floor(N / 10 / TASKS), 0
  local t0 = hrtime()
  sluice.scope(function(scope)
    for _ = 1, TASKS do
      scope:spawn(function()
        for _ = 1, per do
          local r = pool:acquire()
          sluice.sleep(0)
          pool:release(r)
          done = done + 1
        end
      end)
    end
  end)
  local ms = (hrtime() - t0) / 1e6
  assert(done == per * TASKS)
  pool:close()
  return ms, done
end

local med = measure(uncontended, REPS)
print(string.format("pool: %d acquire+release, uncontended, pool(max=%d): %.1f ms (%.0f ns/op)",
  N, MAX, med, med * 1e6 / N))
local ops = math.floor(N / 10 / TASKS) * TASKS
med = measure(contended, REPS)
print(string.format("pool: %d acquire+release by %d tasks, pool(max=%d), held one turn: %.1f ms (%.0f ns/op)",
  ops, TASKS, MAX, med, med * 1e6 / ops))
