-- sluice.mutex: a semaphore of one permit with its own name in messages;
-- re-acquiring it while holding it raises a deadlock error at once.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of = util.tracer, util.error_of

-- this file as tracebacks name it
local SRC = debug.getinfo(1, "S").short_src

local function counts(m)
  return { permits = m.permits, available = m.available, waiting = m.waiting }
end

describe("sluice.mutex", function()
  it("is held by one task at a time", function()
    local m = sluice.mutex()
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(m))
    assert.is_true(m:acquire())
    assert.is_false(m:try_acquire())
    assert.equal("mutex (1/1 held, 0 waiting)", tostring(m))
    m:release()
    assert.is_true(m:try_acquire())
    m:release()
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(m))
  end)

  it("hands over in queue order, and nobody barges in", function()
    local trace, log = tracer()
    local m = sluice.mutex()
    m:acquire()
    local t0 = sluice.now()
    local w = {}
    for i = 1, 3 do
      w[i] = sluice.spawn(function()
        m:acquire()
        log(i .. "@" .. sluice.now() - t0)
        sluice.sleep(1)
        m:release()
      end)
    end
    sluice.yield()
    assert.equal(3, m.waiting)
    m:release()
    assert.is_false(m:try_acquire())   -- handed to 1 already
    sluice.sleep(1.5)
    local late = sluice.spawn(function() m:acquire() log("late@" .. sluice.now() - t0) m:release() end)
    for i = 1, 3 do w[i]:await() end
    late:await()
    assert.same({ "1@0", "2@1", "3@2", "late@3" }, trace)
  end)

  it("acquire(timeout) gives nil, \"timeout\" and leaves the queue clean", function()
    local m = sluice.mutex()
    m:acquire()
    local t = sluice.spawn(function() local t0 = sluice.now() return m:acquire(1.5), sluice.now() - t0 end)
    local u = sluice.spawn(function() m:acquire() m:release() return "u" end)
    sluice.sleep(2)
    assert.equal(1, m.waiting)
    m:release()
    assert.same({ nil, 1.5 }, { t:await() })
    assert.equal("u", u:await())
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(m))
    assert.equal(1, m:stats().timeouts)
  end)

  it("a waiter cancelled while queued, or right after the hand-off, passes it on", function()
    local trace, log = tracer()
    local m = sluice.mutex()
    m:acquire()
    local function waiter(name)
      return sluice.spawn(function()
        local ok, err = pcall(m.acquire, m)
        if not ok then log(name .. " " .. err.kind) return end
        log(name)
        m:release()
      end)
    end
    local a, b, c = waiter("a"), waiter("b"), waiter("c")
    sluice.yield()
    b:cancel()                     -- queued
    m:release()                    -- handed to a
    a:cancel()                     -- before a ran
    a:await(); b:await(); c:await()
    assert.same({ "b cancelled", "a cancelled", "c" }, trace)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(m))
    local st = m:stats()
    assert.same({ 2, 1, 2 }, { st.acquired, st.waited, st.cancelled })
  end)

  it("with releases on return, on error and on cancellation", function()
    local m = sluice.mutex()
    assert.same({ 1, 2 }, { m:with(function(a, b) return a, b end, 1, 2) })
    local e = {}
    assert.equal(e, error_of(m.with, m, function() error(e) end))
    assert.equal(1, m.available)
    local t = sluice.spawn(function() m:with(function() sluice.sleep(5) end) end)
    sluice.sleep(1)
    assert.equal(0, m.available)
    t:cancel()
    assert.equal("cancelled", error_of(t.await, t).kind)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(m))
  end)

  it("raises deadlock at once when the holder acquires it again", function()
    local m = sluice.mutex()
    local me = sluice.current()
    m:acquire()
    local t0 = sluice.now()
    for _, timeout in ipairs { false, 5 } do
      local err = error_of(m.acquire, m, timeout or nil)
      assert.equal("deadlock", err.kind)
      assert.equal(("mutex:acquire: deadlock: the mutex is already held by this task, task #%d (%s, this task)\n" ..
        "(sluice.track_holders(true) records where each holder acquired it)"):format(me.id, me.name), err.message)
    end
    assert.same({ nil, "timeout" }, { m:acquire(0) })
    assert.equal(t0, sluice.now())
    local err = error_of(m.with, m, function() end)
    assert.equal("mutex:with: deadlock: ", err.message:sub(1, 22))
    assert.same({ permits = 1, available = 0, waiting = 0 }, counts(m))
    m:release()
  end)

  it("the deadlock error shows where the holder acquired it when tracking is on", function()
    sluice.track_holders(true)
    finally(function() sluice.track_holders(false) end)
    local m = sluice.mutex()
    local me = sluice.current()
    local line
    local function lock() line = debug.getinfo(1, "l").currentline m:acquire() end
    lock()
    local err = error_of(m.acquire, m)
    assert.equal(("mutex:acquire: deadlock: the mutex is already held by this task, task #%d (%s, this task)\n" ..
      "task #%d (%s, this task) acquired it at:\nstack traceback:\n" ..
      "\t%s:%d: in function 'lock'\n" ..
      "\t%s:%d: in function"):format(me.id, me.name, me.id, me.name, SRC, line, SRC, line + 1),
      err.message:match("^.-\n.-\n.-\n.-\n.-in function"))
    assert.equal(line, tonumber(m:holders()[1].acquired_at:match(":(%d+):")))
    m:release()
  end)

  it("the deadlock error names another holder that waits on this task, and where it is", function()
    local m = sluice.mutex()
    local me = sluice.current()
    local line
    local t = sluice.spawn(function()
      m:acquire()
      line = debug.getinfo(1, "l").currentline + 1
      local _, err = pcall(me.await, me)
      m:release()
      error(err, 0)
    end)
    t.name = "holder"
    sluice.yield()
    local err = error_of(m.acquire, m)
    assert.equal(("mutex:acquire: deadlock: the mutex is held by task #%d (holder), which waits on this task"):format(t.id),
      err.message:match("^[^\n]*"))
    assert.truthy(err.message:find(("\ntask #%d (holder) is now at:\nstack traceback:\n\t%s:%d:"):format(
      t.id, SRC, line), 1, true))
    assert.equal(t, err.holders[1].task)
    t:cancel()
    assert.equal("cancelled", error_of(t.await, t).kind)
  end)

  it("holders() and stats()", function()
    local m = sluice.mutex()
    local me = sluice.current()
    m:acquire()
    local list = m:holders()
    assert.equal(1, #list)
    assert.equal(me, list[1].task)
    assert.equal(1, list[1].count)
    local st = m:stats()
    assert.same({ 1, 1, 0, 1, 0 }, { st.permits, st.held, st.available, st.acquired, st.waited })
    m:release()
    assert.same({}, m:holders())
  end)

  it("checks its arguments", function()
    for _, v in ipairs { { 1, "1" }, { "x", "\"x\"" }, { {}, "table" } } do
      assert.equal("mutex: takes no arguments (got " .. v[2] .. ")", error_of(sluice.mutex, v[1]).message)
    end
    assert.equal("mutex: takes no arguments (got nil)", error_of(sluice.mutex, nil).message)
    local m = sluice.mutex()
    for _, v in ipairs { 2, 1, 0, "1" } do
      local err = error_of(function() m.permits = v end)
      assert.equal("invalid", err.kind)
      assert.equal("mutex: field 'permits' is read-only", err.message)
    end
    for _, name in ipairs { "acquire", "try_acquire", "release", "with", "holders", "stats" } do
      assert.equal("mutex:" .. name .. ": expected a mutex (got number)", error_of(m[name], 1).message)
    end
    assert.equal("mutex:acquire: timeout must be a finite non-negative number of seconds (got -1)",
      error_of(m.acquire, m, -1).message)
    assert.equal("mutex:release: the task does not hold the mutex", error_of(m.release, m).message)
    assert.equal("mutex:with: fn must be a function (got nil)", error_of(m.with, m).message)
    assert.same({ permits = 1, available = 1, waiting = 0 }, counts(m))
  end)
end)
