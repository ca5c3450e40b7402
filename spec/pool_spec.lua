-- sluice.pool: creation on demand counted toward max, FIFO hand-off,
-- timeouts and cancellation of waiters, failing and slow creations with
-- backoff, min, idle_timeout / max_lifetime / max_uses, validate, release
-- misuse, with, close and drain, max_waiting, stats, argument checks.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local error_of = util.error_of

-- A pool of fake resources {id = n}; every create and destroy is logged
-- with the time since t0.  opts.create_time: how long a create takes;
-- opts.fail: a function(n) saying whether creation n fails.
local function fake(opts)
  local log, t0, n = {}, sluice.now(), 0
  -- (rounded: t0 can be large on the shared virtual clock)
  local function say(s) log[#log + 1] = s .. " @" .. math.floor((sluice.now() - t0) * 1e6 + 0.5) / 1e6 end
  local o = { max = 2 }
  for k, v in pairs(opts or {}) do
    if k ~= "create_time" and k ~= "fail" then o[k] = v end
  end
  o.create = function()
    n = n + 1
    local id = n
    if opts and opts.create_time then sluice.sleep(opts.create_time) end
    if opts and opts.fail and opts.fail(id) then
      say("create " .. id .. " failed")
      error("create " .. id .. " failed", 0)
    end
    say("create " .. id)
    return { id = id }
  end
  o.destroy = function(r) say("destroy " .. r.id) end
  local pool = sluice.pool(o)
  return pool, log, say, t0
end

local function fields(p)
  return { size = p.size, idle = p.idle, active = p.active, pending_creates = p.pending_creates,
    waiting = p.waiting }
end

describe("sluice.pool", function()
  it("creates on demand, reuses what is released, most recent first", function()
    local p, log = fake{ max = 3 }
    assert.same({ size = 0, idle = 0, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    local a, b = p:acquire(), p:acquire()
    assert.same({ 1, 2 }, { a.id, b.id })
    assert.same({ size = 2, idle = 0, active = 2, pending_creates = 0, waiting = 0 }, fields(p))
    p:release(a)
    p:release(b)
    assert.same({ size = 2, idle = 2, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.equal(2, p:acquire().id)   -- the warmest first
    assert.same({ "create 1 @0", "create 2 @0" }, log)
    assert.equal("pool (size 2, max 3, active 1, idle 1, waiting 0)", tostring(p))
    assert.same({ 3, 0, false }, { p.max, p.min, p.closed })
    assert.is_nil(p.nope)
    p:close(0)
  end)

  it("counts creations in flight toward max: concurrent acquires never overshoot", function()
    local p, log = fake{ max = 2, create_time = 1 }
    local got, tasks, peak = {}, {}, 0
    for i = 1, 5 do
      tasks[i] = sluice.spawn(function()
        local r = p:acquire()
        got[#got + 1] = i .. ":" .. r.id
        sluice.sleep(1)
        p:release(r)
      end)
    end
    sluice.yield()
    assert.same({ size = 2, idle = 0, active = 0, pending_creates = 2, waiting = 5 }, fields(p))
    for i = 1, 5 do
      tasks[i]:await()
      peak = math.max(peak, p.size)
    end
    assert.same({ "1:1", "2:2", "3:1", "4:2", "5:1" }, got)
    assert.same({ "create 1 @1", "create 2 @1" }, log)
    assert.equal(2, p:stats().created)
    p:close()
  end)

  it("hands a released resource to the head waiter: nobody barges in", function()
    local p = fake{ max = 1 }
    local r = p:acquire()
    local trace = {}
    local a = sluice.spawn(function() local x = p:acquire() trace[#trace + 1] = "a" p:release(x) end)
    sluice.yield()
    p:release(r)
    assert.same({ size = 1, idle = 0, active = 1, pending_creates = 0, waiting = 0 }, fields(p))
    assert.same({ nil, "timeout" }, { p:acquire(0) })   -- the releaser cannot take it back
    local b = sluice.spawn(function() local x = p:acquire() trace[#trace + 1] = "b" p:release(x) end)
    local x = p:acquire()
    trace[#trace + 1] = "main"
    p:release(x)
    a:await()
    b:await()
    assert.same({ "a", "main", "b" }, trace)
    p:close()
  end)
end)

describe("pool:acquire timeouts and cancellation", function()
  it("acquire(timeout) gives nil, \"timeout\"; the creation made for it goes idle", function()
    local p, log = fake{ max = 1, create_time = 3 }
    local t0 = sluice.now()
    assert.same({ nil, "timeout" }, { p:acquire(1) })
    assert.equal(t0 + 1, sluice.now())
    assert.same({ size = 1, idle = 0, active = 0, pending_creates = 1, waiting = 0 }, fields(p))
    sluice.sleep(2)
    assert.same({ size = 1, idle = 1, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.equal(1, p:acquire(0).id)
    assert.same({ "create 1 @3" }, log)
    assert.equal(1, p:stats().timeouts)
    p:close(0)
  end)

  it("a creation whose waiter was cancelled serves the next waiter", function()
    local p, log, _, t0 = fake{ max = 1, create_time = 2 }
    local a = sluice.spawn(function() return p:acquire() end)
    sluice.yield()
    local b = sluice.spawn(function() local r = p:acquire() p:release(r) return r.id, sluice.now() end)
    sluice.sleep(1)
    a:cancel()
    assert.equal("cancelled", error_of(a.await, a).kind)
    assert.same({ size = 1, idle = 0, active = 0, pending_creates = 1, waiting = 1 }, fields(p))
    local id, at = b:await()
    assert.same({ 1, t0 + 2 }, { id, at })
    assert.same({ "create 1 @2" }, log)
    assert.same({ size = 1, idle = 1, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    p:close()
  end)

  it("a hand-off to a task cancelled before it ran passes on", function()
    local p = fake{ max = 1 }
    local r = p:acquire()
    local a = sluice.spawn(function() return p:acquire() end)
    local b = sluice.spawn(function() local x = p:acquire() p:release(x) return x.id end)
    sluice.yield()
    p:release(r)          -- a's now
    a:cancel()
    assert.equal("cancelled", error_of(a.await, a).kind)
    assert.equal(1, b:await())
    assert.same({ size = 1, idle = 1, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.equal(1, p:stats().cancelled)
    p:close()
  end)

  it("acquire_timeout raises a timeout error describing the pool", function()
    local p = fake{ max = 1, acquire_timeout = 5 }
    local r = p:acquire()
    local w = sluice.spawn(function() return p:acquire(100) end)
    sluice.yield()
    local t0 = sluice.now()
    local e = error_of(p.acquire, p)
    assert.equal("timeout", e.kind)
    assert.equal("pool:acquire: timed out after 5 s (pool size 1, max 1, active 1, idle 0, waiting 1)", e.message)
    assert.equal(t0 + 5, sluice.now())
    w:cancel()
    pcall(w.await, w)
    p:release(r)
    p:close()
  end)

  it("max_waiting sheds load with a \"full\" error", function()
    local p = fake{ max = 1, max_waiting = 1 }
    local r = p:acquire()
    local w = sluice.spawn(function() local x = p:acquire() p:release(x) end)
    sluice.yield()
    local e = error_of(p.acquire, p, 1)
    assert.same({ "full", "pool:acquire: 1 tasks already wait (max_waiting 1)" }, { e.kind, e.message })
    p:release(r)
    w:await()
    p:close()
  end)
end)

describe("pool creation failures", function()
  it("fails the acquire with the create error, then backs off 0.1 s doubling", function()
    local p, log = fake{ max = 2, fail = function(n) return n <= 3 end }
    local e1 = error_of(p.acquire, p)
    assert.equal("create 1 failed", e1)
    local e2 = error_of(p.acquire, p)   -- waits out the backoff first
    assert.equal("create 2 failed", e2)
    local e3 = error_of(p.acquire, p)
    assert.equal("create 3 failed", e3)
    local r = p:acquire()
    assert.equal(4, r.id)
    local r2 = p:acquire()              -- a success resets the backoff
    assert.equal(5, r2.id)
    assert.same({ "create 1 failed @0", "create 2 failed @0.1", "create 3 failed @0.3",
      "create 4 @0.7", "create 5 @0.7" }, log)
    local st = p:stats()
    assert.same({ 2, 3 }, { st.created, st.create_failures })
    assert.same({ size = 2, idle = 0, active = 2, pending_creates = 0, waiting = 0 }, fields(p))
    p:release(r)
    p:release(r2)
    p:close()
  end)

  it("one failure fails one waiter; the others get later creations", function()
    local p, log = fake{ max = 3, create_time = 1, fail = function(n) return n == 1 end }
    local out = {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = sluice.spawn(function()
        local ok, r = pcall(p.acquire, p)
        out[i] = ok and ("got " .. r.id) or r
      end)
    end
    for i = 1, 3 do tasks[i]:await() end
    assert.same({ "create 1 failed", "got 2", "got 3" }, out)
    assert.same({ "create 1 failed @1", "create 2 @1", "create 3 @1" }, log)
    p:close(0)
  end)

  it("create_timeout cancels a slow creation", function()
    local p, log = fake{ max = 1, create_time = 10, create_timeout = 2 }
    local t0 = sluice.now()
    local e = error_of(p.acquire, p)
    assert.same({ "timeout", "pool: create timed out after 2 s" }, { e.kind, e.message })
    assert.equal(t0 + 2, sluice.now())
    assert.same({ size = 0, idle = 0, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.same({}, log)
    p:close()
  end)

  it("a create returning nil is a failure", function()
    local p = sluice.pool{ create = function() return nil end }
    local e = error_of(p.acquire, p)
    assert.same({ "invalid", "pool: create returned nil" }, { e.kind, e.message })
    p:close()
  end)
end)

describe("pool min and expiry", function()
  it("creates min resources in the background, and refills after a destroy", function()
    local p, log = fake{ max = 3, min = 2, create_time = 1 }
    assert.same({ size = 2, idle = 0, active = 0, pending_creates = 2, waiting = 0 }, fields(p))
    sluice.sleep(1.5)
    assert.same({ size = 2, idle = 2, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    local r = p:acquire()
    p:destroy(r)
    assert.same({ size = 2, idle = 1, active = 0, pending_creates = 1, waiting = 0 }, fields(p))
    sluice.sleep(1.5)
    assert.same({ "create 1 @1", "create 2 @1", "destroy 2 @1.5", "create 3 @2.5" }, log)
    p:close()
  end)

  it("idle_timeout evicts idle resources above min when they expire, unused pool or not", function()
    local p, log = fake{ max = 3, min = 1, idle_timeout = 10 }
    sluice.yield()
    local a, b, c = p:acquire(), p:acquire(), p:acquire()
    p:release(a)
    sluice.sleep(5)
    p:release(b)
    p:release(c)
    sluice.sleep(6)              -- a expired at 10 and went; b and c are idle 6 s
    local r = p:acquire()
    assert.equal(3, r.id)
    assert.same({ size = 2, idle = 1, active = 1, pending_creates = 0, waiting = 0 }, fields(p))
    p:release(r)
    sluice.sleep(20)             -- b expires at 15 (above min) and goes, c stays as min
    assert.same({ size = 1, idle = 1, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.same({ "create 1 @0", "create 2 @0", "create 3 @0", "destroy 1 @10", "destroy 2 @15" }, log)
    assert.equal(2, p:stats().evicted)
    p:close()
  end)

  it("max_lifetime destroys at release and at borrow", function()
    local p, log = fake{ max = 2, max_lifetime = 10 }
    local a, b = p:acquire(), p:acquire()
    p:release(a)
    sluice.sleep(10)
    p:release(b)                 -- b is 10 s old: destroyed; a too, evicted
    assert.same({ size = 0, idle = 0, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    local c = p:acquire()
    assert.equal(3, c.id)
    p:release(c)
    assert.same({ "create 1 @0", "create 2 @0", "destroy 2 @10", "destroy 1 @10", "create 3 @10" }, log)
    p:close()
  end)

  it("max_uses destroys a resource at the release that used it up", function()
    local p, log = fake{ max = 1, max_uses = 2 }
    p:release(p:acquire())
    p:release(p:acquire())
    local r = p:acquire()
    assert.equal(2, r.id)
    p:release(r)
    assert.same({ "create 1 @0", "destroy 1 @0", "create 2 @0" }, log)
    p:close()
  end)
end)

describe("pool validate", function()
  it("destroys an idle resource that fails validation and tries the next", function()
    local bad = {}
    local p, log = fake{ max = 3, validate = function(r)
      if r.id == 2 then error("broken") end
      return not bad[r.id]
    end }
    local a, b, c = p:acquire(), p:acquire(), p:acquire()
    p:release(a)
    p:release(b)
    p:release(c)
    bad[3] = true
    local r = p:acquire()        -- 3 is false, 2 raises, 1 is fine
    assert.equal(1, r.id)
    sluice.yield()               -- destroys run in the background
    assert.same({ "create 1 @0", "create 2 @0", "create 3 @0", "destroy 3 @0", "destroy 2 @0" }, log)
    p:release(r)
    p:close()
  end)

  it("validate_on_borrow = false skips it", function()
    local calls = 0
    local p = sluice.pool{ create = function() return {} end, validate = function() calls = calls + 1 return false end,
      validate_on_borrow = false }
    p:release(p:acquire())
    p:release(p:acquire())
    assert.equal(0, calls)
    p:close()
  end)
end)

describe("pool:release and pool:destroy misuse", function()
  it("refuses a resource not borrowed from this pool, changing nothing", function()
    local p = fake{ max = 2 }
    local other = fake{ max = 1 }
    local r, o = p:acquire(), other:acquire()
    local before = fields(p)
    for _, v in ipairs({ o, {}, 1, "x" }) do
      local e = error_of(p.release, p, v)
      assert.same({ "invalid", "pool:release: the resource is not borrowed from this pool" }, { e.kind, e.message })
    end
    assert.equal("pool:release: the resource is not borrowed from this pool", error_of(p.release, p).message)
    assert.equal("pool:destroy: the resource is not borrowed from this pool", error_of(p.destroy, p, o).message)
    p:release(r)
    assert.equal("pool:release: the resource is not borrowed from this pool", error_of(p.release, p, r).message)
    assert.same({ size = 1, idle = 1, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.same({ size = 1, idle = 0, active = 1, pending_creates = 0, waiting = 0 }, before)
    other:release(o)
    p:close()
    other:close()
  end)

  it("methods check self", function()
    local p = fake()
    for _, m in ipairs({ "acquire", "release", "destroy", "with", "close", "stats" }) do
      local e = error_of(p[m], {})
      assert.same({ "invalid", "pool:" .. m .. ": expected a pool (got table)" }, { e.kind, e.message })
    end
    assert.equal("pool: field 'size' is read-only", error_of(function() p.size = 3 end).message)
    p:close()
  end)
end)

describe("pool edge cases", function()
  it("a cancellation during validate puts the resource back", function()
    local p = sluice.pool{ create = function() return {} end, max = 1,
      validate = function() sluice.sleep(5) return true end }
    p:release(p:acquire())
    local t = sluice.spawn(function() return p:acquire() end)
    sluice.sleep(1)
    t:cancel()
    assert.equal("cancelled", error_of(t.await, t).kind)
    assert.same({ size = 1, idle = 1, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    p:close()
  end)

  it("close does not wait out a creation's backoff", function()
    local p, log = fake{ max = 1, fail = function() return true end }
    error_of(p.acquire, p)                 -- the next creation waits 0.1 s
    local w = sluice.spawn(function() return p:acquire() end)
    sluice.yield()
    local t0 = sluice.now()
    assert.is_true(p:close())
    assert.equal(t0, sluice.now())
    assert.equal("closed", error_of(w.await, w).kind)
    assert.same({ "create 1 failed @0" }, log)
  end)

  it("a wait where the task cannot yield is refused", function()
    local p = fake{ max = 1 }
    local r = p:acquire()
    local e
    table.sort({ 1, 2 }, function(x, y)
      e = e or error_of(p.acquire, p)
      return x < y
    end)
    assert.equal("pool:acquire: cannot block here (inside a C call such as a table.sort comparator " ..
      "or a string.gsub callback)", e.message)
    assert.equal(0, p.waiting)
    p:release(r)
    p:close()
  end)
end)

describe("pool:with", function()
  it("releases on return, destroys on error, releases on cancellation", function()
    local p, log = fake{ max = 1 }
    assert.same({ 1, "x" }, { p:with(function(r, x) return r.id, x end, "x") })
    assert.equal(1, p.idle)
    assert.equal("boom", error_of(p.with, p, function() error("boom", 0) end))
    assert.same({ size = 0, idle = 0, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    local t = sluice.spawn(function() p:with(function() sluice.sleep(10) end) end)
    sluice.sleep(1)
    t:cancel()
    pcall(t.await, t)
    assert.same({ size = 1, idle = 1, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.same({ "create 1 @0", "destroy 1 @0", "create 2 @0" }, log)
    assert.equal("pool:with: fn must be a function (got nil)", error_of(p.with, p).message)
    p:close()
  end)

  it("destroy_on_error = false releases on error", function()
    local p = fake{ max = 1, destroy_on_error = false }
    error_of(p.with, p, function() error("boom") end)
    assert.equal(1, p.idle)
    p:close()
  end)
end)

describe("pool:close", function()
  it("rejects waiters and new acquires with closed, waits for borrowed ones, destroys all", function()
    local p, log = fake{ max = 2 }
    local a, b = p:acquire(), p:acquire()
    p:release(b)
    p:release(p:acquire())
    local r = p:acquire()
    local w = sluice.spawn(function() return p:acquire() end)
    sluice.yield()
    local holder = sluice.spawn(function() sluice.sleep(3) p:release(a) p:release(r) end)
    local t0 = sluice.now()
    assert.is_true(p:close())
    assert.equal(t0 + 3, sluice.now())
    local e = error_of(w.await, w)
    assert.same({ "closed", "pool:acquire: the pool is closed" }, { e.kind, e.message })
    assert.equal("pool:acquire: the pool is closed", error_of(p.acquire, p).message)
    assert.same({ size = 0, idle = 0, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.is_true(p.closed)
    assert.same({ "create 1 @0", "create 2 @0", "destroy 1 @3", "destroy 2 @3" }, log)
    assert.is_true(p:close())    -- idempotent
    holder:await()
  end)

  it("with a timeout, destroys what is still borrowed and returns nil, \"timeout\"", function()
    local p, log = fake{ max = 2 }
    local a = p:acquire()
    local t0 = sluice.now()
    assert.same({ nil, "timeout" }, { p:close(2) })
    assert.equal(t0 + 2, sluice.now())
    assert.equal(0, p.size)
    p:release(a)                 -- accepted, nothing left to do
    assert.same({ "create 1 @0", "destroy 1 @2" }, log)
  end)

  it("waits for creations in flight and destroys what they make", function()
    local p, log = fake{ max = 2, min = 1, create_time = 2 }
    sluice.sleep(1)              -- the creation has begun
    assert.is_true(p:close())
    assert.same({ "create 1 @2", "destroy 1 @2" }, log)
    assert.equal(1, p:stats().destroyed)
  end)
end)

describe("pool:stats", function()
  it("counts creations, destructions, grants, waits and their times", function()
    local p = fake{ max = 1 }
    local r = p:acquire()
    local w = sluice.spawn(function() local x = p:acquire() p:release(x) end)
    sluice.sleep(2)
    p:release(r)
    w:await()
    local st = p:stats()
    assert.same({ 1, 0, 0, 2, 2, 0, 2 }, { st.created, st.destroyed, st.create_failures, st.acquired,
      st.waited, st.timeouts, st.wait_max })
    assert.same({ 1, 1, 0, 0 }, { st.size, st.idle, st.active, st.waiting })
    assert.equal(32, #st.histogram)
    p:close()
  end)
end)

describe("sluice.pool options", function()
  local f = function() end
  local cases = {
    { nil, "sluice.pool: opts must be a table (got nil)" },
    { {}, "sluice.pool: create must be a function (got nil)" },
    { { create = 1 }, "sluice.pool: create must be a function (got 1)" },
    { { create = f, destroy = "x" }, "sluice.pool: destroy must be a function (got \"x\")" },
    { { create = f, max = 0 }, "sluice.pool: max must be a positive integer (got 0)" },
    { { create = f, max = -1 }, "sluice.pool: max must be a positive integer (got -1)" },
    { { create = f, max = 1.5 }, "sluice.pool: max must be a positive integer (got 1.5)" },
    { { create = f, max = 0 / 0 }, "sluice.pool: max must be a positive integer (got nan)" },
    { { create = f, max = math.huge }, "sluice.pool: max must be a positive integer (got inf)" },
    { { create = f, max = "3" }, "sluice.pool: max must be a positive integer (got \"3\")" },
    { { create = f, min = -1 }, "sluice.pool: min must be a non-negative integer (got -1)" },
    { { create = f, min = 3, max = 2 }, "sluice.pool: min must be at most max (got min 3, max 2)" },
    { { create = f, acquire_timeout = 0 }, "sluice.pool: acquire_timeout must be a finite positive number (got 0)" },
    { { create = f, idle_timeout = math.huge }, "sluice.pool: idle_timeout must be a finite positive number (got inf)" },
    { { create = f, max_lifetime = -1 }, "sluice.pool: max_lifetime must be a finite positive number (got -1)" },
    { { create = f, create_timeout = 0 / 0 }, "sluice.pool: create_timeout must be a finite positive number (got nan)" },
    { { create = f, max_uses = 0 }, "sluice.pool: max_uses must be a positive integer (got 0)" },
    { { create = f, max_waiting = -1 }, "sluice.pool: max_waiting must be a non-negative integer (got -1)" },
    { { create = f, validate_on_borrow = 1 }, "sluice.pool: validate_on_borrow must be a boolean (got 1)" },
    { { create = f, validate_on_borrow = true }, "sluice.pool: validate_on_borrow needs a validate function" },
    { { create = f, destroy_on_error = "yes" }, "sluice.pool: destroy_on_error must be a boolean (got \"yes\")" },
    { { create = f, maxSize = 3 }, "sluice.pool: unknown option \"maxSize\"" },
  }
  it("are checked with exact messages", function()
    for _, c in ipairs(cases) do
      local e = error_of(sluice.pool, c[1])
      assert.same({ "invalid", c[2] }, { e.kind, e.message })
    end
  end)

  it("method arguments are checked before any change", function()
    local p = fake{ max = 1 }
    for _, v in ipairs({ -1, 0 / 0, math.huge, "1" }) do
      local e = error_of(p.acquire, p, v)
      assert.equal("invalid", e.kind)
      assert.equal("pool:acquire: timeout must be a finite non-negative number of seconds (got " ..
        (v == "1" and "\"1\"" or v ~= v and "nan" or v == math.huge and "inf" or "-1") .. ")", e.message)
      assert.equal("pool:close: timeout must be a finite non-negative number of seconds (got " ..
        (v == "1" and "\"1\"" or v ~= v and "nan" or v == math.huge and "inf" or "-1") .. ")",
        error_of(p.close, p, v).message)
    end
    assert.same({ size = 0, idle = 0, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    assert.is_false(p.closed)
    p:close()
  end)

  it("takes the seed's options: max, min, acquire_timeout, idle_timeout, max_lifetime, validate_on_borrow", function()
    local alive = {}
    local n = 0
    local p = sluice.pool{
      create = function() n = n + 1 alive[n] = true return { id = n } end,
      destroy = function(r) alive[r.id] = nil end,
      validate = function(r) return alive[r.id] end,
      max = 10, min = 2, acquire_timeout = 30, idle_timeout = 60, max_lifetime = 3600,
      validate_on_borrow = true,
    }
    sluice.yield()
    assert.same({ size = 2, idle = 2, active = 0, pending_creates = 0, waiting = 0 }, fields(p))
    local r = p:acquire()
    p:release(r)
    p:close()
    assert.same({}, alive)
  end)
end)

describe("pool eviction timers", function()
  it("do not keep a finished program alive", function()
    local BIN = os.getenv("SLUICE_BIN") or "build/sluice"
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write([[
local sluice = require "sluice"
local p = sluice.pool{ create = function() return {} end, idle_timeout = 100, max_lifetime = 1000 }
p:release(p:acquire())
print("idle", p.idle)
]])
    f:close()
    local t0 = sluice.uv.hrtime()
    local pipe = assert(io.popen("'" .. BIN .. "' " .. path .. " 2>&1; echo $?"))
    local out = pipe:read("*a")
    pipe:close()
    os.remove(path)
    assert.equal("idle\t1\n0\n", out)
    assert.is_true((sluice.uv.hrtime() - t0) / 1e9 < 5)   -- not 100 s
  end)
end)
