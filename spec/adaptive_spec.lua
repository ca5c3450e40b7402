-- sluice.adaptive: the AIMD trajectory under scripted successes and
-- failures, one decrease per window, queued waiters kept across a
-- decrease, growth waking waiters at once, the app-limited rule, target
-- latency, gradient mode, clamping, cancellation (counted neither way),
-- errors passed through, drive = semaphore or limit, argument checks.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of = util.tracer, util.error_of

-- An adaptive limit whose changes are logged as "time:new" relative to t0.
local function logged(opts, t0)
  local changes = {}
  opts.on_change = function(old, new)
    changes[#changes + 1] = string.format("%g:%d", sluice.now() - t0, new)
  end
  return sluice.adaptive(opts), changes
end

-- `workers` tasks call a:run over and over until `calls` calls have
-- started; call i sleeps latency(i) seconds and fails if fails[i].
local function load(a, workers, calls, fails, latency)
  local n = 0
  sluice.scope(function(s)
    for _ = 1, workers do
      s:spawn(function()
        while n < calls do
          pcall(a.run, a, function()
            n = n + 1
            local i = n
            sluice.sleep(latency and latency(i) or 1)
            if fails[i] then error("fail " .. i, 0) end
          end)
        end
      end)
    end
  end)
end

describe("sluice.adaptive", function()
  it("AIMD: +increase per window of successes, x decrease on a failure, once per window", function()
    local t0 = sluice.now()
    local a, changes = logged({ initial = 4, min = 2, max = 8 }, t0)
    assert.same({ 4, 0, 0 }, { a.limit, a.inflight, a.waiting })
    -- calls 20 and 21 end in the same window: only 20 decreases the limit;
    -- 40 decreases it again from where it had grown back to.
    load(a, 10, 60, { [20] = true, [21] = true, [40] = true })
    assert.same({ "2:5", "3:6", "4:7", "5:3", "6:4", "7:5", "8:6", "9:3", "10:4", "12:5", "13:6" }, changes)
    local st = a:stats()
    assert.same({ limit = 6, successes = 62, failures = 3, decreases = 2, cancelled = 0 },
      { limit = st.limit, successes = st.successes, failures = st.failures, decreases = st.decreases,
        cancelled = st.cancelled })
    assert.equal(t0 + 14, sluice.now())
  end)

  it("AIMD adds increase per window of successes, not per success", function()
    -- with increase = 2 the limit grows by about 2 per window (the first
    -- call of the first window found the limit unused)
    local t0 = sluice.now()
    local a, changes = logged({ initial = 4, max = 12, increase = 2 }, t0)
    load(a, 12, 30, {})
    assert.same({ "1:5", "2:6", "2:7", "3:8", "4:9", "4:10", "5:11", "5:12" }, changes)
  end)

  it("does not grow while the limit is not in use (inflight * 2 < limit)", function()
    local a = sluice.adaptive { initial = 10, max = 20 }
    for _ = 1, 50 do a:run(sluice.sleep, 0.1) end   -- one at a time
    assert.equal(10, a.limit)
    assert.equal(50, a:stats().successes)
  end)

  it("keeps every queued waiter across a decrease, in FIFO order", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local a = sluice.adaptive { initial = 2, min = 1, max = 4 }
    local ts = {}
    for i = 1, 6 do
      ts[i] = sluice.spawn(function()
        return pcall(a.run, a, function()
          log(i .. " starts at " .. sluice.now() - t0)
          sluice.sleep(1)
          if i == 1 then error("overloaded", 0) end
        end)
      end)
    end
    sluice.yield()
    assert.same({ 2, 2, 4 }, { a.limit, a.inflight, a.waiting })
    for i = 1, 6 do ts[i]:await() end
    -- 1 fails at 1: the limit halves to 1 before 1's place is given
    -- back; 2 (same window) is ignored; 3 runs alone and its success
    -- makes it 2: 4 and 5 start together.  No waiter is lost.
    assert.same({ "1 starts at 0", "2 starts at 0", "3 starts at 1", "4 starts at 2",
                  "5 starts at 2", "6 starts at 3" }, trace)
    assert.equal(3, a.limit)
    assert.same({ 0, 0 }, { a.inflight, a.waiting })
  end)

  it("growth wakes waiters at once; a.limit = n sets the limit by hand", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local a, changes = logged({ initial = 1, max = 5 }, t0)
    local ts = {}
    for i = 1, 4 do
      ts[i] = sluice.spawn(function()
        a:run(function()
          log(i .. " starts at " .. sluice.now() - t0)
          sluice.sleep(10)
        end)
      end)
    end
    sluice.sleep(1)
    assert.same({ 1, 1, 3 }, { a.limit, a.inflight, a.waiting })
    a.limit = 4
    sluice.yield()
    assert.same({ 4, 4, 0 }, { a.limit, a.inflight, a.waiting })
    for i = 1, 4 do ts[i]:await() end
    assert.same({ "1 starts at 0", "2 starts at 1", "3 starts at 1", "4 starts at 1" }, trace)
    assert.same({ "1:4" }, changes)          -- then 4 successes: 4.9, still 4
  end)

  it("a latency above target counts as a failure", function()
    local t0 = sluice.now()
    local a, changes = logged({ initial = 4, max = 8, target = 1.5 }, t0)
    -- calls 1..8 take 1 s, 9 takes 2 s (too slow), the rest 1 s
    load(a, 8, 16, {}, function(i) return i == 9 and 2 or 1 end)
    assert.same({ "2:5", "3:6", "4:3" }, changes)
    assert.same({ 1, 1 }, { a:stats().failures, a:stats().decreases })
  end)

  it("clamps to [min, max]", function()
    local t0 = sluice.now()
    local a, changes = logged({ initial = 3, min = 2, max = 4, decrease = 0.1 }, t0)
    load(a, 4, 30, { [3] = true })
    assert.same({ "1:2", "3:3", "4:4" }, changes)
    assert.equal(4, a.limit)
    assert.equal(4, a:stats().estimate)
  end)

  it("gradient mode grows on steady latency and lowers the limit when latency rises", function()
    local t0 = sluice.now()
    local a, changes = logged({ mode = "gradient", initial = 4, max = 12 }, t0)
    local lat, stop = 1, false
    sluice.scope(function(s)
      for _ = 1, 12 do
        s:spawn(function()
          while not stop do a:run(function() sluice.sleep(lat) end) end
        end)
      end
      sluice.sleep(12)
      lat = 4                                -- the backend slows down 4 times
      sluice.sleep(40)
      stop = true
    end)
    -- after each round of `limit` calls: estimate * 0.8 + (estimate *
    -- gradient + 4) * 0.2, gradient = min(1, 1.5 * 1 s / mean latency):
    -- +0.8 a round while latency is steady (4.8, 5.6, 6.4, ... 12), then
    -- at 4 s gradient 0.5: 0.9 * estimate + 0.8 every 4 s (11.6, 11.24,
    -- 10.92, ..., 9.9 at 40 s), towards 8
    assert.same({ "2:5", "3:6", "4:7", "5:8", "7:9", "8:10", "9:11", "10:12",
                  "16:11", "24:10", "40:9" }, changes)
    assert.equal(9, a.limit)
    assert.equal(1, a:stats().min_latency)
  end)

  it("gradient mode learns a lasting new baseline within two long windows", function()
    local a = sluice.adaptive { mode = "gradient", initial = 2, max = 4, long_window = 10 }
    local lat = 1
    local stop = false
    sluice.scope(function(s)
      for _ = 1, 4 do
        s:spawn(function()
          while not stop do a:run(function() sluice.sleep(lat) end) end
        end)
      end
      sluice.sleep(5)
      assert.equal(1, a:stats().min_latency)
      lat = 3
      sluice.sleep(14)                       -- still within the window after the change
      assert.equal(1, a:stats().min_latency)
      sluice.sleep(12)                       -- two windows later: 3 s is the new normal
      assert.equal(3, a:stats().min_latency)
      stop = true
    end)
  end)

  it("an error in on_change comes out of run after the place is given back", function()
    local a = sluice.adaptive { initial = 1, max = 4, on_change = function() error("hook failed", 0) end }
    assert.equal("hook failed", error_of(a.run, a, function() return 1 end))   -- 1 -> 2 calls the hook
    assert.same({ 2, 0, 0 }, { a.limit, a.inflight, a.waiting })
    -- fn's own error wins over the hook's: errors pass through unchanged
    assert.equal("boom", error_of(a.run, a, error, "boom", 0))                  -- 2 -> 1
    assert.same({ 1, 0, 0 }, { a.limit, a.inflight, a.waiting })
  end)

  it("a cancelled call counts neither as success nor failure and frees its place", function()
    local a = sluice.adaptive { initial = 1, max = 4 }
    local running = sluice.spawn(function() a:run(sluice.sleep, 10) end)
    local queued = sluice.spawn(function() a:run(sluice.sleep, 10) end)
    sluice.sleep(1)
    assert.same({ 1, 1 }, { a.inflight, a.waiting })
    queued:cancel()
    sluice.yield()
    assert.same({ 1, 0 }, { a.inflight, a.waiting })
    running:cancel()
    sluice.yield()
    assert.same({ 0, 0 }, { a.inflight, a.waiting })
    running:result(); queued:result()
    local st = a:stats()
    assert.same({ 1, 0, 0, 1 }, { st.limit, st.successes, st.failures, st.cancelled })
    assert.equal(5, a:run(function() return 5 end))   -- the permit came back
  end)

  it("passes results and errors through unchanged", function()
    local a = sluice.adaptive()
    local r = { a:run(function(x, y) return y, x, nil end, 1, 2) }
    assert.same({ 2, 1 }, r)
    local e = { "mine" }
    assert.equal(e, error_of(a.run, a, function() error(e) end))
    local st = a:stats()
    assert.same({ 5, 1, 1 }, { st.limit, st.successes, st.failures })
  end)

  it("drive = semaphore: sets that semaphore's permits and does not gate run", function()
    local sem = sluice.semaphore(1)
    local a, changes = logged({ initial = 2, min = 1, max = 3, drive = sem }, sluice.now())
    assert.equal(2, sem.permits)
    sem:acquire()
    pcall(a.run, a, error, "x", 0)
    sem:release()
    assert.same({ 1, 1 }, { a.limit, sem.permits })
    assert.same({ "0:1" }, changes)
    assert.equal(0, a.waiting)
  end)

  it("drive = limit: sets the limit's concurrency; calls queued there follow it", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local lim = sluice.limit(1)
    local a = sluice.adaptive { initial = 1, max = 3, drive = lim }
    assert.equal(1, lim.concurrency)
    local hs = {}
    for i = 1, 6 do
      hs[i] = lim(function()
        return a:run(function()
          log(i .. "@" .. sluice.now() - t0)
          sluice.sleep(1)
        end)
      end)
    end
    for i = 1, 6 do hs[i]:await() end
    assert.same({ "1@0", "2@1", "3@1", "4@2", "5@2", "6@3" }, trace)
    assert.equal(3, lim.concurrency)
    assert.equal(3, a.limit)
  end)

  it("run cannot block where the task cannot yield", function()
    local a = sluice.adaptive()
    local err
    table.sort({ 2, 1 }, function(x, y)
      err = select(2, pcall(a.run, a, print))
      return x < y
    end)
    assert.equal("adaptive:run: cannot block here (inside a C call such as a table.sort comparator " ..
      "or a string.gsub callback)", err.message)
    assert.same({ 0, 0 }, { a.inflight, a:stats().successes })
  end)

  it("rejects bad options with exact messages", function()
    local function msg(opts) return error_of(sluice.adaptive, opts).message end
    for _, name in ipairs { "initial", "min", "max" } do
      for _, v in ipairs { { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" },
                           { math.huge, "inf" }, { "2", "\"2\"" } } do
        assert.equal("adaptive: " .. name .. " must be a positive integer (got " .. v[2] .. ")",
          msg { [name] = v[1] })
      end
    end
    for _, name in ipairs { "increase", "target", "tolerance", "long_window" } do
      for _, v in ipairs { { 0, "0" }, { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { {}, "table" } } do
        assert.equal("adaptive: " .. name .. " must be a finite positive number (got " .. v[2] .. ")",
          msg { [name] = v[1] })
      end
    end
    for _, v in ipairs { { 0, "0" }, { 1, "1" }, { 1.5, "1.5" }, { 0 / 0, "nan" } } do
      assert.equal("adaptive: decrease must be a number between 0 and 1 (exclusive) (got " .. v[2] .. ")",
        msg { decrease = v[1] })
    end
    assert.equal("adaptive: smoothing must be a number in (0, 1] (got 0)", msg { smoothing = 0 })
    assert.equal("adaptive: queue_size must be a finite non-negative number (got -1)", msg { queue_size = -1 })
    assert.equal("adaptive: max must be at least min (5) (got 4)", msg { min = 5, max = 4 })
    assert.equal("adaptive: initial must be from min to max (2 to 4) (got 5)", msg { min = 2, max = 4, initial = 5 })
    assert.equal("adaptive: mode must be \"aimd\" or \"gradient\" (got \"vegas\")", msg { mode = "vegas" })
    assert.equal("adaptive: drive must be a semaphore or a limit (got table)", msg { drive = {} })
    assert.equal("adaptive: drive must be a semaphore or a limit (got cdata)", msg { drive = sluice.mutex() })
    assert.equal("adaptive: on_change must be a function (got 5)", msg { on_change = 5 })
    assert.equal("adaptive: opts must be a table (got 5)", error_of(sluice.adaptive, 5).message)
    assert.equal("adaptive: unknown option \"inital\"", msg { inital = 5 })
    assert.equal(3, sluice.adaptive { min = 1, max = 3 }.limit)   -- initial 10 clamped
  end)

  it("methods check self; fields reject bad values and leave the limit unchanged", function()
    local a = sluice.adaptive { initial = 3, min = 2, max = 5 }
    assert.equal("adaptive:run: expected an adaptive limit (got table)", error_of(a.run, {}, print).message)
    assert.equal("adaptive:run: expected an adaptive limit (got nil)", error_of(a.run).message)
    assert.equal("adaptive:stats: expected an adaptive limit (got number)", error_of(a.stats, 1).message)
    assert.equal("adaptive:run: fn must be a function (got nil)", error_of(a.run, a).message)
    for _, v in ipairs { { 1, "1" }, { 6, "6" }, { 2.5, "2.5" }, { 0 / 0, "nan" }, { "3", "\"3\"" } } do
      assert.equal("adaptive: limit must be an integer from 2 to 5 (got " .. v[2] .. ")",
        error_of(function() a.limit = v[1] end).message)
    end
    assert.equal("adaptive: field 'waiting' is read-only", error_of(function() a.waiting = 1 end).message)
    assert.equal("adaptive: field 'x' is not settable", error_of(function() a.x = 1 end).message)
    assert.equal(3, a.limit)
    assert.equal("adaptive aimd (limit 3, 0 running, 0 waiting)", tostring(a))
  end)
end)

---------------------------------------------------------------- property

-- Many seeded random schedules of calls (random lengths, some failing),
-- cancellations (waiting or running), limits set by hand and time
-- passing, in both modes, checked against what the limit promises:
-- - calls start in the order they called run (FIFO, no barging), or in
--   the same instant (granted together, resumed in another order);
-- - a call starts only while fewer calls run than some limit in force
--   since it or the oldest running call came (a decrease never stops a
--   running call, and nothing starts above the limit);
-- - the limit stays in [min, max], and is the semaphore's permits;
-- - errors come back unchanged; no waiter is ever stranded: every call
--   not cancelled ends, and then nothing runs or waits;
-- - successes and failures are counted as the calls ended (latency above
--   target is a failure; a cancelled call is neither).
-- SLUICE_PROPERTY_SCHEDULES and SLUICE_PROPERTY_SEED as for the others.
local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")

local DURATIONS = { 0.5, 1, 1, 2, 3 }
local ADVANCES = { 0.25, 0.5, 1, 2 }
local STEPS = 20

local function adaptive_schedule(seed)
  local r = property.prng(seed)
  local fmt = string.format
  local problems = {}
  local function bad(...) problems[#problems + 1] = fmt(...) end
  local lo = r(3)
  local hi = lo + r(4) - 1
  local opts = { min = lo, max = hi, initial = lo + r(hi - lo + 1) - 1,
                 mode = r(2) == 1 and "aimd" or "gradient" }
  if r(3) == 1 then opts.target = ({ 1, 1.5, 2.5 })[r(3)] end
  if r(2) == 1 then opts.decrease = 0.7 end

  local seq, hist = 0, {}            -- hist: { seq =, limit = } for every change
  local a
  opts.on_change = function(_, new)
    seq = seq + 1
    hist[#hist + 1] = { seq = seq, limit = new }
    if new < lo or new > hi then bad("limit %d outside [%d, %d]", new, lo, hi) end
  end
  a = sluice.adaptive(opts)
  seq = seq + 1
  hist[1] = { seq = seq, limit = opts.initial }

  local running = {}                 -- call -> seq when it started
  local nrunning, entered = 0, 0
  local started_at = {}              -- call -> the time it started
  local tasks, cancelled, oks, fails = {}, {}, 0, 0
  local function limit_since(s)      -- the highest limit in force since seq s
    local best = 0
    for i = #hist, 1, -1 do
      local h = hist[i]
      if h.limit > best then best = h.limit end
      if h.seq <= s then break end
    end
    return best
  end

  local function spawn_call()
    local d, fails_it = DURATIONS[r(5)], r(4) == 1
    local t
    t = sluice.spawn(function()
      entered = entered + 1
      local me = entered
      seq = seq + 1
      local came = seq
      local err = { "call " .. me }
      local ok, e = pcall(a.run, a, function()
        seq = seq + 1
        started_at[me] = sluice.now()
        local oldest = came
        for _, s in pairs(running) do if s < oldest then oldest = s end end
        if nrunning >= limit_since(oldest) then
          bad("call %d started with %d running, limit %d", me, nrunning, limit_since(oldest))
        end
        running[me], nrunning = seq, nrunning + 1
        local t0 = sluice.now()
        local sok, serr = pcall(sluice.sleep, d)
        running[me], nrunning = nil, nrunning - 1
        if not sok then error(serr, 0) end
        if fails_it or (opts.target and sluice.now() - t0 > opts.target) then fails = fails + 1
        else oks = oks + 1 end
        if fails_it then error(err, 0) end
        return me
      end)
      if ok then
        if e ~= me then bad("call %d returned %s", me, tostring(e)) end
      elseif sluice.is_error(e, "cancelled") then
        if not cancelled[t] then bad("call %d cancelled by nobody", me) end
        error(e, 0)
      elseif e ~= err then
        bad("call %d raised %s, not its own error", me, tostring(e))
      end
    end)
    tasks[#tasks + 1] = t
  end

  for _ = 1, STEPS do
    local op = r(10)
    if op <= 4 then
      spawn_call()
    elseif op == 5 then
      local t = tasks[r(#tasks + 1)]
      if t and t.status ~= "done" and t.status ~= "cancelled" and t.status ~= "failed" then
        cancelled[t] = true
        t:cancel()
      end
    elseif op == 6 then
      a.limit = lo + r(hi - lo + 1) - 1
    elseif op <= 9 then
      sluice.sleep(ADVANCES[r(4)])
    else
      sluice.yield()
    end
    if a.sem.permits ~= a.limit then bad("permits %d, limit %d", a.sem.permits, a.limit) end
  end
  -- every call not cancelled ends: at most 20 calls of 3 s, one at a time
  sluice.sleep(STEPS * 3 + 1)
  for _, t in ipairs(tasks) do
    if t.status ~= "done" and t.status ~= "cancelled" then bad("a call is still %s", t.status) end
    t:result()
  end
  -- FIFO: a call that came before another started no later, or never
  for i = 1, entered do
    for j = i + 1, entered do
      if started_at[i] and started_at[j] and started_at[j] < started_at[i] then
        bad("call %d started at %g, before call %d (at %g)", j, started_at[j], i, started_at[i])
      end
    end
  end
  local st = a:stats()
  if st.inflight ~= 0 or st.waiting ~= 0 then bad("%d running, %d waiting at the end", st.inflight, st.waiting) end
  if st.successes ~= oks or st.failures ~= fails then
    bad("counted %d successes and %d failures, expected %d and %d", st.successes, st.failures, oks, fails)
  end
  return problems
end

describe("sluice.adaptive property", function()
  property.batches(it, "holds its promises over random schedules (seeds %d-%d)", adaptive_schedule)
end)

describe("examples/aimd.lua", function()
  local BIN = os.getenv("SLUICE_BIN") or "build/sluice"
  local function run(args)
    local p = assert(io.popen("'" .. BIN .. "' examples/aimd.lua " .. args .. " 2>&1; echo \"rc=$?\""))
    local out = p:read("*a")
    p:close()
    return out
  end

  it("converges near the backend's knee, repeatably, and writes a plot", function()
    local svg = os.tmpname()
    local out = run(svg)
    assert.truthy(out:find("mean limit over the last 15 s: 23.5 (knee 20); served 11648, 0 errors (503)", 1, true), out)
    assert.truthy(out:find("   30s     29  ( 16- 29)     61 ms       385         0", 1, true), out)
    assert.truthy(out:find("plot written to " .. svg, 1, true), out)
    assert.truthy(out:find("rc=0\n$"), out)
    assert.equal(out, run(svg))
    local f = assert(io.open(svg, "rb"))
    local text = f:read("*a")
    f:close()
    os.remove(svg)
    assert.truthy(text:find("^<svg "), text)
    assert.truthy(text:find("</svg>\n$"), text)
  end)

  it("runs the gradient mode too and rejects a bad option", function()
    assert.truthy(run("--mode gradient"):find("mean limit over the last 15 s: 34.0 (knee 20); served 12043, 0 errors (503)", 1, true))
    assert.equal("usage: sluice examples/aimd.lua [--mode aimd|gradient] [--seconds N] [plot.svg]\nrc=1\n",
      run("--mode vegas"))
  end)
end)
