-- all, all_settled, race, any, timeout, await(f, ...), and runtime errors.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, msg_of = util.tracer, util.msg_of

-- A function that sleeps `s` then returns `v`; on cancellation it logs
-- "<name> cleanup" and re-raises.
local function after(log, name, s, v)
  return function()
    local ok, err = pcall(sluice.sleep, s)
    if not ok then
      log(name .. " cleanup: " .. err.kind)
      error(err, 0)
    end
    log(name .. " done")
    return v, "second value"
  end
end

local function failing(log, name, s, e)
  return function()
    sluice.sleep(s)
    log(name .. " fails")
    error(e, 0)
  end
end

local function nolog() end

describe("sluice.all", function()
  it("returns the first result of each item, in list order, after the slowest", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local task = sluice.spawn(function() sluice.sleep(1) return "t" end)
    local r = sluice.all { after(log, "a", 3, "A"), after(log, "b", 2, "B"), task }
    assert.same({ "A", "B", "t" }, r)
    assert.equal(t0 + 3, sluice.now())
    assert.same({ "b done", "a done" }, trace)
  end)

  it("keeps nil results in place", function()
    local r = sluice.all { function() return nil end, function() return 2 end }
    assert.is_nil(r[1])
    assert.equal(2, r[2])
  end)

  it("of an empty list is an empty table", function()
    assert.same({}, sluice.all {})
  end)

  it("fails fast: the first failure cancels the others (tasks too) and is raised unchanged", function()
    local trace, log = tracer()
    local e = { code = 7 }
    local t0 = sluice.now()
    local task = sluice.spawn(after(log, "task", 10, "T"))
    local slow_task
    local ok, err = pcall(sluice.all, {
      function() slow_task = sluice.current(); return after(log, "slow", 10, "S")() end,
      failing(log, "bad", 1, e), task,
    })
    assert.is_false(ok)
    assert.equal(e, err)
    assert.equal("cancelled", slow_task.status)
    assert.equal(t0 + 1, sluice.now())
    assert.same({ "bad fails", "slow cleanup: cancelled", "task cleanup: cancelled" }, trace)
    assert.equal("cancelled", task.status)
  end)

  it("rejects bad arguments", function()
    assert.equal("sluice.all: list must be a table (got 5)", msg_of(sluice.all, 5))
    assert.equal("sluice.all: list must be a table (got nil)", msg_of(sluice.all))
    assert.equal("sluice.all: list[1] must be a function or a task (got 5)", msg_of(sluice.all, { 5 }))
    assert.equal("sluice.all: list[2] must be a function or a task (got \"x\")",
      msg_of(sluice.all, { function() end, "x" }))
    assert.equal("sluice.all: list[1] must be a function or a task (got table)", msg_of(sluice.all, { {} }))
  end)
end)

