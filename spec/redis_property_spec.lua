-- A randomized property test of redis.semaphore against a real
-- redis-server: seeded schedules of several limiter objects on one name
-- (as several processes would be), tasks that acquire (waiting, trying,
-- or with a short timeout), hold across turns and release, and
-- cancellations at random points (while queued on the server, while a
-- script is in flight, while holding).  After every grant, the holders
-- never exceed the permits; at the end, every task has finished, the
-- server holds no lease and queues no waiter, and every permit can be
-- taken again (none lost, none duplicated).
--
-- Each schedule makes real round trips (a hundred or so), so this runs
-- SCHEDULES / 50 of them (200 by default, 20 in the sanitizer build):
-- enough for the interleavings the server can produce, in seconds.
local sluice = require "sluice"
local servers = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/redis.lua")
local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local redis = require "sluice.redis"
if not redis.semaphore then require("sluice.redis_limits")(redis, nil) end

local fmt = string.format
local RUNS = math.max(10, math.floor(property.SCHEDULES / 50))
local BATCHES = 4

describe("redis.semaphore property", function()
  local srv, c

  setup(function() srv = servers.start() end)
  teardown(function() servers.stop_all() end)
  before_each(function() c = redis.connect { port = srv.port } end)
  after_each(function() c:close() end)

  local function run_schedule(seed)
    local rand = property.prng(seed)
    local problems = {}
    local name = "prop" .. seed
    local permits = rand(3)
    local sems = {}
    for i = 1, 1 + rand(2) do sems[i] = redis.semaphore(c, name, permits, { lease = 30 }) end
    local holders, peak = 0, 0

    local function hold(s, l)
      holders = holders + 1
      peak = math.max(peak, holders)
      if holders > permits then
        problems[#problems + 1] = fmt("%d holders of %d permits", holders, permits)
      end
      local ok, e = pcall(function()
        for _ = 1, rand(3) - 1 do sluice.yield() end
      end)
      holders = holders - 1
      sluice.shield(function() s:release(l) end)
      if not ok then error(e, 0) end
    end

    local function body(s, ops)
      for _ = 1, ops do
        local kind = rand(6)
        if kind <= 3 then
          hold(s, s:acquire())
        elseif kind == 4 then
          local l = s:acquire(0)
          if l then hold(s, l) end
        elseif kind == 5 then
          local l = s:acquire(0.01 * rand(3))
          if l then hold(s, l) end
        else
          s:with(function() for _ = 1, rand(2) do sluice.yield() end end)
        end
      end
    end

    local tasks = {}
    for i = 1, 3 + rand(6) do
      tasks[i] = sluice.spawn(body, sems[rand(#sems)], rand(3))
    end
    -- cancel a few at random moments
    for _ = 1, rand(4) - 1 do
      for _ = 1, rand(4) do sluice.yield() end
      tasks[rand(#tasks)]:cancel()
    end
    for _, t in ipairs(tasks) do
      local ok, e = pcall(t.await, t)
      if not ok and not sluice.is_error(e, "cancelled") then
        problems[#problems + 1] = "a task failed: " .. tostring(e)
      end
    end
    if holders ~= 0 then problems[#problems + 1] = holders .. " holders at the end" end
    local held = c:call("ZCARD", "{" .. name .. "}:holders")
    local queued = c:call("ZCARD", "{" .. name .. "}:queue")
    if held ~= 0 then problems[#problems + 1] = held .. " leases left on the server" end
    if queued ~= 0 then problems[#problems + 1] = queued .. " waiters left on the server" end
    -- every permit can be had again, and no more
    local s = sems[1]
    local got = {}
    for i = 1, permits do got[i] = s:acquire(0) end
    if #got ~= permits then problems[#problems + 1] = fmt("only %d of %d permits free", #got, permits) end
    if s:acquire(0) then problems[#problems + 1] = "a permit too many" end
    for _, l in ipairs(got) do s:release(l) end
    for _, x in ipairs(sems) do x:close() end
    c:call("DEL", "{" .. name .. "}:holders", "{" .. name .. "}:queue", "{" .. name .. "}:qexp",
      "{" .. name .. "}:fence", "{" .. name .. "}:seq")
    return problems
  end

  local per = math.ceil(RUNS / BATCHES)
  for b = 1, BATCHES do
    local first = property.FIRST_SEED + (b - 1) * per
    local last = math.min(property.FIRST_SEED + RUNS - 1, first + per - 1)
    it(fmt("schedules %d..%d keep holders <= permits and lose nothing", first, last), function()
      local failures = {}
      for seed = first, last do
        local problems = run_schedule(seed)
        if #problems > 0 then
          failures[#failures + 1] = fmt("seed %d: %s", seed, table.concat(problems, "; "))
          if #failures >= 5 then break end
        end
      end
      assert(#failures == 0, table.concat(failures, "\n"))
    end)
  end
end)
