-- sluice.limit: p-limit.  Happy path, start order under contention, FIFO,
-- cancellation while queued, clear_queue, run-time resizing, bad input.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer = util.tracer

-- A call that logs its start and end around a sleep of d seconds.
local function job(log, name, d)
  return function()
    log("start " .. name)
    sluice.sleep(d or 1)
    log("end " .. name)
    return name
  end
end

-- Runs a script in its own sluice process: exit code, stdout, stderr.
local function run_script(text)
  local BIN = os.getenv("SLUICE_BIN") or "build/sluice"
  local path, out, errf = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  local p = assert(io.popen("'" .. BIN .. "' " .. path .. " >" .. out .. " 2>" .. errf .. "; echo $?"))
  local code = tonumber(p:read("*a"))
  p:close()
  local function slurp(name)
    local h = assert(io.open(name, "rb"))
    local s = h:read("*a")
    h:close()
    os.remove(name)
    return s
  end
  os.remove(path)
  return code, slurp(out), slurp(errf)
end

describe("sluice.limit", function()
  it("runs calls and returns their results through await", function()
    local lim = sluice.limit(2)
    local t = lim(function(a, b) return a + b, nil, "x" end, 1, 2)
    assert.same({ n = 3, 3, nil, "x" }, { n = select("#", t:await()), t:await() })
    assert.equal(0, lim.active_count)
    assert.equal(0, lim.pending_count)
    assert.equal(2, lim.concurrency)
  end)

  it("starts at most n at once, the rest in FIFO order", function()
    local trace, log = tracer()
    local lim = sluice.limit(2)
    local calls = {}
    local t0 = sluice.now()
    for i = 1, 5 do calls[i] = lim(job(log, i, 1)) end
    assert.equal(2, lim.active_count)
    assert.equal(3, lim.pending_count)
    assert.equal("pending", calls[3].status)
    for i = 1, 5 do assert.equal(i, calls[i]:await()) end
    -- a place goes straight on to the next queued call
    assert.same({ "start 1", "start 2", "end 1", "start 3", "end 2", "start 4",
      "end 3", "start 5", "end 4", "end 5" }, trace)
    assert.equal(t0 + 3, sluice.now())
  end)

  it("passes arguments of queued calls, nils included", function()
    local lim = sluice.limit(1)
    local gate = lim(function() sluice.sleep(1) end)
    local h = lim(function(...) return select("#", ...), ... end, nil, 2, nil)
    assert.equal("pending", h.status)
    assert.same({ 3, nil, 2, nil }, { h:await() })
    gate:await()
    assert.equal("done", h.status)
    assert.is_nil(h.task)   -- it ran in the place's task, which went on
  end)

  it("runs a queued call in the task of the place that freed, which is its task meanwhile", function()
    local lim = sluice.limit(1)
    local seen
    local a = lim(function() sluice.sleep(1) return sluice.current() end)
    local b = lim(function() seen = sluice.current() sluice.sleep(1) end)
    assert.equal("pending", b.status)
    assert.is_nil(b.task)
    sluice.sleep(0.5)
    local runner = a.task
    assert.equal("waiting", a.status)
    assert.equal(runner.id, a.id)
    sluice.sleep(1)
    assert.equal(runner, seen)
    assert.equal(runner, b.task)
    assert.equal("waiting", b.status)
    assert.equal(runner, a:await())
    assert.equal("done", a.status)
    assert.is_nil(a.task)
    b:await()
    assert.equal("done", runner.status)
  end)

  it("re-raises a call's error to its awaiter and starts the next", function()
    local lim = sluice.limit(1)
    local a = lim(function() sluice.sleep(1) error({ code = 7 }) end)
    local b = lim(function() return "b" end)
    local ok, err = pcall(a.await, a)
    assert.is_false(ok)
    assert.equal(7, err.code)
    assert.equal("b", b:await())
  end)

  it("keeps the traceback of where a call failed", function()
    local lim = sluice.limit(1)
    local line = debug.getinfo(1, "l").currentline + 1
    local h = lim(function() local x = nil; return x.field end)
    local ok = pcall(h.await, h)
    assert.is_false(ok)
    local _, tb = require("sluice.core").error(h.task)
    assert.truthy(tb:find("limit_spec.lua:" .. line .. ":", 1, true), tb)
  end)

  it("goes on with the next call in a new place's task after a failure", function()
    local lim = sluice.limit(1)
    local a = lim(function() error("boom") end)
    local seen
    local b = lim(function() seen = sluice.current() return "b" end)
    assert.equal("b", b:await())
    local ok, err = pcall(a.await, a)
    assert.is_false(ok)
    assert.truthy(err:find("boom", 1, true))
    assert.equal("failed", a.status)
    assert.not_equal(a.task, seen)
  end)

  it("a call that swallows its cancellation ends done, and the next call runs uncancelled", function()
    local trace, log = tracer()
    local lim = sluice.limit(1)
    local a = lim(function()
      local ok, err = pcall(sluice.sleep, 10)
      log("a caught " .. err.kind)
      return "a"
    end)
    local b = lim(function() sluice.sleep(1) log("b slept") return "b" end)
    sluice.sleep(1)
    assert.is_true(a:cancel())
    assert.equal("a", a:await())
    assert.equal("done", a.status)
    assert.equal("b", b:await())
    assert.same({ "a caught cancelled", "b slept" }, trace)
  end)

  it("a call that returns still holding a permit is reported and the permit released", function()
    local code, out, err = run_script([[
local sluice = require "sluice"
local lim = sluice.limit(1)
local sem = sluice.semaphore(1)
local a = lim(function() sem:acquire() return "a" end)
local b = lim(function() return sem:acquire(0) end)
print(a:await(), b:await(), sem.available)
]])
    assert.equal(1, code)   -- a bug was reported
    assert.equal("a\ttrue\t1\n", out)
    assert.equal("sluice: task #2 ended while holding a semaphore (1 held); released\n" ..
      "sluice: task #3 ended while holding a semaphore (1 held); released\n", err)
  end)

  it("awaiting a queued call from the only place raises a deadlock error", function()
    local lim = sluice.limit(1)
    local inner
    local outer = lim(function()
      inner = lim(function() return "inner" end)
      return inner:await()
    end)
    local ok, err = pcall(outer.await, outer)
    assert.is_false(ok)
    assert.equal("deadlock", err.kind)
    assert.truthy(err.message:find("^task:await: deadlock: every place is held by this task"), err.message)
    assert.equal("inner", inner:await())
  end)

  it("a call awaiting its own handle raises a deadlock error", function()
    local lim = sluice.limit(2)
    local h
    h = lim(function() sluice.yield() return h:await() end)
    local ok, err = pcall(h.await, h)
    assert.is_false(ok)
    assert.equal("deadlock", err.kind)
    assert.equal("task:await: deadlock: a limited call awaits itself", err.message)
  end)

  it("runs calls from two scopes each in a task of its own scope, in FIFO order", function()
    local trace, log = tracer()
    local lim = sluice.limit(1)
    local gate = lim(function() sluice.sleep(1) end)
    local scopes = {}
    local s1 = sluice.spawn(function()
      sluice.scope(function(s)
        for i = 1, 2 do lim(function() log("s1 call " .. i) scopes[#scopes + 1] = sluice.current() end) end
      end)
    end)
    local s2 = sluice.spawn(function()
      sluice.scope(function(s)
        for i = 1, 2 do lim(function() log("s2 call " .. i) scopes[#scopes + 1] = sluice.current() end) end
      end)
    end)
    s1:await(); s2:await(); gate:await()
    assert.same({ "s1 call 1", "s1 call 2", "s2 call 1", "s2 call 2" }, trace)
    assert.equal(scopes[1], scopes[2])
    assert.not_equal(scopes[2], scopes[3])
    assert.equal(scopes[3], scopes[4])
  end)

  it("cancelling a queued call removes it as if never queued", function()
    local trace, log = tracer()
    local lim = sluice.limit(1)
    local a = lim(job(log, "a"))
    local b = lim(job(log, "b"))
    local c = lim(job(log, "c"))
    assert.is_true(b:cancel("no"))
    assert.equal(1, lim.pending_count)
    assert.equal("cancelled", b.status)
    assert.is_false(b:cancel())
    local ok, err = pcall(b.await, b)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.equal("cancelled: no", err.message)
    a:await(); c:await()
    assert.same({ "start a", "end a", "start c", "end c" }, trace)
    assert.equal(1, lim:stats().cancelled)
  end)

  it("wakes an awaiter of a queued call that is cancelled", function()
    local lim = sluice.limit(1)
    local a = lim(function() sluice.sleep(2) end)
    local b = lim(function() end)
    local w = sluice.spawn(function() return pcall(b.await, b) end)
    sluice.sleep(1)
    assert.equal("waiting", w.status)
    b:cancel()
    local ok, err = w:await()
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    a:await()
  end)

  it("cancelling a started call cancels its task and frees its place", function()
    local lim = sluice.limit(1)
    local a = lim(function() sluice.sleep(10) end)
    local b = lim(function() return "b" end)
    sluice.sleep(1)
    assert.is_true(a:cancel())
    assert.equal("b", b:await())
    assert.equal("cancelled", a.status)
  end)

  it("clear_queue ends every pending call cancelled", function()
    local lim = sluice.limit(1)
    local a = lim(function() sluice.sleep(1) return "a" end)
    local ps = {}
    for i = 1, 10 do ps[i] = lim(function() error("must not run") end) end
    local w = sluice.spawn(function() return pcall(ps[5].await, ps[5]) end)
    sluice.yield()
    lim:clear_queue()
    assert.equal(0, lim.pending_count)
    assert.equal(1, lim.active_count)
    for i = 1, 10 do
      assert.equal("cancelled", ps[i].status)
      local ok, err = ps[i]:result()
      assert.is_false(ok)
      assert.equal("cancelled", err.kind)
    end
    local ok, err = w:await()
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.equal("a", a:await())
    assert.equal(10, lim:stats().cancelled)
  end)

  it("growing the limit starts queued calls at once", function()
    local trace, log = tracer()
    local lim = sluice.limit(1)
    local cs = {}
    for i = 1, 4 do cs[i] = lim(job(log, i, 1)) end
    sluice.yield()
    lim.concurrency = 3
    assert.equal(3, lim.active_count)
    assert.equal(1, lim.pending_count)
    for i = 1, 4 do cs[i]:await() end
    assert.same({ "start 1", "start 2", "start 3", "end 1", "start 4", "end 2", "end 3", "end 4" }, trace)
  end)

  it("shrinking lets running calls finish and starts none until under the limit", function()
    local trace, log = tracer()
    local lim = sluice.limit(3)
    local cs = {}
    for i = 1, 5 do cs[i] = lim(job(log, i, i)) end
    sluice.yield()
    lim.concurrency = 1   -- does not block
    assert.equal(3, lim.active_count)
    for i = 1, 5 do cs[i]:await() end
    -- 1 ends at 1 and 2 at 2 (still 1 running: 3), 3 ends at 3, then one at a time
    assert.same({ "start 1", "start 2", "start 3", "end 1", "end 2", "end 3",
      "start 4", "end 4", "start 5", "end 5" }, trace)
  end)

  it("keeps statistics", function()
    local lim = sluice.limit(1)
    local a = lim(function() sluice.sleep(1) end)
    local b = lim(function() end)
    b:await(); a:await()
    local st = lim:stats()
    assert.equal(2, st.started)
    assert.equal(1, st.started_after_wait)
    assert.equal(1, st.wait_total)
    assert.equal(1, st.wait_max)
    local n = 0
    for i = 1, 32 do n = n + st.histogram[i] end
    assert.equal(2, n)
    assert.equal(1, st.histogram[1])
  end)

  it("keeps a scope open while calls made in it are queued, and runs them in it", function()
    local lim = sluice.limit(1)
    local a = lim(function() sluice.sleep(2) end)
    local h
    sluice.scope(function()
      h = lim(function() return sluice.now() end)
    end)
    assert.equal("done", h.status)
    a:await()
  end)

  it("drops the calls a cancelled scope queued", function()
    local lim = sluice.limit(1)
    local a = lim(function() sluice.sleep(10) end)
    local h
    local ok, err = pcall(sluice.timeout, 1, function()
      h = lim(function() error("must not run") end)
      h:await()
    end)
    assert.is_false(ok)
    assert.equal("timeout", err.kind)
    assert.equal("cancelled", h.status)
    assert.equal(0, lim.pending_count)
    a:cancel()
    pcall(a.await, a)
  end)

  it("rejects bad concurrency, leaving the object unchanged", function()
    local lim = sluice.limit(3)
    for _, case in ipairs { { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" },
        { math.huge, "inf" }, { "2", '"2"' }, { nil, "nil" }, { {}, "table" } } do
      local ok, err = pcall(sluice.limit, case[1])
      assert.is_false(ok)
      assert.equal("invalid", err.kind)
      assert.equal("limit: concurrency must be a positive integer (got " .. case[2] .. ")", err.message)
      ok, err = pcall(function() lim.concurrency = case[1] end)
      assert.is_false(ok)
      assert.equal("limit: concurrency must be a positive integer (got " .. case[2] .. ")", err.message)
      assert.equal(3, lim.concurrency)
    end
  end)

  it("rejects a non-function call, wrong self and read-only fields", function()
    local lim = sluice.limit(1)
    local ok, err = pcall(lim, 5)
    assert.equal("limit: fn must be a function (got 5)", err.message)
    assert.equal(0, lim.pending_count)
    ok, err = pcall(lim.clear_queue, 5)
    assert.is_false(ok)
    assert.equal("limit:clear_queue: expected a limit (got number)", err.message)
    ok, err = pcall(lim.stats, {})
    assert.equal("limit:stats: expected a limit (got table)", err.message)
    ok, err = pcall(function() lim.active_count = 3 end)
    assert.equal("limit: field 'active_count' is read-only", err.message)
  end)
end)

describe("limit handles in the combinators", function()
  local sluice = require "sluice"

  it("all and race accept queued calls and cancel the losers", function()
    local lim = sluice.limit(1)
    local t0 = sluice.now()
    local a = lim(function() sluice.sleep(1) return "a" end)
    local b = lim(function() sluice.sleep(1) return "b" end)   -- queued behind a
    local r = sluice.all({ a, b })
    assert.are.same({ "a", "b" }, r)
    assert.are.equal(2, sluice.now() - t0)   -- one after the other
    local slow = lim(function() sluice.sleep(5) return "slow" end)
    local queued = lim(function() return "never" end)
    assert.are.equal("fast", sluice.race({ slow, queued, function() sluice.sleep(1) return "fast" end }))
    assert.are.equal("cancelled", slow.status)
    assert.are.equal(0, lim.active_count)
    assert.are.equal(0, lim.pending_count)
  end)
end)
