-- sluice.semaphore: acquire, try_acquire, release, with, available,
-- waiting, permits (resizable), holders, stats; FIFO hand-off, timeouts,
-- cancellation, deadlock errors, argument checks, the host's report.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of = util.tracer, util.error_of

-- this file as tracebacks name it
local SRC = debug.getinfo(1, "S").short_src

local BIN = os.getenv("SLUICE_BIN") or "build/sluice"

local function counts(s)
  return { permits = s.permits, available = s.available, waiting = s.waiting }
end

local function ids(list)
  local out = {}
  for i, h in ipairs(list) do out[i] = { h.task.id, h.count } end
  return out
end

describe("sluice.semaphore", function()
  it("grants free permits at once and counts them", function()
    local s = sluice.semaphore(2)
    assert.same({ permits = 2, available = 2, waiting = 0 }, counts(s))
    local t0 = sluice.now()
    assert.is_true(s:acquire())
    assert.is_true(s:try_acquire())
    assert.is_false(s:try_acquire())
    assert.same({ permits = 2, available = 0, waiting = 0 }, counts(s))
    assert.equal("semaphore (2/2 held, 0 waiting)", tostring(s))
    assert.is_nil(s:release())
    assert.equal(1, s.available)
    s:release()
    assert.same({ permits = 2, available = 2, waiting = 0 }, counts(s))
    assert.equal(t0, sluice.now())
  end)

  it("parks a task when none is free, until the holder releases", function()
    local trace, log = tracer()
    local s = sluice.semaphore(1)
    s:acquire()
    local t = sluice.spawn(function()
      log("t waits")
      assert.is_true(s:acquire())
      log("t got it at " .. sluice.now())
      s:release()
    end)
    sluice.sleep(1)
    assert.same({ permits = 1, available = 0, waiting = 1 }, counts(s))
    assert.equal("semaphore (1/1 held, 1 waiting)", tostring(s))
    log("release")
    s:release()
    t:await()
    assert.same({ "t waits", "release", "t got it at " .. sluice.now() }, trace)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("wakes waiters one per release, in the order they queued", function()
    local trace, log = tracer()
    local s = sluice.semaphore(2)
    local tasks = {}
    local t0 = sluice.now()
    for i = 1, 5 do
      tasks[i] = sluice.spawn(function()
        sluice.sleep(i * 0.25)            -- queue in order 1..5
        s:acquire()
        log(i .. "+" .. sluice.now() - t0)
        sluice.sleep(1)
        log(i .. "-")
        s:release()
      end)
    end
    for i = 1, 5 do tasks[i]:await() end
    assert.same({
      "1+0.25", "2+0.5",
      "1-", "3+1.25", "2-", "4+1.5",
      "3-", "5+2.25", "4-", "5-",
    }, trace)
  end)

  it("hands a released permit to the head waiter: nobody barges in", function()
    local trace, log = tracer()
    local s = sluice.semaphore(1)
    s:acquire()
    local a = sluice.spawn(function() s:acquire() log("a") sluice.sleep(1) s:release() end)
    sluice.yield()                        -- a is queued
    s:release()                           -- the permit is a's now, a has not run
    assert.same({ permits = 1, available = 0, waiting = 0 }, counts(s))
    assert.is_false(s:try_acquire())      -- the releaser cannot take it back
    assert.is_nil(select(1, s:acquire(0)))
    -- a newcomer spawned now queues behind the releaser
    local b = sluice.spawn(function() s:acquire() log("b") s:release() end)
    s:acquire()
    log("main")
    sluice.yield()
    s:release()
    b:await()
    a:await()
    assert.same({ "a", "main", "b" }, trace)
  end)

  it("lets a newcomer in at once when nobody is queued", function()
    local s = sluice.semaphore(1)
    local t = sluice.spawn(function() s:acquire() sluice.sleep(1) s:release() end)
    sluice.sleep(2)
    assert.equal("done", t.status)
    assert.is_true(s:try_acquire())
    s:release()
  end)
end)

describe("semaphore:acquire(timeout)", function()
  it("gives nil, \"timeout\" after exactly the timeout, leaving the queue as it was", function()
    local s = sluice.semaphore(1)
    local holder = sluice.spawn(function() s:acquire() sluice.sleep(10) s:release() end)
    sluice.yield()
    local t0 = sluice.now()
    local ok, why = s:acquire(2.5)
    assert.same({ nil, "timeout" }, { ok, why })
    assert.equal(t0 + 2.5, sluice.now())
    assert.same({ permits = 1, available = 0, waiting = 0 }, counts(s))
    holder:await()
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("acquire(0) takes a free permit or answers at once", function()
    local s = sluice.semaphore(1)
    local t0 = sluice.now()
    assert.is_true(s:acquire(0))
    assert.same({ n = 2, nil, "timeout" }, table.pack and table.pack(s:acquire(0)) or { n = select("#", s:acquire(0)), s:acquire(0) })
    assert.equal(t0, sluice.now())
    assert.equal(0, s.waiting)
    s:release()
  end)

  it("a waiter that timed out does not take a later permit: the next one does", function()
    local trace, log = tracer()
    local s = sluice.semaphore(1)
    s:acquire()
    local a = sluice.spawn(function() log("a " .. tostring(s:acquire(1)) .. " " .. sluice.now() % 1000) end)
    local b = sluice.spawn(function() s:acquire() log("b " .. sluice.now() % 1000) s:release() end)
    local t0 = sluice.now()
    sluice.sleep(2)
    assert.equal(1, s.waiting)
    s:release()
    b:await()
    a:await()
    assert.same({ "a nil " .. (t0 + 1) % 1000, "b " .. (t0 + 2) % 1000 }, trace)
  end)

  it("a grant before the deadline disarms the timer", function()
    local s = sluice.semaphore(1)
    s:acquire()
    local t = sluice.spawn(function()
      local ok = s:acquire(5)
      s:release()
      return ok, sluice.now()
    end)
    sluice.sleep(1)
    local t1 = sluice.now()
    s:release()
    local ok, at = t:await()
    assert.is_true(ok)
    assert.equal(t1, at)
    assert.equal(0, sluice.stats().timers - 1)   -- only the runner's watchdog
    assert.equal(0, s:stats().timeouts)
  end)
end)

describe("semaphore cancellation", function()
  it("of a queued waiter leaves the queue as if it had never been there", function()
    local trace, log = tracer()
    local s = sluice.semaphore(1)
    s:acquire()
    local w = {}
    for i = 1, 3 do
      w[i] = sluice.spawn(function()
        local ok, err = pcall(s.acquire, s)
        if not ok then log(i .. " " .. err.kind) return end
        log(i .. " got")
        s:release()
      end)
    end
    sluice.yield()
    assert.equal(3, s.waiting)
    w[2]:cancel()
    sluice.yield()
    assert.same({ "2 cancelled" }, trace)
    assert.equal(2, s.waiting)
    s:release()
    w[1]:await(); w[3]:await()
    assert.same({ "2 cancelled", "1 got", "3 got" }, trace)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
    local st = s:stats()
    assert.same({ 3, 2, 1, 0 }, { st.acquired, st.waited, st.cancelled, st.timeouts })
  end)

  it("right after the hand-off passes the permit on to the next waiter", function()
    local trace, log = tracer()
    local s = sluice.semaphore(1)
    s:acquire()
    local a = sluice.spawn(function()
      local ok, err = pcall(s.acquire, s)
      log("a " .. (ok and "got" or err.kind))
    end)
    local b = sluice.spawn(function() s:acquire() log("b got") s:release() end)
    sluice.yield()
    s:release()                  -- handed to a, which has not run yet
    assert.equal(0, s.available)
    a:cancel()
    a:await(); b:await()
    assert.same({ "a cancelled", "b got" }, trace)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
    local st = s:stats()
    -- a's wait ended by cancellation: not counted as an acquisition
    assert.same({ 2, 1, 1 }, { st.acquired, st.waited, st.cancelled })
  end)

  it("takes effect at acquire even when a permit is free", function()
    local s = sluice.semaphore(1)
    local t = sluice.spawn(function()
      sluice.current():cancel()
      local ok, err = pcall(s.acquire, s)
      return ok, err.kind, s.available
    end)
    assert.same({ false, "cancelled", 1 }, { t:await() })
    -- try_acquire never blocks, so it is no cancellation point
    local u = sluice.spawn(function()
      sluice.current():cancel()
      local ok = s:try_acquire()
      s:release()
      return ok
    end)
    assert.is_true(u:await())
  end)

  it("is deferred by sluice.shield until the wait is over", function()
    local s = sluice.semaphore(1)
    s:acquire()
    local t = sluice.spawn(function()
      return sluice.shield(function() local ok = s:acquire() s:release() return ok end)
    end)
    sluice.yield()
    t:cancel()
    sluice.sleep(1)
    assert.equal("waiting", t.status)
    s:release()
    assert.is_true(t:await())
  end)
end)

describe("semaphore:with", function()
  it("returns fn's results, holding a permit meanwhile", function()
    local s = sluice.semaphore(2)
    local r = { n = 0 }
    r = { s:with(function(a, b)
      assert.equal(1, s.available)
      return a, nil, b, nil
    end, "x", "y") }
    assert.same({ "x", nil, "y", nil }, r)
    assert.equal(4, select("#", s:with(function() return 1, nil, 3, nil end)))
    assert.equal(2, s.available)
  end)

  it("releases on error and re-raises the very same error", function()
    local s = sluice.semaphore(1)
    local e = { code = 7 }
    assert.equal(e, error_of(s.with, s, function() error(e) end))
    assert.equal(1, s.available)
    local err = error_of(s.with, s, function() error("boom", 0) end)
    assert.equal("boom", err)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("releases when the task is cancelled inside fn, and the next waiter goes on", function()
    local trace, log = tracer()
    local s = sluice.semaphore(1)
    local a = sluice.spawn(function()
      s:with(function() log("a in") sluice.sleep(10) log("a never") end)
    end)
    local b = sluice.spawn(function() s:with(function() log("b in at " .. sluice.now() % 1000) end) end)
    sluice.sleep(1)
    local t1 = sluice.now()
    a:cancel()
    assert.equal("cancelled", error_of(a.await, a).kind)
    b:await()
    assert.same({ "a in", "b in at " .. t1 % 1000 }, trace)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("raises cancelled without calling fn when cancelled while waiting", function()
    local s = sluice.semaphore(1)
    s:acquire()
    local called = false
    local t = sluice.spawn(function() s:with(function() called = true end) end)
    sluice.yield()
    t:cancel()
    assert.equal("cancelled", error_of(t.await, t).kind)
    assert.is_false(called)
    s:release()
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("reports fn releasing the permit itself", function()
    local s = sluice.semaphore(1)
    local err = error_of(s.with, s, function() s:release() end)
    assert.equal("invalid", err.kind)
    assert.equal("semaphore:with: fn released what with acquired (the task does not hold a permit any more)",
      err.message)
    assert.equal(1, s.available)
  end)
end)

describe("semaphore permits (resize at run time)", function()
  it("growing grants queued waiters at once, in order", function()
    local trace, log = tracer()
    local s = sluice.semaphore(1)
    s:acquire()
    local w = {}
    for i = 1, 4 do w[i] = sluice.spawn(function() s:acquire() log(i) sluice.sleep(1) s:release() end) end
    sluice.yield()
    s.permits = 3
    assert.same({ permits = 3, available = 0, waiting = 2 }, counts(s))
    sluice.yield()
    assert.same({ 1, 2 }, trace)
    s.permits = 10
    sluice.yield()
    assert.same({ 1, 2, 3, 4 }, trace)
    assert.same({ permits = 10, available = 5, waiting = 0 }, counts(s))
    s:release()
    for i = 1, 4 do w[i]:await() end
    assert.same({ permits = 10, available = 10, waiting = 0 }, counts(s))
  end)

  it("shrinking never blocks: holders above the limit finish, no grant until under it", function()
    local trace, log = tracer()
    local s = sluice.semaphore(3)
    local gate = {}
    local holders = {}
    for i = 1, 3 do
      holders[i] = sluice.spawn(function()
        s:acquire()
        sluice.sleep(i)
        log("h" .. i .. " releases")
        s:release()
      end)
    end
    local waiter = sluice.spawn(function() s:acquire() log("w got") s:release() end)
    sluice.yield()
    local t0 = sluice.now()
    s.permits = 1
    assert.equal(t0, sluice.now())
    assert.same({ permits = 1, available = 0, waiting = 1 }, counts(s))
    assert.equal(3, s:stats().held)
    for i = 1, 3 do holders[i]:await() end
    waiter:await()
    assert.same({ "h1 releases", "h2 releases", "h3 releases", "w got" }, trace)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
    local _ = gate
  end)

  it("rejects what is not a positive integer and keeps the old value", function()
    local s = sluice.semaphore(2)
    s:acquire()
    for _, v in ipairs { { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" },
                         { "3", "\"3\"" }, { false, "boolean" }, { {}, "table" } } do
      local err = error_of(function() s.permits = v[1] end)
      assert.equal("invalid", err.kind)
      assert.equal("semaphore: permits must be a positive integer (got " .. v[2] .. ")", err.message)
    end
    local err = error_of(function() s.permits = nil end)
    assert.equal("semaphore: permits must be a positive integer (got nil)", err.message)
    assert.same({ permits = 2, available = 1, waiting = 0 }, counts(s))
    s:release()
  end)

  it("other fields are read-only", function()
    local s = sluice.semaphore(2)
    assert.equal("semaphore: field 'available' is read-only", error_of(function() s.available = 3 end).message)
    assert.equal("semaphore: field 'waiting' is read-only", error_of(function() s.waiting = 3 end).message)
    assert.equal("semaphore: field 'x' is not settable", error_of(function() s.x = 3 end).message)
    assert.is_nil(s.x)
    assert.same({ permits = 2, available = 2, waiting = 0 }, counts(s))
  end)
end)

describe("semaphore deadlocks", function()
  it("raise at the nested acquire (the seed's nested withPermit) instead of hanging", function()
    local s = sluice.semaphore(1)
    local me = sluice.current()
    local inner_ran = false
    local line
    local err = error_of(s.with, s, function()
      line = debug.getinfo(1, "l").currentline + 1
      s:with(function() inner_ran = true end)
    end)
    assert.is_false(inner_ran)
    assert.equal("deadlock", err.kind)
    assert.equal(("semaphore:with: deadlock: every permit is held by this task or by tasks waiting on it: " ..
      "task #%d (%s, this task) holds 1\n" ..
      "(sluice.track_holders(true) records where each holder acquired it)"):format(me.id, me.name), err.message)
    -- the traceback is where this task would have blocked
    assert.equal(err.message .. "\nstack traceback:\n\t" .. SRC .. ":" .. line .. ":",
      err.traceback:match("^.-stack traceback:\n[^\n]-:%d+:"))
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("name every holder and show where the others are now", function()
    local s = sluice.semaphore(2)
    local other = sluice.spawn(function()
      s:with(function()
        sluice.sleep(1)
        s:with(function() end)                    -- queues: main still runs
      end)
    end)
    other.name = "other"
    local line = debug.getinfo(1, "l").currentline - 4
    s:acquire()
    sluice.sleep(2)
    assert.equal(1, s.waiting)
    local me = sluice.current()
    local err = error_of(s.acquire, s)
    assert.equal("deadlock", err.kind)
    local first = err.message:match("^[^\n]*")
    assert.equal(("semaphore:acquire: deadlock: every permit is held by this task or by tasks waiting on it: " ..
      "task #%d (%s, this task) holds 1, task #%d (other) holds 1"):format(me.id, me.name, other.id), first)
    local where = ("\ntask #%d (other) is now at:\nstack traceback:\n\t%s:%d: in function"):format(other.id, SRC, line)
    assert.truthy(err.message:find(where, 1, true))
    assert.same(ids(s:holders()), ids(err.holders))
    assert.same({ permits = 2, available = 0, waiting = 1 }, counts(s))
    s:release()                                   -- other goes on
    other:await()
    assert.same({ permits = 2, available = 2, waiting = 0 }, counts(s))
  end)

  it("show where each holder acquired it when tracking is on", function()
    assert.is_false(sluice.track_holders(true))
    finally(function() sluice.track_holders(false) end)
    local s = sluice.semaphore(1)
    s:acquire() local line = debug.getinfo(1, "l").currentline
    local err = error_of(s.acquire, s, 5)      -- bounded, but could only time out
    local me = sluice.current()
    assert.equal(("semaphore:acquire: deadlock: every permit is held by this task or by tasks waiting on it: " ..
      "task #%d (%s, this task) holds 1\ntask #%d (%s, this task) acquired it at:\nstack traceback:\n" ..
      "\t%s:%d: in function"):format(me.id, me.name, me.id, me.name, SRC, line),
      err.message:sub(1, #err.message:match("^.-in function")))
    assert.same({ permits = 1, available = 0, waiting = 0 }, counts(s))
    s:release()
  end)

  it("are not raised while some holder may still release", function()
    local s = sluice.semaphore(1)
    local t = sluice.spawn(function() s:acquire() sluice.sleep(3) s:release() end)
    sluice.yield()
    local t0 = sluice.now()
    assert.is_true(s:acquire())
    assert.equal(t0 + 3, sluice.now())
    s:release()
    t:await()
  end)
end)

describe("semaphore:holders", function()
  it("lists the holding tasks and their counts in acquisition order", function()
    local s = sluice.semaphore(4)
    local me = sluice.current()
    assert.same({}, s:holders())
    local t = sluice.spawn(function() s:acquire() sluice.sleep(1) s:release() end)
    sluice.yield()
    s:acquire()
    s:acquire()
    local list = s:holders()
    assert.same({ { t.id, 1 }, { me.id, 2 } }, ids(list))
    assert.equal(t, list[1].task)
    assert.is_nil(list[1].acquired_at)
    t:await()
    s:release()
    assert.same({ { me.id, 1 } }, ids(s:holders()))
    s:release()
    assert.same({}, s:holders())
  end)

  it("gives where each holder acquired it while tracking is on", function()
    sluice.track_holders(true)
    finally(function() sluice.track_holders(false) end)
    local s = sluice.semaphore(2)
    s:acquire() local line = debug.getinfo(1, "l").currentline
    s:acquire()   -- the same holding: keeps the first site
    local list = s:holders()
    assert.equal(1, #list)
    assert.equal("stack traceback:\n\t" .. SRC .. ":" .. line .. ": in function",
      list[1].acquired_at:match("^stack traceback:\n[^\n]*: in function"))
    s:release()
    s:release()
    sluice.track_holders(false)
    s:acquire()
    assert.is_nil(s:holders()[1].acquired_at)
    s:release()
  end)
end)

describe("semaphore:stats", function()
  it("counts acquisitions, waits, timeouts and cancellations with exact wait times", function()
    local s = sluice.semaphore(1)
    s:acquire()                                                  -- at once
    local a = sluice.spawn(function() s:acquire() s:release() end)  -- waits 2 s
    local b = sluice.spawn(function() s:acquire(0.5) end)          -- times out after 0.5 s
    local c = sluice.spawn(function() s:acquire() end)             -- cancelled after 1 s
    sluice.sleep(1)
    c:cancel()
    sluice.sleep(1)
    s:release()
    a:await(); b:await(); pcall(c.await, c)
    local st = s:stats()
    local hist = st.histogram
    st.histogram = nil
    assert.same({ permits = 1, held = 0, available = 1, waiting = 0, acquired = 2, waited = 1,
                  timeouts = 1, cancelled = 1, wait_total = 3.5, wait_max = 2 }, st)
    assert.equal(32, #hist)
    -- 0.5 s = 500000 us in [2^18, 2^19); 1 s in [2^19, 2^20); 2 s in [2^20, 2^21)
    local expect = {}
    for i = 1, 32 do expect[i] = 0 end
    expect[20], expect[21], expect[22] = 1, 1, 1
    assert.same(expect, hist)
  end)

  it("puts zero waits in the first bucket", function()
    local s = sluice.semaphore(1)
    s:acquire()
    local t = sluice.spawn(function() s:acquire() s:release() end)
    sluice.yield()
    s:release()        -- granted at the time it queued
    t:await()
    local st = s:stats()
    assert.same({ 1, 0, 0 }, { st.histogram[1], st.wait_total, st.wait_max })
  end)
end)

describe("semaphore argument checks", function()
  it("sluice.semaphore takes a positive integer", function()
    for _, v in ipairs { { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" },
                         { -math.huge, "-inf" }, { "2", "\"2\"" }, { nil, "nil" }, { {}, "table" } } do
      local err = error_of(sluice.semaphore, v[1])
      assert.equal("invalid", err.kind)
      assert.equal("semaphore: permits must be a positive integer (got " .. v[2] .. ")", err.message)
      assert.equal("semaphore: permits must be a positive integer (got " .. v[2] .. ")", tostring(err))
    end
  end)

  it("acquire takes a finite non-negative timeout, and nothing changes on a bad one", function()
    local s = sluice.semaphore(1)
    for _, v in ipairs { { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "1", "\"1\"" }, { {}, "table" },
                         { false, "boolean" } } do
      local err = error_of(s.acquire, s, v[1])
      assert.equal("invalid", err.kind)
      assert.equal("semaphore:acquire: timeout must be a finite non-negative number of seconds (got " .. v[2] .. ")",
        err.message)
      assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
      assert.same({}, s:holders())
    end
  end)

  it("every method checks its self", function()
    local s = sluice.semaphore(1)
    for _, m in ipairs { "acquire", "try_acquire", "release", "with", "holders", "stats" } do
      for _, v in ipairs { { 5, "number" }, { nil, "nil" }, { "s", "string" }, { {}, "table" } } do
        local err = error_of(s[m], v[1], function() end)
        assert.equal("invalid", err.kind)
        assert.equal("semaphore:" .. m .. ": expected a semaphore (got " .. v[2] .. ")", err.message)
      end
    end
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("with takes a function", function()
    local s = sluice.semaphore(1)
    for _, v in ipairs { { nil, "nil" }, { 5, "5" }, { "f", "\"f\"" } } do
      local err = error_of(s.with, s, v[1])
      assert.equal("semaphore:with: fn must be a function (got " .. v[2] .. ")", err.message)
    end
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)

  it("releasing more than was acquired, or what the task does not hold, is an error", function()
    local s = sluice.semaphore(2)
    local err = error_of(s.release, s)
    assert.equal("invalid", err.kind)
    assert.equal("semaphore:release: the task does not hold a permit", err.message)
    s:acquire()
    s:release()
    assert.equal("semaphore:release: the task does not hold a permit", error_of(s.release, s).message)
    -- a permit held by another task is not this task's to release
    local t = sluice.spawn(function() s:acquire() sluice.sleep(1) s:release() end)
    sluice.yield()
    assert.equal("semaphore:release: the task does not hold a permit", error_of(s.release, s).message)
    assert.same({ permits = 2, available = 1, waiting = 0 }, counts(s))
    t:await()
    assert.same({ permits = 2, available = 2, waiting = 0 }, counts(s))
  end)

  it("acquire cannot block where the task cannot yield, but may take a free permit there", function()
    local s = sluice.semaphore(1)
    local err
    table.sort({ 2, 1 }, function(a, b)
      assert.is_true(s:acquire())
      local ok, e = pcall(s.acquire, s)
      err = e
      s:release()
      return a < b
    end)
    assert.equal("semaphore:acquire: cannot block here (inside a C call such as a table.sort comparator " ..
      "or a string.gsub callback)", err.message)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(s))
  end)
end)

describe("the host's deadlock report", function()
  local function run(text)
    local path, out = os.tmpname(), os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    local p = assert(io.popen("'" .. BIN .. "' " .. path .. " 2>" .. out .. "; echo $?"))
    local code = tonumber(p:read("*a"))
    p:close()
    f = assert(io.open(out, "rb"))
    local err = f:read("*a")
    f:close()
    os.remove(path)
    os.remove(out)
    return code, err
  end

  it("names the primitive a task waits on and its holders", function()
    local code, err = run([[
local sluice = require "sluice"
local s = sluice.semaphore(1)
local a = sluice.spawn(function() s:acquire() sluice.await(function(cb) end) end)
a.name = "a"
local b = sluice.spawn(function() s:acquire() end)
b:await()
]])
    assert.equal(2, code)
    local lines = {}
    for line in err:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("sluice: deadlock: 3 tasks are waiting and nothing can wake them:", lines[1])
    assert.equal("  task #1 (main, waiting) waiting on await task #3 (waiting)", lines[2])
    local found
    for _, line in ipairs(lines) do
      if line:match("^  task #3") then found = line end
    end
    assert.equal("  task #3 (waiting) waiting on semaphore held by task #2 (a, waiting) x1", found)
  end)
end)
