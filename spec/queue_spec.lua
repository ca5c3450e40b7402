-- sluice.queue: p-queue.  Happy path, priorities, FIFO within a priority,
-- the concurrency bound, the interval cap's exact timings, pause/start,
-- clear, max_size, timeouts, on_empty/on_idle/on_size_less_than,
-- cancellation, errors, statistics, bad input.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer = util.tracer

-- Times are shown from T0, the moment the test began (the virtual clock
-- runs on from one test to the next).
local T0 = 0
local function at() return sluice.now() - T0 end

-- A job that logs its start (with the time) and end around a sleep.
local function job(log, name, d)
  return function()
    log(("start %s at %g"):format(name, at()))
    if d and d > 0 then sluice.sleep(d) end
    log("end " .. name)
    return name
  end
end

local function await_all(hs)
  for _, h in ipairs(hs) do pcall(h.await, h) end
end

describe("sluice.queue", function()
  it("runs jobs and returns their results through await", function()
    T0 = sluice.now()
    local q = sluice.queue()
    local h = q:add(function(a, b) return a + b, nil, "x" end, nil, 1, 2)
    assert.same({ n = 3, 3, nil, "x" }, { n = select("#", h:await()), h:await() })
    assert.equal("done", h.status)
    assert.equal(0, q.size)
    assert.equal(0, q.pending)
    assert.equal(0, q.running)
    assert.is_false(q.is_paused)
    assert.equal(math.huge, q.concurrency)
    local h2 = q:add(function(...) return select("#", ...), ... end, { priority = 1 }, nil, 2, nil)
    assert.same({ 3, nil, 2, nil }, { h2:await() })
    local h3 = q:add(function() return 7 end)
    assert.is_nil(h3:result())   -- not started yet: no outcome
    h3:await()
    assert.same({ true, 7 }, { h3:result() })
    q:on_idle()
  end)

  it("runs pending jobs by priority, lower number first, FIFO within a priority", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 1 }
    local hs = { q:add(job(log, "gate", 1)) }
    sluice.yield()   -- the gate starts (a job is taken when its body begins)
    for _, j in ipairs { { "a", 5 }, { "b", 1 }, { "c", 3 }, { "d", 1 }, { "e", 0 }, { "f", -2 },
        { "g", 1.5 }, { "h", 0 } } do
      hs[#hs + 1] = q:add(job(log, j[1], 1), { priority = j[2] })
    end
    assert.equal(8, q.size)
    assert.equal(1, q.pending)
    await_all(hs)
    assert.same({ "start gate at 0", "end gate", "start f at 1", "end f", "start e at 2", "end e",
      "start h at 3", "end h", "start b at 4", "end b", "start d at 5", "end d",
      "start g at 6", "end g", "start c at 7", "end c", "start a at 8", "end a" }, trace)
  end)

  it("takes a job added at the same instant with a better priority first", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 1 }
    local a = q:add(job(log, "a"))          -- a runner is spawned for it...
    local b = q:add(job(log, "b"), { priority = -1 })   -- ...and takes b: it is better
    a:await(); b:await()
    assert.same({ "start b at 0", "end b", "start a at 0", "end a" }, trace)
  end)

  it("runs at most concurrency jobs at once", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 2 }
    local hs = {}
    for i = 1, 5 do hs[i] = q:add(job(log, i, 1)) end
    assert.equal(3, q.size)
    assert.equal(2, q.pending)
    sluice.sleep(0.5)
    assert.equal(2, q.running)
    await_all(hs)
    assert.same({ "start 1 at 0", "start 2 at 0", "end 1", "start 3 at 1", "end 2", "start 4 at 1",
      "end 3", "start 5 at 2", "end 4", "end 5" }, trace)
    assert.equal(3, at())
  end)

  it("starts at most interval_cap jobs in any interval: 12 quick jobs at 0, 1 and 2", function()
    T0 = sluice.now()
    local q = sluice.queue { interval = 1, interval_cap = 5 }
    local starts, hs = {}, {}
    for i = 1, 12 do hs[i] = q:add(function() starts[i] = at() end) end
    await_all(hs)
    assert.same({ 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2 }, starts)
    assert.equal(7, q:stats().throttled)
  end)

  it("keeps the window sliding: a freed start is reused exactly one interval after it", function()
    T0 = sluice.now()
    local q = sluice.queue { interval = 1, interval_cap = 5 }
    local starts, hs = {}, {}
    local function add(name) hs[#hs + 1] = q:add(function() starts[#starts + 1] = name .. "@" .. at() end) end
    add("a"); add("b"); add("c")
    sluice.sleep(0.5)
    add("d"); add("e")
    sluice.sleep(0.25)
    add("f"); add("g"); add("h"); add("i")   -- 5 started in (−0.25, 0.75]: wait for 1
    sluice.sleep(0.5)
    add("j")                                  -- at 1.25: a, b, c left at 1; f, g, h took them
    await_all(hs)
    assert.same({ "a@0", "b@0", "c@0", "d@0.5", "e@0.5", "f@1", "g@1", "h@1", "i@1.5", "j@1.5" }, starts)
  end)

  it("does not double the window after idling: 5 at once, the next an interval after them", function()
    T0 = sluice.now()
    local q = sluice.queue { interval = 1, interval_cap = 5 }
    local starts, hs = {}, {}
    for i = 1, 5 do hs[#hs + 1] = q:add(function() end) end
    await_all(hs)
    sluice.sleep(10)
    for i = 1, 8 do hs[#hs + 1] = q:add(function() starts[i] = at() end) end
    await_all(hs)
    assert.same({ 10, 10, 10, 10, 10, 11, 11, 11 }, starts)
  end)

  it("counts only jobs that started against the cap, not those cancelled while pending", function()
    T0 = sluice.now()
    local q = sluice.queue { interval = 1, interval_cap = 2, autostart = false }
    local starts, hs = {}, {}
    for i = 1, 4 do hs[i] = q:add(function() starts[#starts + 1] = i .. "@" .. at() end) end
    assert.is_true(hs[1]:cancel())
    assert.is_true(hs[2]:cancel())
    q:start()
    await_all(hs)
    assert.same({ "3@0", "4@0" }, starts)
  end)

  it("combines the cap with the concurrency bound", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 2, interval = 1, interval_cap = 3 }
    local hs = {}
    for i = 1, 6 do hs[i] = q:add(job(log, i, 0.25)) end
    await_all(hs)
    assert.same({ "start 1 at 0", "start 2 at 0", "end 1", "start 3 at 0.25", "end 2", "end 3",
      "start 4 at 1", "start 5 at 1", "end 4", "start 6 at 1.25", "end 5", "end 6" }, trace)
  end)

  it("pause stops new starts, running jobs go on; start resumes", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 1, autostart = false }
    assert.is_true(q.is_paused)
    local hs = {}
    for i = 1, 3 do hs[i] = q:add(job(log, i, 1)) end
    sluice.sleep(5)
    assert.same({}, trace)
    assert.equal(3, q.size)
    q:start()
    assert.is_false(q.is_paused)
    sluice.sleep(0.5)
    q:pause()
    hs[1]:await()
    sluice.sleep(2)
    assert.same({ "start 1 at 5", "end 1" }, trace)
    assert.equal(2, q.size)
    assert.equal(0, q.pending)
    q:start()
    await_all(hs)
    assert.same({ "start 1 at 5", "end 1", "start 2 at 8", "end 2", "start 3 at 9", "end 3" }, trace)
  end)

  it("clear ends every pending job cancelled and wakes their awaiters", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1 }
    local a = q:add(function() sluice.sleep(1) return "a" end)
    local ps = {}
    for i = 1, 10 do ps[i] = q:add(function() error("must not run") end, { priority = i % 3 }) end
    local w = sluice.spawn(function() return pcall(ps[5].await, ps[5]) end)
    sluice.yield()
    q:clear()
    assert.equal(0, q.size)
    assert.equal(1, q.pending)
    for i = 1, 10 do
      assert.equal("cancelled", ps[i].status)
      local ok, err = ps[i]:result()
      assert.is_false(ok)
      assert.equal("cancelled", err.kind)
      assert.equal("cancelled: queue:clear()", err.message)
    end
    local ok, err = w:await()
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.equal("a", a:await())
    assert.equal(10, q:stats().cancelled)
    q:on_idle()
  end)

  it("clear with on_idle leaves nothing behind, even a runner waiting for the window", function()
    T0 = sluice.now()
    local q = sluice.queue { interval = 10, interval_cap = 1 }
    local a = q:add(function() end)
    local b = q:add(function() end)
    sluice.sleep(1)
    assert.equal(1, q.size)
    q:clear()
    q:on_idle()
    a:await()
    assert.equal("cancelled", b.status)
  end)

  it("raises a full error when max_size jobs are pending, changing nothing", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1, max_size = 2 }
    local hs = { q:add(function() sluice.sleep(1) end) }   -- running: not pending
    hs[2] = q:add(function() end)
    hs[3] = q:add(function() end)
    local ok, err = pcall(q.add, q, function() end)
    assert.is_false(ok)
    assert.equal("full", err.kind)
    assert.equal("queue:add: the queue is full (max_size 2)", err.message)
    assert.equal(2, q.size)
    assert.equal(2, q.max_size)
    await_all(hs)
    hs[4] = q:add(function() return "ok" end)
    assert.equal("ok", hs[4]:await())
  end)

  it("times a job out: its handle fails with a timeout error and its place is freed", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 1, timeout = 2 }
    assert.equal(2, q.timeout)
    local cleaned
    local a = q:add(function()
      log("a at " .. at())
      local ok, e = pcall(sluice.sleep, 5)
      cleaned = e.kind
      error(e, 0)
    end)
    local b = q:add(job(log, "b", 1))
    local c = q:add(job(log, "c", 3), { timeout = 10 })   -- its own limit
    local ok, err = pcall(a.await, a)
    assert.is_false(ok)
    assert.equal("timeout", err.kind)
    assert.equal("queue: job timed out after 2 s", err.message)
    assert.equal(2, at())
    assert.equal("cancelled", cleaned)
    assert.equal("failed", a.status)
    assert.equal("b", b:await())
    assert.equal("c", c:await())
    assert.same({ "a at 0", "start b at 2", "end b", "start c at 3", "end c" }, trace)
    local st = q:stats()
    assert.equal(1, st.timeouts)
  end)

  it("a job that swallows its timeout still fails with it, when it ends", function()
    T0 = sluice.now()
    local q = sluice.queue { timeout = 1 }
    local h = q:add(function()
      pcall(sluice.sleep, 5)
      sluice.shield(sluice.sleep, 0.5)
      return "late"
    end)
    local ok, err = pcall(h.await, h)
    assert.is_false(ok)
    assert.equal("queue: job timed out after 1 s", err.message)
    assert.equal(1.5, at())
  end)

  it("on_empty, on_idle and on_size_less_than wake at the exact moments", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 1 }
    q:on_empty(); q:on_idle(); q:on_size_less_than(1)   -- true already: at once
    assert.equal(0, at())
    local hs = {}
    for i = 1, 4 do hs[i] = q:add(function() sluice.sleep(1) end) end
    local ws = {
      sluice.spawn(function() q:on_size_less_than(2) log("size<2 at " .. at()) end),
      sluice.spawn(function() q:on_empty() log("empty at " .. at()) end),
      sluice.spawn(function() q:on_idle() log("idle at " .. at()) end),
      sluice.spawn(function() q:on_size_less_than(4) log("size<4 at " .. at()) end),
    }
    for _, w in ipairs(ws) do w:await() end
    -- 3 pending at 0 (one running), 2 at 1, 1 at 2, 0 at 3, idle at 4
    assert.same({ "size<4 at 0", "size<2 at 2", "empty at 3", "idle at 4" }, trace)
    await_all(hs)
  end)

  it("a cancelled on_idle waiter leaves; the others still wake", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1 }
    local h = q:add(function() sluice.sleep(2) end)
    local w1 = sluice.spawn(function() q:on_idle() end)
    local w2 = sluice.spawn(function() q:on_idle() return at() end)
    sluice.sleep(1)
    w1:cancel()
    local ok, err = pcall(w1.await, w1)
    assert.equal("cancelled", err.kind)
    assert.equal(2, w2:await())
    h:await()
  end)

  it("cancelling a pending job removes it; cancelling a running one frees its place", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 1 }
    local a = q:add(job(log, "a", 10))
    local b = q:add(job(log, "b", 1))
    local c = q:add(job(log, "c", 1))
    assert.is_true(b:cancel("no"))
    assert.equal("cancelled", b.status)
    assert.is_false(b:cancel())
    local ok, err = pcall(b.await, b)
    assert.equal("cancelled: no", err.message)
    assert.equal(1, q.size)
    sluice.sleep(1)
    assert.is_true(a:cancel())
    ok, err = pcall(a.await, a)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.equal("cancelled", a.status)
    assert.equal("c", c:await())
    assert.same({ "start a at 0", "start c at 1", "end c" }, trace)
    assert.equal(1, q:stats().cancelled)
  end)

  it("re-raises a job's error to its awaiter unchanged and goes on with the next", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1 }
    local boom = { code = 7 }
    local a = q:add(function() sluice.sleep(1) error(boom) end)
    local b = q:add(function() return "b" end)
    local ok, err = pcall(a.await, a)
    assert.is_false(ok)
    assert.equal(boom, err)
    assert.equal("failed", a.status)
    assert.equal("b", b:await())
  end)

  it("runs jobs in the root scope: a scope that added jobs does not wait for them", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1 }
    local h
    sluice.scope(function()
      h = q:add(function() sluice.sleep(1) return at() end)
    end)
    assert.equal(0, at())
    assert.equal("waiting", h.status)   -- running: its runner sleeps
    assert.equal("queued job (waiting)", tostring(h))
    assert.equal(1, h:await())
    -- nor does cancelling the adder cancel its jobs
    local adder = sluice.spawn(function()
      h = q:add(function() sluice.sleep(1) return "still ran" end)
      sluice.sleep(10)
    end)
    sluice.yield()
    adder:cancel()
    assert.equal("still ran", h:await())
    pcall(adder.await, adder)
  end)

  it("awaiting a pending job from the only place raises a deadlock error", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1 }
    local inner
    local outer = q:add(function()
      inner = q:add(function() return "inner" end)
      return inner:await()
    end)
    local ok, err = pcall(outer.await, outer)
    assert.is_false(ok)
    assert.equal("deadlock", err.kind)
    assert.truthy(err.message:find("^task:await: deadlock: every place is held by this task"), err.message)
    assert.equal("inner", inner:await())
    local h
    h = q:add(function() return h:await() end)
    ok, err = pcall(h.await, h)
    assert.equal("task:await: deadlock: a queued job awaits itself", err.message)
  end)

  it("on_idle from one of the queue's own jobs raises a deadlock error", function()
    T0 = sluice.now()
    local q = sluice.queue()
    local h = q:add(function() q:on_idle() end)
    local ok, err = pcall(h.await, h)
    assert.is_false(ok)
    assert.equal("deadlock", err.kind)
    assert.equal("queue:on_idle: deadlock: called from a job of this queue, which keeps it busy " ..
      "until the job returns", err.message)
  end)

  it("growing concurrency starts pending jobs at once", function()
    T0 = sluice.now()
    local trace, log = tracer()
    local q = sluice.queue { concurrency = 1 }
    local hs = {}
    for i = 1, 4 do hs[i] = q:add(job(log, i, 1)) end
    sluice.yield()
    q.concurrency = 3
    assert.equal(3, q.concurrency)
    assert.equal(1, q.size)
    await_all(hs)
    assert.same({ "start 1 at 0", "start 2 at 0", "start 3 at 0", "end 1", "start 4 at 1",
      "end 2", "end 3", "end 4" }, trace)
  end)

  it("keeps statistics", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1, interval = 1, interval_cap = 1 }
    local a = q:add(function() end)
    local b = q:add(function() end)
    local c = q:add(function() end)
    c:cancel()
    a:await(); b:await()
    local st = q:stats()
    assert.equal(2, st.started)
    assert.equal(1, st.started_after_wait)
    assert.equal(1, st.cancelled)
    assert.equal(1, st.throttled)
    assert.equal(0, st.timeouts)
    assert.equal(1, st.wait_total)   -- b waited 1 s, c was cancelled at 0
    assert.equal(1, st.wait_max)
    assert.equal(0, st.size)
    assert.equal(0, st.pending)
    local n = 0
    for i = 1, 32 do n = n + st.histogram[i] end
    assert.equal(3, n)
    assert.equal(2, st.histogram[1])
  end)

  it("handles work in the combinators", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1 }
    local a = q:add(function() sluice.sleep(1) return "a" end)
    local b = q:add(function() sluice.sleep(1) return "b" end)
    assert.same({ "a", "b" }, sluice.all { a, b })
    assert.equal(2, at())
    local slow = q:add(function() sluice.sleep(5) return "slow" end)
    local queued = q:add(function() return "never" end)
    assert.equal("fast", sluice.race { slow, queued, function() sluice.sleep(1) return "fast" end })
    assert.equal("cancelled", slow.status)
    assert.equal("cancelled", queued.status)
    assert.equal(0, q.size + q.pending)
  end)

  it("rejects bad options, naming them", function()
    T0 = sluice.now()
    local cases = {
      { { concurrency = 0 }, "queue: concurrency must be a positive integer or math.huge (got 0)" },
      { { concurrency = -1 }, "queue: concurrency must be a positive integer or math.huge (got -1)" },
      { { concurrency = 1.5 }, "queue: concurrency must be a positive integer or math.huge (got 1.5)" },
      { { concurrency = 0 / 0 }, "queue: concurrency must be a positive integer or math.huge (got nan)" },
      { { concurrency = "2" }, 'queue: concurrency must be a positive integer or math.huge (got "2")' },
      { { interval = 1, interval_cap = 0 }, "queue: interval_cap must be a positive integer (got 0)" },
      { { interval = 1, interval_cap = 2.5 }, "queue: interval_cap must be a positive integer (got 2.5)" },
      { { interval = 1, interval_cap = math.huge }, "queue: interval_cap must be a positive integer (got inf)" },
      { { interval = 0, interval_cap = 1 }, "queue: interval must be a finite positive number (got 0)" },
      { { interval = -1, interval_cap = 1 }, "queue: interval must be a finite positive number (got -1)" },
      { { interval = 0 / 0, interval_cap = 1 }, "queue: interval must be a finite positive number (got nan)" },
      { { interval = math.huge, interval_cap = 1 }, "queue: interval must be a finite positive number (got inf)" },
      { { interval = "1", interval_cap = 1 }, 'queue: interval must be a finite positive number (got "1")' },
      { { interval = 1 }, "queue: interval needs interval_cap (how many starts the window allows)" },
      { { interval_cap = 3 }, "queue: interval_cap needs interval (the window it counts starts in)" },
      { { timeout = 0 }, "queue: timeout must be a finite positive number (got 0)" },
      { { timeout = math.huge }, "queue: timeout must be a finite positive number (got inf)" },
      { { max_size = 0 }, "queue: max_size must be a positive integer or math.huge (got 0)" },
      { { max_size = 2.5 }, "queue: max_size must be a positive integer or math.huge (got 2.5)" },
      { { autostart = 1 }, "queue: autostart must be a boolean (got 1)" },
      { { concurency = 2 }, 'queue: unknown option "concurency"' },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(sluice.queue, case[1])
      assert.is_false(ok)
      assert.equal("invalid", err.kind)
      assert.equal(case[2], err.message)
    end
    local ok, err = pcall(sluice.queue, 5)
    assert.equal("queue: opts must be a table (got 5)", err.message)
    assert.equal(math.huge, sluice.queue { concurrency = math.huge }.concurrency)
  end)

  it("rejects bad add arguments and wrong self, leaving the queue unchanged", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1, autostart = false }
    local f = function() end
    local cases = {
      { { 5 }, "queue:add: fn must be a function (got 5)" },
      { { nil }, "queue:add: fn must be a function (got nil)" },
      { { f, 5 }, "queue:add: opts must be a table (got 5)" },
      { { f, { priority = 0 / 0 } }, "queue:add: priority must be a finite number (got nan)" },
      { { f, { priority = math.huge } }, "queue:add: priority must be a finite number (got inf)" },
      { { f, { priority = -math.huge } }, "queue:add: priority must be a finite number (got -inf)" },
      { { f, { priority = "1" } }, 'queue:add: priority must be a finite number (got "1")' },
      { { f, { timeout = 0 } }, "queue:add: timeout must be a finite positive number (got 0)" },
      { { f, { timeout = -1 } }, "queue:add: timeout must be a finite positive number (got -1)" },
      { { f, { timeout = 0 / 0 } }, "queue:add: timeout must be a finite positive number (got nan)" },
      { { f, { prio = 1 } }, 'queue:add: unknown option "prio"' },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(q.add, q, unpack(case[1], 1, 2))
      assert.is_false(ok)
      assert.equal("invalid", err.kind)
      assert.equal(case[2], err.message)
    end
    assert.equal(0, q.size)
    for _, m in ipairs { "add", "pause", "start", "clear", "on_empty", "on_idle", "stats" } do
      local ok, err = pcall(q[m], 5)
      assert.is_false(ok)
      assert.equal("queue:" .. m .. ": expected a queue (got number)", err.message)
    end
    local ok, err = pcall(q.on_size_less_than, {}, 1)
    assert.equal("queue:on_size_less_than: expected a queue (got table)", err.message)
    for _, case in ipairs { { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" },
        { math.huge, "inf" }, { "2", '"2"' }, { nil, "nil" } } do
      ok, err = pcall(q.on_size_less_than, q, case[1])
      assert.equal("queue:on_size_less_than: n must be a positive integer (got " .. case[2] .. ")", err.message)
    end
    for _, case in ipairs { { 0, "0" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { nil, "nil" } } do
      ok, err = pcall(function() q.concurrency = case[1] end)
      assert.equal("queue: concurrency must be a positive integer or math.huge (got " .. case[2] .. ")",
        err.message)
      assert.equal(1, q.concurrency)
    end
    ok, err = pcall(function() q.size = 3 end)
    assert.equal("queue: field 'size' is read-only", err.message)
    assert.equal("queue (0 running, 0 pending, paused)", tostring(q))
  end)

  it("cannot wait outside a task or where it cannot yield", function()
    T0 = sluice.now()
    local q = sluice.queue { concurrency = 1 }
    local h = q:add(function() sluice.sleep(1) end)
    local ok, err = pcall(table.sort, { 1, 2 }, function() q:on_idle() return true end)
    assert.is_false(ok)
    assert.truthy(err.message:find("^queue:on_idle: cannot block here"), err.message)
    h:await()
  end)
end)
