-- Tasks: spawn, await, cancel, status, id, name, current, sleep, yield.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer = util.tracer

describe("sluice.spawn", function()
  it("returns a ready task that runs only once the spawner blocks", function()
    local trace, log = tracer()
    local a = sluice.spawn(function() log("a") end)
    local b = sluice.spawn(function() log("b") end)
    assert.equal("ready", a.status)
    assert.equal("ready", b.status)
    log("spawned")
    sluice.yield()
    log("back")
    assert.same({ "spawned", "a", "b", "back" }, trace)
    assert.equal("done", a.status)
    assert.equal("done", b.status)
  end)

  it("passes its arguments, nils and all", function()
    local t = sluice.spawn(function(...) return select("#", ...), ... end, 1, nil, "x", nil)
    assert.same({ n = 5, 4, 1, nil, "x", nil }, { n = select("#", t:await()), t:await() })
  end)

  it("passes 300 arguments, and keeps them while it waits to run", function()
    local args = {}
    for i = 1, 300 do args[i] = i % 7 == 0 and nil or i end
    local t = sluice.spawn(function(...) return select("#", ...), ... end, unpack(args, 1, 300))
    collectgarbage()   -- before its first run it holds its arguments itself
    local got = { t:await() }
    assert.equal(300, got[1])
    for i = 1, 300 do assert.equal(args[i], got[i + 1]) end
  end)

  it("cancelled before it ever ran, with arguments, ends cancelled without running", function()
    local ran = false
    local t = sluice.spawn(function(a, b) ran = a + b end, 1, 2)
    t:cancel()
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.is_true(sluice.is_error(err, "cancelled"))
    assert.is_false(ran)
    assert.equal("cancelled", t.status)
  end)

  it("gives each task a new, increasing integer id", function()
    local a = sluice.spawn(function() end)
    local b = sluice.spawn(function() end)
    assert.equal("number", type(a.id))
    assert.equal(a.id + 1, b.id)
    assert.is_true(sluice.current().id < a.id)
    a:await(); b:await()
    assert.equal(a.id + 1, b.id)   -- ids survive the end of the task
  end)

  it("rejects a non-function", function()
    for _, v in ipairs { { 5, "number" }, { "f", "string" }, { {}, "table" } } do
      local ok, err = pcall(sluice.spawn, v[1])
      assert.is_false(ok)
      assert.equal("invalid", err.kind)
      assert.equal("sluice.spawn: fn must be a function (got " .. v[2] .. ")", err.message)
    end
    local ok, err = pcall(sluice.spawn)
    assert.is_false(ok)
    assert.equal("sluice.spawn: fn must be a function (got nil)", tostring(err))
  end)
end)

