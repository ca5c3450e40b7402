-- sluice.workers: jobs on OS threads with their own LuaJIT states.
-- Results and errors round-trip; what can and cannot be copied (exact
-- messages with paths); upvalue rejection; "module.function" jobs;
-- cancellation while queued and while running; close while busy;
-- 10,000 small jobs through two workers; argument checks.
--
-- Jobs take no virtual time: the clock stands still while a job is
-- outstanding.  Waiting for a worker to pick a job up uses sluice.yield
-- (one loop turn each), never real sleeps.
local sluice = require "sluice"
local ffi = require "ffi"

local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local error_of, msg_of = util.error_of, util.msg_of

local SUPPORT = (debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/"

-- A job that keeps its worker busy for s seconds of CPU time, then
-- records that it finished in the worker's globals.
local function spin(s, tag)
  local t0 = os.clock()
  while os.clock() - t0 < s do end
  _G[tag] = true
  return tag
end

local function echo(...) return ... end

-- Yields until the pool shows busy workers (a job was picked up).
local function until_busy(w, n)
  for _ = 1, 100000 do
    if w.busy >= n then return end
    sluice.yield()
  end
  error("the pool never got busy")
end

describe("sluice.workers", function()
  it("runs a function on a worker and returns its results", function()
    local w = sluice.workers{ size = 2 }
    assert.same({ 2, 0, 0 }, { w.size, w.busy, w.queued })
    assert.equal("workers(size=2, busy=0, queued=0)", tostring(w))
    local t0 = sluice.now()
    local a, b, c = w:run(function(x, y) return x + y, x * y, "done" end, 6, 7)
    assert.same({ 13, 42, "done" }, { a, b, c })
    assert.equal(0, select("#", w:run(function() end)))
    assert.equal(3, select("#", w:run(echo, 1, nil, 3)))
    assert.same({ 1, nil, 3 }, { w:run(echo, 1, nil, 3) })
    assert.equal(t0, sluice.now())
    assert.same({ size = 2, busy = 0, queued = 0, closed = false, completed = 4 }, w:stats())
    w:close()
  end)

  it("defaults its size to the number of CPUs", function()
    local w = sluice.workers()
    assert.is_true(w.size >= 1)
    assert.equal(3, w:run(function() return 3 end))
    w:close()
  end)

  it("copies every copyable type both ways", function()
    local w = sluice.workers{ size = 1 }
    local shared = { 1, 2 }
    local deep = {}
    local node = deep
    for i = 1, 98 do node.next = { i = i }; node = node.next end
    local v = {
      n = 1.5, i = -7, zero = 0, big = 2 ^ 53, inf = math.huge, ninf = -math.huge,
      t = true, f = false, s = "a\0b", long = ("x"):rep(100000), empty = "",
      list = { 1, "two", { 3 } }, [1] = "one", [2.5] = "float key", [true] = "yes", [false] = "no",
      a = shared, b = shared, deep = deep, nested = { { { {} } } },
    }
    local r = w:run(echo, v)
    assert.same(v, r)
    assert.is_false(rawequal(v, r))
    assert.is_false(rawequal(r.a, r.b))   -- a shared table arrives as two copies
    local nan = w:run(echo, 0 / 0)
    assert.is_true(nan ~= nan)
    assert.same({ n = 4 }, { n = select("#", w:run(echo, nil, false, nil, nil)) })
    w:close()
  end)

  it("refuses what cannot be copied, naming its path", function()
    local w = sluice.workers{ size = 1 }
    local cycle = {}
    cycle.self = cycle
    local deep = {}
    local node = deep
    for _ = 1, 100 do node.next = {}; node = node.next end
    local cases = {
      { { 1, { conn = io.stdout } }, "workers:run: args[2].conn: cannot send a userdata" },
      { { print }, "workers:run: args[1]: cannot send a function" },
      { { coroutine.create(print) }, "workers:run: args[1]: cannot send a thread" },
      { { { x = { ffi.new("int[1]") } } }, "workers:run: args[1].x[1]: cannot send a cdata" },
      { { cycle }, "workers:run: args[1].self: cannot send a table cycle" },
      { { { [{}] = 1 } }, "workers:run: args[1]: cannot send a table as a key" },
      { { { ["a b"] = { f = print } } }, 'workers:run: args[1]["a b"].f: cannot send a function' },
      { { nil, nil, { [3.5] = print } }, "workers:run: args[3][3.5]: cannot send a function" },
    }
    for _, c in ipairs(cases) do
      local e = error_of(w.run, w, echo, unpack(c[1], 1, 3))
      assert.equal("invalid", e.kind)
      assert.equal(c[2], e.message)
    end
    -- long paths are cut short
    local e = error_of(w.run, w, echo, deep)
    assert.equal("workers:run: args[1]" .. (".next"):rep(38) .. "...: nested too deeply (over 100 levels)",
      e.message)
    assert.same({ 0, 0 }, { w.busy, w.queued })
    -- results that cannot come back
    e = error_of(w.run, w, function() return 1, { x = print } end)
    assert.equal("invalid", e.kind)
    assert.equal("workers:run: result[2].x: cannot send a function", e.message)
    e = error_of(w.run, w, function() return coroutine.create(print) end)
    assert.equal("workers:run: result[1]: cannot send a thread", e.message)
    -- the worker is still fine
    assert.equal(5, w:run(function(x) return x end, 5))
    w:close()
  end)

  it("refuses functions with upvalues and what is not a Lua function", function()
    local w = sluice.workers{ size = 1 }
    local x, y = 1, 2
    assert.equal("workers:run: fn must not have upvalues (it has 1: x)",
      msg_of(w.run, w, function() return x end))
    assert.equal("workers:run: fn must not have upvalues (it has 2: x, y)",
      msg_of(w.run, w, function() return x + y end))
    assert.equal("workers:run: fn must be a Lua function (got a C function)", msg_of(w.run, w, print))
    for _, c in ipairs({ { nil, "nil" }, { 42, "42" }, { "nodot", '"nodot"' }, { {}, "table" },
                         { "a.b c", '"a.b c"' } }) do
      assert.equal('workers:run: fn must be a function or a "module.function" string (got ' .. c[2] .. ")",
        msg_of(w.run, w, c[1]))
    end
    w:close()
  end)

  it("re-raises a job's error in the caller with the worker's traceback", function()
    local w = sluice.workers{ size = 1 }
    local e = error_of(w.run, w, function(v) error("bad " .. v) end, "input")
    assert.equal("worker", e.kind)
    assert.is_truthy(e.message:find("^%[string \"[^\n]*\"%]:%d+: bad input$") or e.message:find(":%d+: bad input$"))
    assert.equal(e.message, e.value)
    assert.equal(e.message, tostring(e))
    assert.is_truthy(e.worker_traceback:find("^stack traceback:\n"))
    assert.is_truthy(e.worker_traceback:find("in function 'error'", 1, true))
    assert.is_truthy(e.traceback:find("in the worker: stack traceback:", 1, true))
    assert.is_truthy(e.traceback:find("in the caller: ", 1, true))
    -- error values are copied when they can be
    e = error_of(w.run, w, function() error({ code = 42, message = "no" }) end)
    assert.same({ "worker", "no", { code = 42, message = "no" } }, { e.kind, e.message, e.value })
    e = error_of(w.run, w, function() error(print) end)
    assert.is_truthy(e.message:find("^function: "))
    assert.equal(e.message, e.value)
    assert.equal(7, w:run(function() return 7 end))
    w:close()
  end)

  it("runs \"module.function\" jobs, loaded with the creator's package.path", function()
    local saved = package.path
    package.path = SUPPORT .. "?.lua;" .. saved
    local w = sluice.workers{ size = 2 }
    package.path = saved
    assert.equal(5, w:run("workers_job.add", 2, 3))
    assert.equal("ababab", w:run("string.rep", "ab", 3))
    local e = error_of(w.run, w, "workers_job.fail", "nope")
    assert.same({ "worker", "nope" }, { e.kind, e.message })
    e = error_of(w.run, w, "workers_job.not_a_function")
    assert.equal("workers:run: workers_job.not_a_function is not a function (got number)", e.message)
    e = error_of(w.run, w, "no_such_module.f")
    assert.equal("worker", e.kind)
    assert.is_truthy(e.message:find("module 'no_such_module' not found", 1, true))
    w:close()
  end)

  it("drops a queued job whose caller was cancelled", function()
    local w = sluice.workers{ size = 1 }
    local t1 = sluice.spawn(function() return w:run(spin, 0.05, "first") end)
    local t2 = sluice.spawn(function() return w:run(spin, 0, "second") end)
    sluice.yield()
    until_busy(w, 1)
    assert.same({ 1, 1 }, { w.busy, w.queued })
    t2:cancel("not needed")
    assert.equal(0, w.queued)
    assert.equal("cancelled: not needed", error_of(t2.await, t2).message)
    assert.equal("first", t1:await())
    assert.same({ true }, { w:run(function() return first, second end) })
    w:close()
  end)

  it("lets a running job whose caller was cancelled finish, and goes on", function()
    local w = sluice.workers{ size = 1 }
    local t = sluice.spawn(function() return w:run(spin, 0.05, "running") end)
    sluice.yield()
    until_busy(w, 1)
    t:cancel()
    assert.equal("cancelled", error_of(t.await, t).kind)
    assert.equal(1, w.busy)              -- still running
    assert.is_true(w:run(function() return running end))
    assert.same({ 0, 0 }, { w.busy, w.queued })
    w:close()
  end)

  it("raises at once for a caller cancelled before it ran", function()
    local w = sluice.workers{ size = 1 }
    local t = sluice.spawn(function()
      sluice.current():cancel()
      return w:run(spin, 0, "never")
    end)
    assert.equal("cancelled", error_of(t.await, t).kind)
    assert.is_nil(w:run(function() return never end))
    assert.equal(2, w:stats().completed + 1)
    w:close()
  end)

  it("closes by draining: queued and running jobs finish, new ones are refused", function()
    local w = sluice.workers{ size = 1 }
    local t1 = sluice.spawn(function() return w:run(spin, 0.03, "a") end)
    local t2 = sluice.spawn(function() return w:run(spin, 0, "b") end)
    sluice.yield()
    until_busy(w, 1)
    w:close()
    assert.same({ 0, 0, true }, { w.busy, w.queued, w.closed })
    assert.equal("a", t1:result() and select(2, t1:result()))
    assert.equal("b", select(2, t2:result()))
    local e = error_of(w.run, w, echo, 1)
    assert.same({ "closed", "workers:run: the pool is closed" }, { e.kind, e.message })
    w:close()                            -- idempotent
    local w2 = sluice.workers{ size = 1 }
    local closers = {}
    local t3 = sluice.spawn(function() return w2:run(spin, 0.02, "c") end)
    sluice.yield()
    for i = 1, 2 do closers[i] = sluice.spawn(function() w2:close(); return i end) end
    assert.same({ "c", 1, 2 }, { t3:await(), closers[1]:await(), closers[2]:await() })
  end)

  it("runs 10,000 small jobs through two workers, every result right", function()
    local w = sluice.workers{ size = 2 }
    local tasks, sums = {}, {}
    for k = 1, 100 do
      tasks[k] = sluice.spawn(function()
        local wrong = 0
        for i = 1, 100 do
          local n = (k - 1) * 100 + i
          local a, b = w:run(function(x) return x * x, tostring(x) end, n)
          if a ~= n * n or b ~= tostring(n) then wrong = wrong + 1 end
        end
        sums[k] = wrong
      end)
    end
    for k = 1, 100 do tasks[k]:await() end
    local wrong = 0
    for k = 1, 100 do wrong = wrong + sums[k] end
    assert.equal(0, wrong)
    assert.equal(10000, w:stats().completed)
    w:close()
  end)

  it("does not hang when collected unclosed, or left open at exit", function()
    do
      local w = sluice.workers{ size = 2 }
      assert.equal(1, w:run(function() return 1 end))
    end
    collectgarbage()
    collectgarbage()
    local bin = os.getenv("SLUICE_BIN") or "build/sluice"
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('local w = require("sluice").workers{ size = 2 }\n',
            'print(w:run(function(a) return a * 2 end, 21))\n',
            'local t = require("sluice").spawn(function() return w:run(function() return 1 end) end)\n')
    f:close()
    local p = assert(io.popen("'" .. bin .. "' " .. path .. " 2>&1; echo \"rc=$?\""))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.equal("42\nrc=0\n", out)
  end)

  it("checks its arguments", function()
    for _, c in ipairs({ { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" },
                         { math.huge, "inf" }, { "2", '"2"' }, { 1025, "1025" } }) do
      assert.equal("sluice.workers: size must be a positive integer up to 1024 (got " .. c[2] .. ")",
        msg_of(sluice.workers, { size = c[1] }))
    end
    assert.equal("sluice.workers: options must be a table (got 2)", msg_of(sluice.workers, 2))
    local w = sluice.workers{ size = 1 }
    assert.equal("workers:run: self must be a worker pool (got table)", msg_of(w.run, {}, echo))
    assert.equal("workers:close: self must be a worker pool (got nil)", msg_of(w.close))
    assert.equal("workers: field 'size' is read-only", msg_of(function() w.size = 3 end))
    local ok, e = pcall(table.sort, { 1, 2, 3 }, function(a, b) w:run(echo, 1); return a < b end)
    assert.is_false(ok)
    assert.equal("workers:run: cannot block here (inside a C call such as a table.sort comparator or a string.gsub callback)", e.message)
    assert.same({ 1, 0, 0 }, { w.size, w.busy, w.queued })
    w:close()
  end)
end)