describe("sluice.all_settled", function()
  it("waits for every item and reports each outcome without cancelling anything", function()
    local trace, log = tracer()
    local e = {}
    local t0 = sluice.now()
    local r = sluice.all_settled {
      after(log, "a", 2, "A"), failing(log, "b", 1, e), function() return nil end,
    }
    assert.equal(t0 + 2, sluice.now())
    assert.same({ "b fails", "a done" }, trace)
    assert.equal(3, #r)
    assert.same({ ok = true, value = "A" }, r[1])
    assert.is_false(r[2].ok)
    assert.equal(e, r[2].err)
    assert.same({ ok = true }, r[3])
  end)

  it("rejects bad arguments", function()
    assert.equal("sluice.all_settled: list must be a table (got 5)", msg_of(sluice.all_settled, 5))
    assert.equal("sluice.all_settled: list[1] must be a function or a task (got boolean)",
      msg_of(sluice.all_settled, { true }))
  end)
end)

describe("sluice.race", function()
  it("returns every result of the first to finish and cancels the losers", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local loser_task = sluice.spawn(after(log, "loser task", 5, "L"))
    local slow_task, fast_task
    local r = { sluice.race {
      function() slow_task = sluice.current(); return after(log, "slow", 3, "S")() end,
      function() fast_task = sluice.current(); return after(log, "fast", 1, "F")() end,
      loser_task,
    } }
    assert.same({ "F", "second value" }, r)
    assert.equal("cancelled", slow_task.status)
    assert.equal("done", fast_task.status)
    assert.equal(t0 + 1, sluice.now())
    assert.same({ "fast done", "slow cleanup: cancelled", "loser task cleanup: cancelled" }, trace)
    assert.equal("cancelled", loser_task.status)
  end)

  it("raises the error of the first to settle if it failed, and cancels the others", function()
    local trace, log = tracer()
    local loser_task = sluice.spawn(after(log, "loser", 5, "L"))
    local ok, err = pcall(sluice.race, { failing(log, "bad", 1, "fast failure"), loser_task })
    assert.is_false(ok)
    assert.equal("fast failure", err)
    assert.same({ "bad fails", "loser cleanup: cancelled" }, trace)
    assert.equal("cancelled", loser_task.status)
  end)

  it("of a tie goes to the first in list order", function()
    local t0 = sluice.now()
    assert.equal("one", sluice.race {
      function() sluice.sleep(1) return "one" end, function() sluice.sleep(1) return "two" end,
    })
    assert.equal(t0 + 1, sluice.now())
    assert.equal("one", sluice.race { function() return "one" end, function() return "two" end })
  end)

  it("rejects an empty list and bad items", function()
    assert.equal("sluice.race: list is empty", msg_of(sluice.race, {}))
    assert.equal("sluice.race: list must be a table (got \"x\")", msg_of(sluice.race, "x"))
    assert.equal("sluice.race: list[2] must be a function or a task (got 5)",
      msg_of(sluice.race, { function() end, 5 }))
  end)
end)

describe("sluice.any", function()
  it("returns the first success, ignoring earlier failures, and cancels the rest", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local r = { sluice.any {
      failing(log, "bad", 1, "e1"), after(log, "good", 2, "G"), after(log, "slow", 5, "S"),
    } }
    assert.same({ "G", "second value" }, r)
    assert.equal(t0 + 2, sluice.now())
    assert.same({ "bad fails", "good done", "slow cleanup: cancelled" }, trace)
  end)

  it("raises an aggregate error listing every error by position when all fail", function()
    local e2 = { code = 2 }
    local ok, err = pcall(sluice.any, {
      failing(nolog, "a", 2, "e1"), function() error(e2) end,
    })
    assert.is_false(ok)
    assert.equal("aggregate", err.kind)
    assert.is_true(sluice.is_error(err, "aggregate"))
    assert.equal("sluice.any: all 2 failed (first: e1)", err.message)
    assert.equal(2, #err.errors)
    assert.equal("e1", err.errors[1])
    assert.equal(e2, err.errors[2])
    assert.equal("string", type(err.traceback))
  end)

  it("rejects an empty list", function()
    assert.equal("sluice.any: list is empty", msg_of(sluice.any, {}))
    assert.equal("sluice.any: list must be a table (got nil)", msg_of(sluice.any, nil))
  end)
end)

describe("sluice.timeout", function()
  it("raises a timeout error at the deadline after cancelling the body", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local body_task
    local ok, err = pcall(sluice.timeout, 0.5, function()
      body_task = sluice.current()
      return after(log, "body", 1, "x")()
    end)
    assert.is_false(ok)
    assert.equal("cancelled", body_task.status)
    assert.equal(t0 + 0.5, sluice.now())
    assert.same({ "body cleanup: cancelled" }, trace)
    assert.equal("timeout", err.kind)
    assert.equal("sluice.timeout: timed out after 0.5 s", err.message)
    assert.equal(err.message, tostring(err))
    assert.equal("string", type(err.traceback))
    assert.is_truthy(err.traceback:find("^sluice.timeout: timed out after 0.5 s\nstack traceback:"))
    assert.is_true(sluice.is_error(err, "timeout"))
  end)

  it("returns all of fn's results, given its arguments, when in time", function()
    local t0 = sluice.now()
    assert.same({ 3, nil, "z" }, { sluice.timeout(1, function(a, b, c)
      sluice.sleep(0.75)
      return a + b, nil, c
    end, 1, 2, "z") })
    assert.equal(t0 + 0.75, sluice.now())
  end)

  it("nested: the shorter deadline fires, and an outer one surfaces as the outer's error", function()
    local t0 = sluice.now()
    local ok, err = pcall(sluice.timeout, 1, function() return sluice.timeout(5, sluice.sleep, 10) end)
    assert.is_false(ok)
    assert.equal("sluice.timeout: timed out after 1 s", err.message)
    assert.equal(t0 + 1, sluice.now())
    t0 = sluice.now()
    ok, err = pcall(sluice.timeout, 5, function() return sluice.timeout(0.5, sluice.sleep, 10) end)
    assert.is_false(ok)
    assert.equal("sluice.timeout: timed out after 0.5 s", err.message)
    assert.equal(t0 + 0.5, sluice.now())
  end)

  it("passes the body's own errors through unchanged", function()
    local e = {}
    local ok, err = pcall(sluice.timeout, 1, function() error(e) end)
    assert.is_false(ok)
    assert.equal(e, err)
  end)

  it("raises cancelled, not timeout, when the caller itself is cancelled", function()
    local t = sluice.spawn(function() return sluice.timeout(10, sluice.sleep, 20) end)
    sluice.sleep(1)
    t:cancel("outer")
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.equal("cancelled: outer", err.message)
    assert.equal("cancelled", t.status)
  end)

  it("rejects bad arguments", function()
    assert.equal("sluice.timeout: seconds must be a finite positive number (got 0)",
      msg_of(sluice.timeout, 0, function() end))
    assert.equal("sluice.timeout: seconds must be a finite positive number (got nan)",
      msg_of(sluice.timeout, 0 / 0, function() end))
    assert.equal("sluice.timeout: seconds must be a finite positive number (got nil)",
      msg_of(sluice.timeout))
    assert.equal("sluice.timeout: fn must be a function (got 5)", msg_of(sluice.timeout, 1, 5))
    assert.equal("sluice.timeout: fn must be a function (got nil)", msg_of(sluice.timeout, 1))
  end)
end)

describe("sluice.await", function()
  it("turns a real luv call into a blocking call (fs_stat)", function()
    local err, stat = sluice.await(sluice.uv.fs_stat, "/")
    assert.is_nil(err)
    assert.equal("table", type(stat))
    assert.equal("directory", stat.type)
  end)

  it("returns the callback's arguments unchanged (an fs error)", function()
    local r = { n = select("#", sluice.await(sluice.uv.fs_stat, "/nonexistent/sluice")),
      sluice.await(sluice.uv.fs_stat, "/nonexistent/sluice") }
    assert.same({ n = 1, "ENOENT: no such file or directory: /nonexistent/sluice" }, r)
  end)

  it("returns the error at once when the call fails synchronously (nil, err)", function()
    local tcp = sluice.uv.new_tcp()
    local t0 = sluice.now()
    local r = { sluice.await(sluice.uv.write, tcp, "data") }   -- not connected
    tcp:close()
    assert.same({ "EBADF: bad file descriptor" }, r)
    assert.equal(t0, sluice.now())
  end)

  it("passes extra arguments before the callback and keeps nils in the results", function()
    local r = { sluice.await(function(a, b, cb) cb(a + b, nil, "x", nil) end, 1, 2) }
    assert.same({ 3, nil, "x" }, r)
    assert.equal(4, select("#", sluice.await(function(cb) cb(1, nil, 3, nil) end)))
  end)

  it("ignores a second call of the callback", function()
    local calls = 0
    local r = { sluice.await(function(cb) cb("first"); cb("second"); calls = calls + 1 end) }
    assert.same({ "first" }, r)
    assert.equal(1, calls)
  end)

  it("rejects a non-function and fails when called outside a task", function()
    assert.equal("sluice.await: f must be a function (got 5)", msg_of(sluice.await, 5))
    assert.equal("sluice.await: f must be a function (got nil)", msg_of(sluice.await))
  end)
end)

describe("runtime errors", function()
  it("are tables with kind, message, traceback and a __tostring giving the message", function()
    local ok, err = pcall(sluice.sleep, -1)
    assert.is_false(ok)
    assert.equal("table", type(err))
    assert.equal("invalid", err.kind)
    assert.equal("sluice.sleep: seconds must be a finite non-negative number (got -1)", err.message)
    assert.equal(err.message, tostring(err))
    assert.equal("string", type(err.traceback))
    assert.equal(1, select(2, err.traceback:gsub("^" .. err.message:gsub("%p", "%%%0") .. "\nstack traceback:\n", "")))
    assert.is_truthy(err.traceback:find("combinators_spec.lua", 1, true))
    assert.equal(sluice.Error, getmetatable(err))
  end)

  it("sluice.error builds one; sluice.is_error recognises it, by kind too", function()
    local e = sluice.error("busy", "the thing is busy")
    assert.equal("busy", e.kind)
    assert.equal("the thing is busy", e.message)
    assert.equal("the thing is busy", tostring(e))
    -- the traceback starts at the caller of sluice.error
    local first_frame = e.traceback:match("stack traceback:\n\t([^\n]*)")
    assert.is_truthy(first_frame:find("combinators_spec.lua:", 1, true))
    assert.is_true(sluice.is_error(e))
    assert.is_true(sluice.is_error(e, "busy"))
    assert.is_false(sluice.is_error(e, "timeout"))
    assert.is_false(sluice.is_error("busy"))
    assert.is_false(sluice.is_error({ kind = "busy", message = "x" }))
    assert.is_false(sluice.is_error(nil))
    local d = sluice.error("plain")
    assert.equal("plain", d.message)
    local n = sluice.error("k", 42)
    assert.equal("42", n.message)
    assert.equal("sluice.error: kind must be a string (got 5)", msg_of(sluice.error, 5))
    assert.equal("sluice.error: kind must be a string (got nil)", msg_of(sluice.error))
  end)

  it("raised through await keep their identity", function()
    local e = sluice.error("custom", "m")
    local t = sluice.spawn(function() error(e, 0) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal(e, err)
  end)
end)