describe("task:await", function()
  it("returns every result of the function", function()
    local t = sluice.spawn(function() sluice.sleep(1) return 1, nil, "three", nil end)
    assert.same({ n = 4, 1, nil, "three", nil }, { n = select("#", t:await()), t:await() })
  end)

  it("returns nothing for a function that returns nothing", function()
    local t = sluice.spawn(function() end)
    assert.equal(0, select("#", t:await()))
  end)

  it("wakes every awaiter, in the order they started waiting", function()
    local trace, log = tracer()
    local target = sluice.spawn(function() sluice.sleep(2) return "v" end)
    local waiters = {}
    for i = 1, 3 do
      waiters[i] = sluice.spawn(function()
        sluice.sleep(i * 0.25)   -- start waiting in order 1, 2, 3
        local v = target:await()
        log(i .. v)
      end)
    end
    for i = 1, 3 do waiters[i]:await() end
    assert.same({ "1v", "2v", "3v" }, trace)
  end)

  it("returns at once for a task that has finished, every time", function()
    local t = sluice.spawn(function() return "x" end)
    sluice.yield()
    assert.equal("done", t.status)
    local t0 = sluice.now()
    assert.equal("x", t:await())
    assert.equal("x", t:await())
    assert.equal(t0, sluice.now())
  end)

  it("re-raises a string error unchanged", function()
    local t = sluice.spawn(function() error("plain message", 0) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal("plain message", err)
    assert.equal("failed", t.status)
  end)

  it("re-raises a table error as the very same table", function()
    local e = { code = 42 }
    local t = sluice.spawn(function() sluice.sleep(1) error(e) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal(e, err)   -- identity, not a copy
    local ok2, err2 = pcall(t.await, t)
    assert.is_false(ok2)
    assert.equal(e, err2)
  end)

  it("refuses to await the running task itself", function()
    local me = sluice.current()
    local ok, err = pcall(me.await, me)
    assert.is_false(ok)
    assert.equal("deadlock", err.kind)
    assert.equal("task:await: a task cannot await itself", err.message)
  end)

  it("rejects what is not a task", function()
    local t = sluice.spawn(function() end)
    for _, v in ipairs { { 5, "number" }, { "x", "string" }, { {}, "table" }, { false, "boolean" } } do
      local ok, err = pcall(t.await, v[1])
      assert.is_false(ok)
      assert.equal("invalid", err.kind)
      assert.equal("task:await: expected a task (got " .. v[2] .. ")", err.message)
    end
    local ok, err = pcall(t.await)
    assert.equal("task:await: expected a task (got nil)", err.message)
    ok, err = pcall(t.cancel, 5)
    assert.equal("task:cancel: expected a task (got number)", err.message)
    ok, err = pcall(t.result, 5)
    assert.equal("task:result: expected a task (got number)", err.message)
    t:await()
  end)
end)

describe("task:result", function()
  it("is nil while unfinished, then true and the results, or false and the error", function()
    local t = sluice.spawn(function() sluice.sleep(1) return 1, 2 end)
    assert.equal(0, select("#", t:result()))
    t:await()
    assert.same({ true, 1, 2 }, { t:result() })
    local f = sluice.spawn(function() error("no", 0) end)
    pcall(f.await, f)
    assert.same({ false, "no" }, { f:result() })
  end)
end)

describe("task.status", function()
  it("goes ready, running, waiting, done", function()
    local seen = {}
    local t
    t = sluice.spawn(function()
      seen[#seen + 1] = t.status
      sluice.sleep(1)
      seen[#seen + 1] = t.status
    end)
    seen[#seen + 1] = t.status
    sluice.sleep(0.5)
    seen[#seen + 1] = t.status
    t:await()
    seen[#seen + 1] = t.status
    assert.same({ "ready", "running", "waiting", "running", "done" }, seen)
  end)

  it("is failed after an error and cancelled after a cancellation", function()
    local f = sluice.spawn(function() error("x") end)
    local c = sluice.spawn(function() sluice.sleep(10) end)
    sluice.yield()
    assert.equal("failed", f.status)
    assert.equal("waiting", c.status)
    c:cancel()
    pcall(f.await, f)
    pcall(c.await, c)
    assert.equal("failed", f.status)
    assert.equal("cancelled", c.status)
  end)

  it("is read-only, as is id", function()
    local t = sluice.spawn(function() end)
    local ok, err = pcall(function() t.status = "done" end)
    assert.is_false(ok)
    assert.equal("task: field 'status' is read-only", err.message)
    ok, err = pcall(function() t.id = 1 end)
    assert.equal("task: field 'id' is read-only", err.message)
    t:await()
  end)
end)

describe("task.name", function()
  it("is nil by default, settable, and shows in tostring", function()
    local t = sluice.spawn(function() sluice.sleep(1) end)
    assert.is_nil(t.name)
    assert.equal("task #" .. t.id .. " (ready)", tostring(t))
    t.name = "worker"
    assert.equal("worker", t.name)
    assert.equal("task #" .. t.id .. " (worker, ready)", tostring(t))
    t:await()
    assert.equal("worker", t.name)
    assert.equal("task #" .. t.id .. " (worker, done)", tostring(t))
    t.name = nil
    assert.is_nil(t.name)
  end)

  it("must be a string", function()
    local t = sluice.spawn(function() end)
    local ok, err = pcall(function() t.name = {} end)
    assert.is_false(ok)
    assert.equal("invalid", err.kind)
    assert.equal("task: name must be a string (got table)", err.message)
    t:await()
  end)
end)

describe("sluice.current", function()
  it("is the running task, inside each task", function()
    local inner
    local t = sluice.spawn(function() inner = sluice.current() end)
    t:await()
    assert.equal(t, inner)
    assert.equal("running", sluice.current().status)
    assert.is_not_equal(t, sluice.current())
  end)

  it("is nil outside any task (in a libuv callback)", function()
    local timer = sluice.uv.new_timer()
    local got = "unset"
    sluice.await(function(cb)
      timer:start(0, 0, function() got = sluice.current(); cb() end)
    end)
    timer:close()
    assert.is_nil(got)
  end)
end)

describe("sluice.cancel", function()
  it("unwinds a task waiting on sleep: its pcall and cleanup run after the canceller blocks", function()
    local trace, log = tracer()
    local t = sluice.spawn(function()
      local ok, err = pcall(sluice.sleep, 10)
      log("cleanup: " .. tostring(ok) .. " " .. err.kind .. " " .. err.message)
      error(err, 0)
    end)
    sluice.yield()
    log("cancel -> " .. tostring(t:cancel()))
    assert.equal("ready", t.status)   -- woken, not yet run
    local ok, err = pcall(t.await, t)
    log("await: " .. tostring(ok) .. " " .. err.message)
    assert.same({ "cancel -> true", "cleanup: false cancelled cancelled", "await: false cancelled" }, trace)
    assert.equal("cancelled", t.status)
    assert.is_true(t.cancelled)
  end)

  it("carries the reason in the message and in err.reason", function()
    local t = sluice.spawn(function() sluice.sleep(10) end)
    sluice.yield()
    assert.is_true(t:cancel("shutting down"))
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.equal("cancelled: shutting down", err.message)
    assert.equal("shutting down", err.reason)
    assert.equal("cancelled: shutting down", tostring(err))
  end)

  it("returns false when the task is already cancelled or finished", function()
    local t = sluice.spawn(function() sluice.sleep(10) end)
    local d = sluice.spawn(function() end)
    sluice.yield()
    assert.is_true(t:cancel("first"))
    assert.is_false(t:cancel("second"))
    assert.is_false(d:cancel())
    local _, err = pcall(t.await, t)
    assert.equal("cancelled: first", err.message)
    assert.equal("done", d.status)
  end)

  it("of a ready task that never started: its body never runs", function()
    local ran = false
    local t = sluice.spawn(function() ran = true end)
    assert.is_true(t:cancel())
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.is_false(ran)
    assert.equal("cancelled", t.status)
  end)

  it("runs the cleanups of several cancelled tasks in the order they were cancelled", function()
    local trace, log = tracer()
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = sluice.spawn(function()
        local ok = pcall(sluice.sleep, 10)
        log("cleanup " .. i .. " " .. tostring(ok))
      end)
    end
    sluice.yield()
    tasks[3]:cancel(); tasks[1]:cancel(); tasks[2]:cancel()
    log("cancelled all")
    for i = 1, 3 do tasks[i]:await() end
    assert.same({ "cancelled all", "cleanup 3 false", "cleanup 1 false", "cleanup 2 false" }, trace)
    -- each swallowed its cancellation and returned normally: done
    for i = 1, 3 do assert.equal("done", tasks[i].status) end
  end)

  it("is sticky: a task that swallowed it is cancelled again at its next blocking call", function()
    local trace, log = tracer()
    local t = sluice.spawn(function()
      log("first: " .. select(2, pcall(sluice.sleep, 10)).message)
      log("second: " .. select(2, pcall(sluice.yield)).message)
      log("third: " .. select(2, pcall(sluice.sleep, 0)).message)
    end)
    sluice.yield()
    t:cancel("r")
    t:await()
    assert.same({ "first: cancelled: r", "second: cancelled: r", "third: cancelled: r" }, trace)
  end)

  it("of a task waiting on await unwinds the waiter and leaves the awaited task running", function()
    local trace, log = tracer()
    local inner = sluice.spawn(function() sluice.sleep(5) log("inner done") return "i" end)
    local outer = sluice.spawn(function()
      local ok, err = pcall(inner.await, inner)
      log("outer: " .. err.message)
      error(err, 0)
    end)
    sluice.sleep(1)
    outer:cancel("stop")
    assert.is_false(pcall(outer.await, outer))
    assert.equal("cancelled", outer.status)
    assert.equal("waiting", inner.status)
    assert.equal("i", inner:await())
    assert.same({ "outer: cancelled: stop", "inner done" }, trace)
  end)

  it("of a task waiting on sluice.await unwinds it; a late callback is ignored", function()
    local trace, log = tracer()
    local saved_cb
    local t = sluice.spawn(function()
      local ok, err = pcall(sluice.await, function(cb) saved_cb = cb end)
      log(err.message)
      error(err, 0)
    end)
    sluice.yield()
    assert.equal("waiting", t.status)
    t:cancel()
    assert.is_false(pcall(t.await, t))
    saved_cb("too late")   -- must not wake or break anything
    sluice.yield()
    assert.same({ "cancelled" }, trace)
    assert.equal("cancelled", t.status)
  end)

  it("of the running task itself takes effect at its next blocking call", function()
    local trace, log = tracer()
    local t = sluice.spawn(function()
      assert.is_true(sluice.current():cancel("self"))
      log("still running")
      local ok, err = pcall(sluice.yield)
      log(err.message)
      error(err, 0)
    end)
    assert.is_false(pcall(t.await, t))
    assert.same({ "still running", "cancelled: self" }, trace)
    assert.equal("cancelled", t.status)
  end)
end)

describe("sluice.sleep", function()
  it("returns after exactly the given virtual time", function()
    local t0 = sluice.now()
    sluice.sleep(2.5)
    assert.equal(t0 + 2.5, sluice.now())
    sluice.sleep(0)
    assert.equal(t0 + 2.5, sluice.now())
  end)

  it("sleep(0) lets the other ready tasks run first", function()
    local trace, log = tracer()
    sluice.spawn(function() log("other") end)
    sluice.sleep(0)
    log("me")
    assert.same({ "other", "me" }, trace)
  end)

  it("rejects durations that are not finite non-negative numbers", function()
    local cases = {
      { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { -math.huge, "-inf" },
      { "x", '"x"' }, { "1", '"1"' }, { nil, "nil" }, { {}, "table" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(sluice.sleep, c[1])
      assert.is_false(ok)
      assert.equal("invalid", err.kind)
      assert.equal("sluice.sleep: seconds must be a finite non-negative number (got " ..
        c[2] .. ")", err.message)
    end
  end)
end)

describe("sluice.yield", function()
  it("runs the tasks that were ready, in FIFO order, then comes back", function()
    local trace, log = tracer()
    for i = 1, 3 do
      sluice.spawn(function()
        log("t" .. i .. "a")
        sluice.yield()
        log("t" .. i .. "b")
      end)
    end
    sluice.yield()
    log("main")
    sluice.yield()
    log("main2")
    assert.same({ "t1a", "t2a", "t3a", "main", "t1b", "t2b", "t3b", "main2" }, trace)
  end)

  it("does not advance the clock", function()
    local t0 = sluice.now()
    for _ = 1, 10 do sluice.yield() end
    assert.equal(t0, sluice.now())
  end)
end)

describe("blocking", function()
  it("works inside a coroutine.wrap generator inside a task", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        sluice.sleep(1)
        coroutine.yield(i)
      end
    end)
    local t0, got = sluice.now(), {}
    for v in gen do got[#got + 1] = v .. "@" .. (sluice.now() - t0) end
    assert.same({ "1@1", "2@2", "3@3" }, got)
  end)

  it("works inside coroutine.resume of a user coroutine, and cancellation passes through", function()
    local trace, log = tracer()
    local t = sluice.spawn(function()
      local co = coroutine.create(function()
        sluice.sleep(1)
        coroutine.yield("y1")
        local ok, err = pcall(sluice.sleep, 100)
        log("in co: " .. err.message)
        error(err, 0)
      end)
      log(select(2, coroutine.resume(co)))
      local ok, err = coroutine.resume(co)
      log("resume: " .. tostring(ok) .. " " .. err.message)
      error(err, 0)
    end)
    sluice.sleep(2)
    t:cancel("c")
    assert.is_false(pcall(t.await, t))
    assert.same({ "y1", "in co: cancelled: c", "resume: false cancelled: c" }, trace)
  end)

  it("outside a task (in a libuv callback) raises 'must be called from a task'", function()
    local timer = sluice.uv.new_timer()
    local res
    sluice.await(function(cb)
      timer:start(0, 0, function()
        local ok, err = pcall(sluice.sleep, 1)
        res = { ok, err.kind, err.message }
        local ok2, err2 = pcall(sluice.yield)
        res[4] = err2.message
        cb()
      end)
    end)
    timer:close()
    assert.same({ false, "invalid", "sluice.sleep: must be called from a task",
      "sluice.yield: must be called from a task" }, res)
  end)

  it("inside a table.sort comparator raises 'cannot block here'", function()
    local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
      sluice.sleep(1)
      return a < b
    end)
    assert.is_false(ok)
    assert.equal("invalid", err.kind)
    assert.equal("sluice.sleep: cannot block here (inside a C call such as a table.sort " ..
      "comparator or a string.gsub callback)", err.message)
  end)

  it("inside a string.gsub callback raises 'cannot block here'", function()
    local ok, err = pcall(string.gsub, "ab", "%w", function() sluice.yield() end)
    assert.is_false(ok)
    assert.equal("sluice.yield: cannot block here (inside a C call such as a table.sort " ..
      "comparator or a string.gsub callback)", err.message)
  end)

  it("a bare coroutine.yield at the top of a task is an error", function()
    local ok, err = pcall(coroutine.yield, 1)
    assert.is_false(ok)
    assert.equal("coroutine.yield: attempt to yield from outside a coroutine (use sluice.yield in a task)",
      (err:gsub("^[^:]+:%d+: ", "")))
  end)
end)
