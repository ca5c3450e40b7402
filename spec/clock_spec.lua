-- The virtual clock (the runner refuses to run without it).
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer = util.tracer
local uv = sluice.uv

-- Seconds since t0, printed short (the clock's absolute value carries
-- the rounding of earlier tests' fractional sleeps).
local function since(t0)
  return string.format("%.9g", sluice.now() - t0)
end

describe("the virtual clock", function()
  it("is on", function()
    assert.is_true(sluice.stats().virtual_clock)
  end)

  it("finishes a one-hour sleep at once and advances now() by exactly 3600", function()
    local t0, real0 = sluice.now(), uv.hrtime()
    sluice.sleep(3600)
    assert.equal(t0 + 3600, sluice.now())
    assert.is_true(uv.hrtime() - real0 < 0.5e9, "a virtual hour took real time")
  end)

  it("does not move while tasks are runnable", function()
    local t0 = sluice.now()
    local x = 0
    for i = 1, 1e6 do x = x + i end
    sluice.yield()
    assert.equal(t0, sluice.now())
    assert.equal(500000500000, x)
  end)

  it("fires timers with equal deadlines in the order they were armed", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local tasks = {}
    -- spawned 1, 2, 3; task i yields 3 - i times first, all at the same
    -- instant, so they arm the same deadline in the order 3, 2, 1
    for i = 1, 3 do
      tasks[i] = sluice.spawn(function()
        for _ = 1, 3 - i do sluice.yield() end
        log("arm " .. i)
        sluice.sleep(5)
        log(i .. "@" .. since(t0))
      end)
    end
    for _, t in ipairs(tasks) do t:await() end
    assert.same({ "arm 3", "arm 2", "arm 1", "3@5", "2@5", "1@5" }, trace)
  end)

  it("interleaves sleeps exactly", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local function worker(name, step, n)
      return sluice.spawn(function()
        for _ = 1, n do
          sluice.sleep(step)
          log(name .. "@" .. since(t0))
        end
      end)
    end
    local a = worker("a", 1, 4)
    local b = worker("b", 1.25, 3)
    local c = worker("c", 0.25, 2)
    a:await(); b:await(); c:await()
    assert.same({ "c@0.25", "c@0.5", "a@1", "b@1.25", "a@2", "b@2.5", "a@3", "b@3.75", "a@4" }, trace)
    assert.equal("4", since(t0))
  end)

  it("does not jump while real I/O is pending: a 20 ms libuv timer fires before a 1000 s sleep ends", function()
    local trace, log = tracer()
    local timer = uv.new_timer()
    timer:start(20, 0, function() log("uv timer") end)
    local t0 = sluice.now()
    sluice.sleep(1000)
    log("sleep done")
    timer:close()
    assert.same({ "uv timer", "sleep done" }, trace)
    assert.equal(t0 + 1000, sluice.now())
  end)

  it("keeps fractional deadlines exact", function()
    local t0 = sluice.now()
    sluice.sleep(0.1)
    sluice.sleep(0.2)
    assert.equal(t0 + 0.1 + 0.2, sluice.now())
  end)

  it("runs a sleep(0) after the tasks already ready, without moving the clock", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    sluice.spawn(function() log("a") end)
    sluice.spawn(function() sluice.sleep(0); log("b") end)
    sluice.sleep(0)
    log("main")
    sluice.sleep(0)
    log("main2")
    assert.same({ "a", "main", "b", "main2" }, trace)
    assert.equal(t0, sluice.now())
  end)
end)

describe("weak timers", function()
  it("fire when other timers carry time past them, never moving time themselves", function()
    local core = require "sluice.core"
    local fired = {}
    local t0 = sluice.now()
    local w = core.weak_timer(function(tag) fired[#fired + 1] = tag .. "@" .. (sluice.now() - t0) end, "w")
    w:arm(t0 + 5)
    assert.equal(t0 + 5, w:deadline())
    sluice.sleep(10)
    assert.same({ "w@5" }, fired)
    assert.is_nil(w:deadline())
    w:arm(sluice.now() + 1)
    w:stop()
    sluice.sleep(2)
    assert.same({ "w@5" }, fired)
  end)
end)
