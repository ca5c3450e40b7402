-- sluice.priority_semaphore: priority order, FIFO within a priority, no
-- barging, aging, timeouts, cancellation, resizing, deadlock, stats, and
-- argument checks with their exact messages.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer = util.tracer

local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function assert_invalid(message, f, ...)
  local err = err_of(f, ...)
  assert.equal("invalid", err.kind)
  assert.equal(message, err.message)
end

-- A task that acquires at priority p, logs name when granted, holds for
-- `hold` seconds (if given) and releases.
local function worker(ps, log, name, p, hold)
  return sluice.spawn(function()
    ps:acquire(p)
    log(name)
    if hold then sluice.sleep(hold) end
    ps:release()
  end)
end

local function await_all(list)
  for _, t in ipairs(list) do t:await() end
end

local function settle(t)
  pcall(t.await, t)
  return t.status
end

describe("sluice.priority_semaphore", function()
  it("grants free permits at once, whatever the priority", function()
    local ps = sluice.priority_semaphore(2)
    assert.is_true(ps:acquire(7))
    assert.is_true(ps:acquire(-3))
    assert.same({ 2, 2, 0, 0 }, { ps.permits, ps.held, ps.available, ps.waiting })
    assert.is_false(ps:try_acquire())
    assert.equal("priority_semaphore (2/2 held, 0 waiting)", tostring(ps))
    ps:release()
    assert.is_true(ps:try_acquire())
    ps:release()
    ps:release()
    assert.equal(2, ps.available)
    assert.is_nil(ps.aging)
  end)

  it("wakes lower numbers first, FIFO within a priority", function()
    local ps = sluice.priority_semaphore(1)
    local trace, log = tracer()
    ps:acquire(0)
    local ts = {}
    for i, p in ipairs { 5, 1, 3, 1, -2, 3, 5 } do ts[i] = worker(ps, log, p .. "#" .. i, p, 1) end
    sluice.yield()
    assert.equal(7, ps.waiting)
    ps:release()
    await_all(ts)
    assert.same({ "-2#5", "1#2", "1#4", "3#3", "3#6", "5#1", "5#7" }, trace)
  end)

  it("never lets a newcomer barge past a queued waiter, even a more urgent one", function()
    local ps = sluice.priority_semaphore(1)
    local trace, log = tracer()
    ps:acquire(0)
    local low = worker(ps, log, "low", 9)
    sluice.yield()
    ps:release()                       -- handed to low, which has not run yet
    assert.is_false(ps:try_acquire())
    local urgent = worker(ps, log, "urgent", -100)
    await_all { low, urgent }
    assert.same({ "low", "urgent" }, trace)
  end)

  it("ages waiters: priority improves by 1 every `aging` seconds waited", function()
    local ps = sluice.priority_semaphore(1, { aging = 10 })
    assert.equal(10, ps.aging)
    local trace, log = tracer()
    ps:acquire(0)
    local ts = { worker(ps, log, "low5@0", 5) }        -- ranks 5 - t/10
    sluice.sleep(30)
    ts[2] = worker(ps, log, "high1@30", 1)            -- 1 - (t-30)/10: ahead of low
    sluice.sleep(15)
    ts[3] = worker(ps, log, "high1@45", 1)            -- 1 - (t-45)/10: behind low
    ts[4] = worker(ps, log, "top0@45", 0)             -- 0 - (t-45)/10: behind low too
    sluice.sleep(5)
    ps:release()
    await_all(ts)
    assert.same({ "high1@30", "top0@45", "low5@0", "high1@45" }, trace)
  end)

  it("keeps strict priorities without aging, however long a waiter waited", function()
    local ps = sluice.priority_semaphore(1)
    local trace, log = tracer()
    ps:acquire(0)
    local ts = { worker(ps, log, "low", 5) }
    sluice.sleep(1e6)
    ts[2] = worker(ps, log, "high", 4)
    sluice.yield()
    ps:release()
    await_all(ts)
    assert.same({ "high", "low" }, trace)
  end)

  it("gives nil, \"timeout\" after the timeout and forgets the waiter", function()
    local ps = sluice.priority_semaphore(1)
    local trace, log = tracer()
    ps:acquire(0)
    local t0 = sluice.now()
    local a = sluice.spawn(function()
      local ok, why = ps:acquire(1, 2)
      log(tostring(ok) .. " " .. why .. " at " .. (sluice.now() - t0))
    end)
    local b = worker(ps, log, "b", 2)
    sluice.sleep(3)
    assert.same({ "nil timeout at 2" }, trace)
    assert.equal(1, ps.waiting)
    ps:release()
    await_all { a, b }
    assert.same({ "nil timeout at 2", "b" }, trace)
    ps:acquire(0)
    assert.same({ nil, "timeout" }, { ps:acquire(-1, 0) })   -- a zero timeout never waits
    ps:release()
    assert.equal(1, ps:stats().timeouts)
  end)

  it("forgets a waiter cancelled while queued", function()
    local ps = sluice.priority_semaphore(1)
    local trace, log = tracer()
    ps:acquire(0)
    local ts = { worker(ps, log, "a", 1), worker(ps, log, "b", 2), worker(ps, log, "c", 3) }
    sluice.yield()
    ts[2]:cancel()
    assert.equal("cancelled", settle(ts[2]))
    assert.equal(2, ps.waiting)
    ps:release()
    await_all { ts[1], ts[3] }
    assert.same({ "a", "c" }, trace)
    assert.equal(1, ps:stats().cancelled)
  end)

  it("passes the permit on when the task is cancelled right after the hand-off", function()
    local ps = sluice.priority_semaphore(1)
    local trace, log = tracer()
    ps:acquire(0)
    local a, b = worker(ps, log, "a", 1), worker(ps, log, "b", 2)
    sluice.yield()
    ps:release()
    assert.equal("ready", a.status)
    a:cancel()
    b:await()
    assert.equal("cancelled", settle(a))
    assert.same({ "b" }, trace)
    assert.equal(0, ps.held)
    local st = ps:stats()
    assert.same({ 2, 1 }, { st.acquired, st.cancelled })
  end)

  it("releases with :with on return, on error and on cancellation", function()
    local ps = sluice.priority_semaphore(1)
    assert.same({ 1, nil, 3 }, { ps:with(0, function(...) return ... end, 1, nil, 3) })
    assert.equal("boom", err_of(ps.with, ps, 0, function() error("boom", 0) end))
    assert.equal(0, ps.held)
    local t = sluice.spawn(function() ps:with(1, sluice.sleep, 10) end)
    sluice.sleep(1)
    assert.equal(1, ps.held)
    t:cancel()
    assert.equal("cancelled", settle(t))
    assert.equal(0, ps.held)
    assert_invalid("priority_semaphore:with: fn released what with acquired (the task does not hold a permit any more)",
      ps.with, ps, 0, function() ps:release() end)
  end)

  it("grows at run time and wakes waiters at once, in priority order", function()
    local ps = sluice.priority_semaphore(1)
    local trace, log = tracer()
    ps:acquire(0)
    local ts = { worker(ps, log, "c", 3, 1), worker(ps, log, "a", 1, 1), worker(ps, log, "b", 2, 1) }
    sluice.yield()
    ps.permits = 3
    assert.equal(1, ps.waiting)
    sluice.yield()
    assert.same({ "a", "b" }, trace)
    ps:release()
    await_all(ts)
    assert.same({ "a", "b", "c" }, trace)
  end)

  it("shrinks without blocking: holders finish, nothing is granted until under the limit", function()
    local ps = sluice.priority_semaphore(3)
    local trace, log = tracer()
    for _ = 1, 3 do ps:acquire(0) end
    local w = worker(ps, log, "w", 0)
    sluice.yield()
    ps.permits = 1
    assert.same({ 1, 3, 0 }, { ps.permits, ps.held, ps.available })
    ps:release()
    ps:release()
    sluice.yield()
    assert.same({}, trace)
    ps:release()
    w:await()
    assert.same({ "w" }, trace)
  end)

  it("raises deadlock on a nested acquire when the task holds every permit", function()
    local ps = sluice.priority_semaphore(1)
    ps:acquire(0)
    local err = err_of(ps.acquire, ps, 0)
    assert.equal("deadlock", err.kind)
    assert.truthy(err.message:find("^priority_semaphore:acquire: deadlock: every permit is held by this task " ..
      "or by tasks waiting on it: task #%d+ %(.*this task%) holds 1\n"), err.message)
    assert.same({ 1, 0 }, { ps.held, ps.waiting })
    ps:release()
  end)

  it("counts acquisitions, waits, timeouts and cancellations in stats()", function()
    local ps = sluice.priority_semaphore(1, { aging = 2 })
    ps:acquire(0)
    local a = sluice.spawn(function() ps:acquire(1) ps:release() end)
    local b = sluice.spawn(function() return ps:acquire(0, 3) end)
    local c = sluice.spawn(function() ps:acquire(0) end)
    sluice.sleep(1)
    c:cancel()
    settle(c)
    sluice.sleep(3)
    ps:release()
    a:await()
    local st = ps:stats()
    assert.same({ 1, 0, 1, 0, 2 }, { st.permits, st.held, st.available, st.waiting, st.aging })
    assert.same({ 2, 1, 1, 1 }, { st.acquired, st.waited, st.timeouts, st.cancelled })
    assert.same({ 8, 4 }, { st.wait_total, st.wait_max })
    assert.equal(32, #st.histogram)
    assert.same({ nil, "timeout" }, { b:await() })
  end)

  it("lists its holders", function()
    local ps = sluice.priority_semaphore(2)
    ps:acquire(0)
    local hs = ps:holders()
    assert.same({ 1, 1 }, { #hs, hs[1].count })
    assert.equal(sluice.current(), hs[1].task)
    ps:release()
    assert.same({}, ps:holders())
  end)
end)

describe("priority_semaphore arguments", function()
  local bad_counts = {
    { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" },
    { "4", '"4"' }, { nil, "nil" }, { {}, "table" },
  }

  it("rejects permits that are not a positive integer", function()
    for _, v in ipairs(bad_counts) do
      assert_invalid("priority_semaphore: permits must be a positive integer (got " .. v[2] .. ")",
        sluice.priority_semaphore, v[1])
    end
  end)

  it("checks its options", function()
    assert_invalid("priority_semaphore: opts must be a table (got 5)", sluice.priority_semaphore, 1, 5)
    assert_invalid("priority_semaphore: unknown option 'agin'", sluice.priority_semaphore, 1, { agin = 1 })
    for _, v in ipairs { { 0, "0" }, { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "1", '"1"' } } do
      assert_invalid("priority_semaphore: aging must be a finite positive number of seconds (got " .. v[2] .. ")",
        sluice.priority_semaphore, 1, { aging = v[1] })
    end
    assert.equal(0.5, sluice.priority_semaphore(1, { aging = 0.5 }).aging)
    assert.is_nil(sluice.priority_semaphore(1, {}).aging)
  end)

  it("rejects a priority that is not an integer, leaving the semaphore unchanged", function()
    local ps = sluice.priority_semaphore(1)
    ps:acquire(0)
    for _, m in ipairs { "acquire", "with" } do
      for _, v in ipairs { { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { -math.huge, "-inf" },
                           { "1", '"1"' }, { nil, "nil" }, { {}, "table" } } do
        assert_invalid("priority_semaphore:" .. m .. ": priority must be an integer (got " .. v[2] .. ")",
          ps[m], ps, v[1], print)
      end
    end
    assert_invalid("priority_semaphore:with: fn must be a function (got nil)", ps.with, ps, 0)
    assert.same({ 1, 0 }, { ps.held, ps.waiting })
    ps:release()
  end)

  it("rejects a bad timeout", function()
    local ps = sluice.priority_semaphore(1)
    for _, v in ipairs { { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "1", '"1"' } } do
      assert_invalid("priority_semaphore:acquire: timeout must be a finite non-negative number of seconds (got " ..
        v[2] .. ")", ps.acquire, ps, 0, v[1])
    end
    assert.same({ 0, 0 }, { ps.held, ps.waiting })
  end)

  it("refuses to release a permit the task does not hold", function()
    local ps = sluice.priority_semaphore(2)
    assert_invalid("priority_semaphore:release: the task does not hold a permit", ps.release, ps)
    ps:acquire(0)
    local other = sluice.spawn(function() ps:release() end)
    assert.equal("priority_semaphore:release: the task does not hold a permit", err_of(other.await, other).message)
    ps:release()
    assert_invalid("priority_semaphore:release: the task does not hold a permit", ps.release, ps)
    assert.same({ 0, 2 }, { ps.held, ps.available })
  end)

  it("checks self", function()
    local ps = sluice.priority_semaphore(1)
    local ws = sluice.weighted_semaphore(1)
    for _, m in ipairs { "acquire", "try_acquire", "release", "with", "stats", "holders" } do
      for _, v in ipairs { { nil, "nil" }, { {}, "table" }, { ws, "cdata" }, { 5, "number" } } do
        assert_invalid("priority_semaphore:" .. m .. ": expected a priority_semaphore (got " .. v[2] .. ")",
          ps[m], v[1], 0, print)
      end
    end
    assert.equal(0, ps.held)
  end)

  it("checks assigned fields", function()
    local ps = sluice.priority_semaphore(2)
    for _, v in ipairs(bad_counts) do
      assert_invalid("priority_semaphore: permits must be a positive integer (got " .. v[2] .. ")",
        function() ps.permits = v[1] end)
    end
    assert_invalid("priority_semaphore: field 'aging' is read-only", function() ps.aging = 1 end)
    assert_invalid("priority_semaphore: field 'x' is not settable", function() ps.x = 1 end)
    assert.equal(2, ps.permits)
  end)
end)
