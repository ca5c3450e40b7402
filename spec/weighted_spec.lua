-- sluice.weighted_semaphore: weights, FIFO without barging (Go's
-- x/sync/semaphore), timeouts, cancellation, resizing, deadlock, stats,
-- and argument checks with their exact messages.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer = util.tracer

-- The error f(...) raises (it must raise).
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

-- Spawns a task that acquires w, logs "<name>+" when granted, holds for
-- `hold` seconds (if given), releases and logs "<name>-".
local function worker(ws, log, name, w, hold)
  return sluice.spawn(function()
    ws:acquire(w)
    log(name .. "+")
    if hold then sluice.sleep(hold) end
    ws:release(w)
    log(name .. "-")
  end)
end

local function await_all(list)
  for _, t in ipairs(list) do t:await() end
end

-- Waits for t to finish, whatever its outcome; returns its status.
local function settle(t)
  pcall(t.await, t)
  return t.status
end

describe("sluice.weighted_semaphore", function()
  it("grants weights up to the capacity at once", function()
    local ws = sluice.weighted_semaphore(10)
    assert.equal(10, ws.capacity)
    assert.is_true(ws:acquire(3))
    assert.is_true(ws:acquire(7))
    assert.equal(10, ws.held)
    assert.equal(0, ws.available)
    assert.is_false(ws:try_acquire(1))
    ws:release(7)
    assert.is_true(ws:try_acquire(2))
    assert.equal(5, ws.held)
    assert.equal("weighted_semaphore (5/10 held, 0 waiting)", tostring(ws))
    ws:release(3)
    ws:release(2)
    assert.equal(10, ws.available)
    assert.equal(0, ws.waiting)
  end)

  it("wakes waiters in arrival order, as many from the head as fit", function()
    local ws = sluice.weighted_semaphore(4)
    local trace, log = tracer()
    ws:acquire(4)
    local ts = {
      worker(ws, log, "a", 2, 1), worker(ws, log, "b", 1, 1), worker(ws, log, "c", 3, 1),
      worker(ws, log, "d", 1, 1),
    }
    sluice.yield()
    assert.equal(4, ws.waiting)
    log("release")
    ws:release(4)
    await_all(ts)
    -- a and b fit together; c (3) must wait for both, and d waits behind c
    assert.same({ "release", "a+", "b+", "a-", "b-", "c+", "d+", "c-", "d-" }, trace)
  end)

  it("lets a large head block small newcomers (no barging)", function()
    local ws = sluice.weighted_semaphore(4)
    local trace, log = tracer()
    ws:acquire(3)
    local big = worker(ws, log, "big", 4)
    sluice.yield()
    assert.equal(1, ws.available)
    assert.is_false(ws:try_acquire(1))        -- 1 is free, but big is first
    local small = worker(ws, log, "small", 1)
    sluice.sleep(5)
    assert.same({}, trace)
    assert.equal(2, ws.waiting)
    log("release")
    ws:release(3)
    await_all { big, small }
    assert.same({ "release", "big+", "big-", "small+", "small-" }, trace)
  end)

  it("gives nil, \"timeout\" after the timeout, leaving the queue as it was", function()
    local ws = sluice.weighted_semaphore(4)
    local trace, log = tracer()
    ws:acquire(3)
    local t0 = sluice.now()
    local slow = sluice.spawn(function()
      local ok, why = ws:acquire(4, 2)
      log(tostring(ok) .. " " .. tostring(why) .. " at " .. (sluice.now() - t0))
    end)
    local small = worker(ws, log, "small", 1)   -- behind the large one
    sluice.sleep(1)
    assert.same({}, trace)
    slow:await()
    small:await()
    -- the blocking head timed out, so the small one behind it fits (and
    -- is woken first: the head's timeout let it through before waking it)
    assert.same({ "small+", "small-", "nil timeout at 2" }, trace)
    assert.same({ nil, "timeout" }, { ws:acquire(2, 0) })
    assert.equal(0, ws.waiting)
    ws:release(3)
    local st = ws:stats()
    assert.equal(1, st.timeouts)
  end)

  it("forgets a waiter cancelled while queued", function()
    local ws = sluice.weighted_semaphore(4)
    local trace, log = tracer()
    ws:acquire(2)
    local big = worker(ws, log, "big", 3)
    local small = worker(ws, log, "small", 2)
    sluice.yield()
    assert.equal(2, ws.waiting)
    big:cancel()
    small:await()
    assert.equal("cancelled", settle(big))
    assert.same({ "small+", "small-" }, trace)
    assert.equal(2, ws.held)
    ws:release(2)
    assert.equal(1, ws:stats().cancelled)
  end)

  it("passes the weight on when the task is cancelled right after the hand-off", function()
    local ws = sluice.weighted_semaphore(3)
    local trace, log = tracer()
    ws:acquire(3)
    local a = worker(ws, log, "a", 2)
    local b = worker(ws, log, "b", 2)
    sluice.yield()
    ws:release(3)           -- hands 2 to a, which has not run yet
    assert.equal("ready", a.status)
    a:cancel()
    await_all { b }
    assert.equal("cancelled", settle(a))
    assert.same({ "b+", "b-" }, trace)
    assert.equal(0, ws.held)
    local st = ws:stats()
    assert.equal(1, st.cancelled)
    assert.equal(2, st.acquired)   -- the main task's and b's
  end)

  it("releases with :with on return, on error and on cancellation", function()
    local ws = sluice.weighted_semaphore(5)
    assert.same({ "r", 1, nil, 3 }, { ws:with(4, function(x, y, z) return "r", x, y, z end, 1, nil, 3) })
    assert.equal(0, ws.held)
    local err = err_of(ws.with, ws, 3, function() error("boom", 0) end)
    assert.equal("boom", err)
    assert.equal(0, ws.held)
    local t = sluice.spawn(function() ws:with(5, sluice.sleep, 10) end)
    sluice.sleep(1)
    assert.equal(5, ws.held)
    t:cancel()
    assert.equal("cancelled", settle(t))
    assert.equal(0, ws.held)
    -- cancelled while waiting in :with: nothing to release
    ws:acquire(1)
    local w = sluice.spawn(function() ws:with(5, error, "never") end)
    sluice.yield()
    w:cancel()
    assert.equal("cancelled", settle(w))
    assert.equal(1, ws.held)
    ws:release(1)
    assert_invalid("weighted_semaphore:with: fn released what with acquired (the task holds 0, not 2)",
      ws.with, ws, 2, function() ws:release(2) end)
    assert.equal(0, ws.held)
  end)

  it("grows at run time and wakes waiters at once", function()
    local ws = sluice.weighted_semaphore(2)
    local trace, log = tracer()
    ws:acquire(2)
    local ts = { worker(ws, log, "a", 2), worker(ws, log, "b", 1) }
    sluice.yield()
    ws.capacity = 5
    assert.equal(5, ws.capacity)
    assert.equal(0, ws.waiting)
    await_all(ts)
    assert.same({ "a+", "a-", "b+", "b-" }, trace)
    ws:release(2)
  end)

  it("shrinks without blocking: holders finish, nothing is granted until it fits", function()
    local ws = sluice.weighted_semaphore(6)
    local trace, log = tracer()
    ws:acquire(5)
    local a = worker(ws, log, "a", 2)
    sluice.yield()
    ws.capacity = 3      -- 5 held: above the new capacity
    assert.equal(3, ws.capacity)
    assert.equal(5, ws.held)
    assert.equal(0, ws.available)
    ws:release(2)        -- 3 held: a (2) does not fit yet
    sluice.yield()
    assert.same({}, trace)
    ws:release(2)        -- 1 held: a fits
    a:await()
    assert.same({ "a+", "a-" }, trace)
    ws:release(1)
  end)

  it("fails a waiter heavier than a shrunk capacity, and lets those behind it on", function()
    local ws = sluice.weighted_semaphore(6)
    local trace, log = tracer()
    ws:acquire(4)
    local big = sluice.spawn(function() return ws:acquire(5) end)
    local small = worker(ws, log, "small", 1)
    sluice.yield()
    ws.capacity = 4
    local err = err_of(big.await, big)
    assert.equal("invalid", err.kind)
    assert.equal("weighted_semaphore:acquire: weight 5 exceeds the capacity 4 (it shrank while the task waited)",
      err.message)
    ws:release(3)
    small:await()
    assert.same({ "small+", "small-" }, trace)
    ws:release(1)
  end)

  it("raises deadlock when the task asks for more than the rest of the capacity", function()
    local ws = sluice.weighted_semaphore(4)
    ws:acquire(3)
    local err = err_of(ws.acquire, ws, 2)
    assert.equal("deadlock", err.kind)
    assert.equal("weighted_semaphore:acquire: deadlock: the task holds 3 of the capacity 4 and asks for 2 more",
      err.message)
    assert.equal(3, ws.held)
    assert.equal(0, ws.waiting)
    ws:release(3)
  end)

  it("raises deadlock when the other holders wait on this task", function()
    local ws = sluice.weighted_semaphore(4)
    ws:acquire(2)
    local other = sluice.spawn(function()
      ws:with(2, ws.acquire, ws, 1)    -- waits for the main task
    end)
    sluice.yield()
    assert.equal(1, ws.waiting)
    local err = err_of(ws.acquire, ws, 1)
    assert.equal("deadlock", err.kind)
    local head = err.message:match("^[^\n]*")
    assert.equal("weighted_semaphore:acquire: deadlock: every unit of weight in use is held by this task " ..
      "or by tasks waiting on it: ", head:sub(1, 114))
    assert.truthy(head:find("this task%) holds 2, task #%d+ holds 2$"), head)
    assert.same({ 4, 1 }, { ws.held, ws.waiting })
    other:cancel()
    assert.equal("cancelled", settle(other))
    ws:release(2)
    assert.equal(0, ws.held)
  end)

  it("counts acquisitions, waits, timeouts and cancellations in stats()", function()
    local ws = sluice.weighted_semaphore(2)
    ws:acquire(2)
    local a = sluice.spawn(function() ws:acquire(1) ws:release(1) end)
    local b = sluice.spawn(function() return ws:acquire(1, 3) end)
    local c = sluice.spawn(function() ws:acquire(2) end)
    sluice.sleep(1)
    c:cancel()
    assert.equal("cancelled", settle(c))
    sluice.sleep(3)       -- b times out at 3
    ws:release(2)
    a:await()
    local st = ws:stats()
    assert.same({ 2, 0, 2, 0 }, { st.capacity, st.held, st.available, st.waiting })
    assert.same({ 2, 1, 1, 1 }, { st.acquired, st.waited, st.timeouts, st.cancelled })
    assert.equal(4 + 3 + 1, st.wait_total)
    assert.equal(4, st.wait_max)
    assert.equal(32, #st.histogram)
    local n = 0
    for _, v in ipairs(st.histogram) do n = n + v end
    assert.equal(3, n)
    assert.same({ nil, "timeout" }, { b:await() })
  end)

  it("lists its holders", function()
    local ws = sluice.weighted_semaphore(5)
    ws:acquire(2)
    local t = sluice.spawn(function() ws:acquire(3) sluice.sleep(1) ws:release(3) end)
    sluice.yield()
    local hs = ws:holders()
    assert.equal(2, #hs)
    assert.same({ sluice.current(), 2 }, { hs[1].task, hs[1].count })
    assert.same({ t, 3 }, { hs[2].task, hs[2].count })
    t:await()
    ws:release(2)
    assert.same({}, ws:holders())
  end)
end)

describe("weighted_semaphore arguments", function()
  local bad_counts = {
    { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" },
    { "4", '"4"' }, { nil, "nil" }, { {}, "table" },
  }

  it("rejects a capacity that is not a positive integer", function()
    for _, v in ipairs(bad_counts) do
      assert_invalid("weighted_semaphore: capacity must be a positive integer (got " .. v[2] .. ")",
        sluice.weighted_semaphore, v[1])
    end
    assert_invalid("weighted_semaphore: capacity must be a positive integer up to 2^53 (got 1.844674407371e+19)",
      sluice.weighted_semaphore, 2 ^ 64)
  end)

  it("rejects a bad weight at once, leaving the semaphore unchanged", function()
    local ws = sluice.weighted_semaphore(4)
    ws:acquire(1)
    for _, m in ipairs { "acquire", "try_acquire", "release" } do
      for _, v in ipairs(bad_counts) do
        assert_invalid("weighted_semaphore:" .. m .. ": weight must be a positive integer (got " .. v[2] .. ")",
          ws[m], ws, v[1])
      end
    end
    assert_invalid("weighted_semaphore:acquire: weight 5 exceeds the capacity 4", ws.acquire, ws, 5)
    assert_invalid("weighted_semaphore:try_acquire: weight 5 exceeds the capacity 4", ws.try_acquire, ws, 5)
    assert_invalid("weighted_semaphore:with: weight 5 exceeds the capacity 4", ws.with, ws, 5, print)
    assert_invalid("weighted_semaphore:with: weight must be a positive integer (got 0)", ws.with, ws, 0, print)
    assert_invalid("weighted_semaphore:with: fn must be a function (got nil)", ws.with, ws, 1)
    assert.same({ 1, 3, 0 }, { ws.held, ws.available, ws.waiting })
    ws:release(1)
  end)

  it("rejects a bad timeout", function()
    local ws = sluice.weighted_semaphore(4)
    for _, v in ipairs { { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "1", '"1"' }, { {}, "table" } } do
      assert_invalid("weighted_semaphore:acquire: timeout must be a finite non-negative number of seconds (got " ..
        v[2] .. ")", ws.acquire, ws, 1, v[1])
    end
    assert.same({ 0, 0 }, { ws.held, ws.waiting })
  end)

  it("refuses to release more than the task holds", function()
    local ws = sluice.weighted_semaphore(4)
    assert_invalid("weighted_semaphore:release: the task holds 0 and cannot release 1", ws.release, ws, 1)
    ws:acquire(2)
    assert_invalid("weighted_semaphore:release: the task holds 2 and cannot release 3", ws.release, ws, 3)
    local other = sluice.spawn(function() ws:release(1) end)
    local err = err_of(other.await, other)
    assert.equal("weighted_semaphore:release: the task holds 0 and cannot release 1", err.message)
    assert.same({ 2, 2 }, { ws.held, ws.available })
    ws:release(2)
  end)

  it("checks self", function()
    local ws = sluice.weighted_semaphore(4)
    local sem = sluice.semaphore(1)
    for _, m in ipairs { "acquire", "try_acquire", "release", "with", "stats", "holders" } do
      for _, v in ipairs { { nil, "nil" }, { {}, "table" }, { sem, "cdata" }, { 5, "number" } } do
        assert_invalid("weighted_semaphore:" .. m .. ": expected a weighted_semaphore (got " .. v[2] .. ")",
          ws[m], v[1], 1, print)
      end
    end
    assert.same({ 0, 0 }, { ws.held, sem.permits - sem.available })
  end)

  it("checks assigned fields", function()
    local ws = sluice.weighted_semaphore(4)
    for _, v in ipairs(bad_counts) do
      assert_invalid("weighted_semaphore: capacity must be a positive integer (got " .. v[2] .. ")",
        function() ws.capacity = v[1] end)
    end
    assert_invalid("weighted_semaphore: field 'held' is read-only", function() ws.held = 1 end)
    assert_invalid("weighted_semaphore: field 'foo' is not settable", function() ws.foo = 1 end)
    assert.equal(4, ws.capacity)
  end)

  it("must be called from a task that can block", function()
    local ws = sluice.weighted_semaphore(1)
    ws:acquire(1)
    local err
    table.sort({ 1, 2 }, function(a, b)
      err = err or select(2, pcall(ws.acquire, ws, 1))
      return a < b
    end)
    assert.equal("invalid", err.kind)
    assert.equal("weighted_semaphore:acquire: cannot block here (inside a C call such as a table.sort " ..
      "comparator or a string.gsub callback)", err.message)
    assert.equal(0, ws.waiting)
    ws:release(1)
  end)
end)
