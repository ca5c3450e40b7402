-- sluice.breaker: closed -> open -> half_open -> closed over a rolling
-- window, fail-fast errors, trial calls, cancellation, generations,
-- failure_if, on_change, stats, arguments.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, msg_of = util.tracer, util.msg_of

-- Runs fn on a virtual clock of its own, starting at 0.
local function virtual(fn) return sluice.run({ clock = "virtual" }, fn) end

local function pack(...) return { n = select("#", ...), ... } end

local function ok_fn(...) return ... end
local function fail_fn(e) error(e or "down", 0) end

-- A breaker whose state changes are logged as "from>to@time".
local function logged(opts, log)
  opts.on_change = function(from, to) log(from .. ">" .. to .. "@" .. sluice.now()) end
  return sluice.breaker(opts)
end

-- b:call's outcome as a string: "ok", the error, or "open: message".
local function outcome(b, fn, ...)
  local ok, err = pcall(b.call, b, fn, ...)
  if ok then return "ok" end
  if sluice.is_error(err, "open") then return "open: " .. err.message end
  return tostring(err)
end

describe("sluice.breaker", function()
  it("passes calls, their results and their errors through unchanged while closed", function()
    local b = sluice.breaker()
    assert.equal("closed", b.state)
    assert.same({ 1, nil, 3, n = 3 }, pack(b:call(ok_fn, 1, nil, 3)))
    local e = { code = 500 }
    local ok, err = pcall(b.call, b, fail_fn, e)
    assert.is_false(ok)
    assert.equal(e, err)
    assert.equal("closed", b.state)
    local s = b:stats()
    assert.equal(1, s.failures)
    assert.equal("closed", s.state)
  end)

  it("opens when min_calls calls in the window fail at failure_ratio or more", function()
    virtual(function()
      local trace, log = tracer()
      local b = logged({ min_calls = 4, failure_ratio = 0.5 }, log)
      assert.equal("ok", outcome(b, ok_fn))
      assert.equal("down", outcome(b, fail_fn))
      sluice.sleep(1)
      assert.equal("ok", outcome(b, ok_fn))         -- 1 of 3 failed
      assert.equal("closed", b.state)
      sluice.sleep(1)
      assert.equal("down", outcome(b, fail_fn))     -- 2 of 4: opens
      assert.same({ "closed>open@2" }, trace)
      assert.equal("open", b.state)
      assert.equal("breaker (open, 2 of 4 calls failed in the window)", tostring(b))
    end)
  end)

  it("stays closed below min_calls, however many of them fail", function()
    local b = sluice.breaker { min_calls = 3, failure_ratio = 1 }
    assert.equal("down", outcome(b, fail_fn))
    assert.equal("down", outcome(b, fail_fn))
    assert.equal("closed", b.state)
    assert.equal("ok", outcome(b, ok_fn))
    assert.equal("down", outcome(b, fail_fn))       -- 3 of 4 < 1
    assert.equal("closed", b.state)
  end)

  it("forgets calls older than the window, a bucket (window / 10) at a time", function()
    virtual(function()
      local b = sluice.breaker { min_calls = 3, failure_ratio = 1, window = 10 }
      assert.equal("down", outcome(b, fail_fn))     -- bucket [0, 1)
      sluice.sleep(5)
      assert.equal("down", outcome(b, fail_fn))     -- bucket [5, 6)
      sluice.sleep(5)                               -- now 10: [0, 1) has left the window
      assert.same({ 1, 1 }, { b:stats().window_calls, b:stats().window_failures })
      assert.equal("down", outcome(b, fail_fn))
      assert.equal("closed", b.state)               -- 2 calls in the window
      sluice.sleep(4.5)                             -- 14.5: the buckets of 5 and 10 remain
      assert.equal("down", outcome(b, fail_fn))
      assert.equal("open", b.state)
    end)
  end)

  it("fails fast while open with an error of kind open saying for how long", function()
    virtual(function()
      local b = sluice.breaker { min_calls = 1, cooldown = 5 }
      outcome(b, fail_fn)
      sluice.sleep(1.5)
      local called = false
      local ok, err = pcall(b.call, b, function() called = true end)
      assert.is_false(ok)
      assert.is_false(called)
      assert.equal("open", err.kind)
      assert.equal("breaker:call: breaker is open (half-open in 3.5 s)", err.message)
      assert.equal("breaker:call: breaker is open (half-open in 3.5 s)", tostring(err))
      assert.equal(3.5, err.retry_in)
      assert.equal("string", type(err.traceback))
      assert.equal(1, b:stats().rejected)
      assert.equal(1.5, sluice.now())                -- failing fast takes no time
    end)
  end)

  it("goes half-open after the cooldown; a trial success closes it", function()
    virtual(function()
      local trace, log = tracer()
      local b = logged({ min_calls = 1, cooldown = 5 }, log)
      outcome(b, fail_fn)
      sluice.sleep(5)
      assert.equal("half_open", b.state)            -- read at 5: the move is made then
      assert.equal("ok", outcome(b, ok_fn))
      assert.equal("closed", b.state)
      assert.same({ "closed>open@0", "open>half_open@5", "half_open>closed@5" }, trace)
      assert.same({ 0, 0 }, { b:stats().window_calls, b:stats().window_failures })   -- a fresh window
    end)
  end)

  it("lets at most half_open trial calls through; the others fail fast", function()
    virtual(function()
      local trace, log = tracer()
      local b = logged({ min_calls = 1, cooldown = 1, half_open = 2 }, log)
      outcome(b, fail_fn)
      sluice.sleep(1)
      local slow = function(s) sluice.sleep(s) return s end
      local t1 = sluice.spawn(b.call, b, slow, 2)
      local t2 = sluice.spawn(b.call, b, slow, 3)
      sluice.yield()
      assert.equal("open: breaker:call: breaker is half-open (2 of 2 trial calls admitted)", outcome(b, ok_fn))
      assert.equal(2, t1:await())
      assert.equal("half_open", b.state)            -- one trial success of two
      assert.equal(3, t2:await())
      assert.equal("closed", b.state)
      assert.same({ "closed>open@0", "open>half_open@1", "half_open>closed@4" }, trace)
    end)
  end)

  it("re-opens on a trial failure, for a whole cooldown again", function()
    virtual(function()
      local trace, log = tracer()
      local b = logged({ min_calls = 1, cooldown = 2 }, log)
      outcome(b, fail_fn)
      sluice.sleep(2)
      assert.equal("still down", outcome(b, fail_fn, "still down"))
      assert.equal("open", b.state)
      assert.equal("open: breaker:call: breaker is open (half-open in 2 s)", outcome(b, ok_fn))
      sluice.sleep(2)
      assert.equal("ok", outcome(b, ok_fn))
      assert.same({ "closed>open@0", "open>half_open@2", "half_open>open@2",
        "open>half_open@4", "half_open>closed@4" }, trace)
      assert.equal(2, b:stats().opened)
    end)
  end)

  it("counts a cancelled call as neither success nor failure; a cancelled trial frees its slot", function()
    virtual(function()
      local b = sluice.breaker { min_calls = 1, cooldown = 1 }
      local t = sluice.spawn(b.call, b, sluice.sleep, 10)
      sluice.sleep(1)
      t:cancel()
      pcall(t.await, t)
      assert.equal("closed", b.state)
      local s = b:stats()
      assert.same({ 0, 0, 0, 1 }, { s.window_calls, s.successes, s.failures, s.cancelled })
      outcome(b, fail_fn)                            -- opens at 1
      sluice.sleep(1)
      local trial = sluice.spawn(b.call, b, sluice.sleep, 10)
      sluice.yield()
      assert.equal("open: breaker:call: breaker is half-open (1 of 1 trial call admitted)", outcome(b, ok_fn))
      trial:cancel()
      pcall(trial.await, trial)
      assert.equal("half_open", b.state)
      assert.equal("ok", outcome(b, ok_fn))          -- the slot was given back
      assert.equal("closed", b.state)
    end)
  end)

  it("ignores the outcome of a call begun before the last state change", function()
    virtual(function()
      local trace, log = tracer()
      local b = logged({ min_calls = 2, cooldown = 10 }, log)
      local slow = sluice.spawn(b.call, b, function() sluice.sleep(3) error("late", 0) end)
      sluice.yield()
      outcome(b, fail_fn)
      outcome(b, fail_fn)                            -- opens at 0
      pcall(slow.await, slow)                        -- fails at 3, while open
      assert.equal("open: breaker:call: breaker is open (half-open in 7 s)", outcome(b, ok_fn))
      assert.same({ "closed>open@0" }, trace)
      assert.equal(3, b:stats().failures)            -- counted in the totals only
    end)
  end)

  it("counts errors failure_if rejects as successes", function()
    local b = sluice.breaker { min_calls = 1, failure_if = function(e) return e ~= "not found" end }
    assert.equal("not found", outcome(b, fail_fn, "not found"))
    assert.equal("closed", b.state)
    assert.equal(1, b:stats().successes)
    assert.equal("down", outcome(b, fail_fn))
    assert.equal("open", b.state)
  end)

  it("has documented defaults: ratio 0.5 of 10 calls in 10 s, cooldown 5 s, 1 trial", function()
    virtual(function()
      local b = sluice.breaker()
      for _ = 1, 5 do outcome(b, ok_fn) end
      for _ = 1, 4 do outcome(b, fail_fn) end
      assert.equal("closed", b.state)                -- 9 calls
      outcome(b, fail_fn)
      assert.equal("open", b.state)                  -- 5 of 10
      sluice.sleep(4.75)
      assert.equal("open", b.state)
      sluice.sleep(0.25)
      assert.equal("half_open", b.state)
      local t = sluice.spawn(b.call, b, sluice.sleep, 1)
      sluice.yield()
      assert.equal("open: breaker:call: breaker is half-open (1 of 1 trial call admitted)", outcome(b, ok_fn))
      t:await()
      assert.equal("closed", b.state)
    end)
  end)

  it("keeps its fields read-only and checks self", function()
    local b = sluice.breaker()
    assert.equal('breaker: "state" cannot be set', msg_of(function() b.state = "open" end))
    assert.equal("closed", b.state)
    assert.equal("breaker:call: expected a breaker (got nil)", msg_of(b.call, nil, ok_fn))
    assert.equal("breaker:call: expected a breaker (got table)", msg_of(b.call, {}, ok_fn))
    assert.equal("breaker:stats: expected a breaker (got number)", msg_of(b.stats, 1))
    assert.equal("breaker:call: fn must be a function (got nil)", msg_of(b.call, b))
    assert.equal(0, b:stats().successes + b:stats().failures + b:stats().rejected)
  end)

  it("rejects bad options with exact messages", function()
    local B = sluice.breaker
    assert.equal("sluice.breaker: opts must be a table (got 1)", msg_of(B, 1))
    assert.equal('sluice.breaker: unknown option "ratio"', msg_of(B, { ratio = 0.5 }))
    for _, v in ipairs { 0, -1, 1.5, 0 / 0, "x" } do
      local shown = v ~= v and "nan" or (type(v) == "string" and '"x"' or tostring(v))
      assert.equal("sluice.breaker: failure_ratio must be a number in (0, 1] (got " .. shown .. ")",
        msg_of(B, { failure_ratio = v }))
    end
    for _, v in ipairs { 0, -1, 1.5, math.huge } do
      local shown = v == math.huge and "inf" or tostring(v)
      assert.equal("sluice.breaker: min_calls must be a positive integer (got " .. shown .. ")",
        msg_of(B, { min_calls = v }))
      assert.equal("sluice.breaker: half_open must be a positive integer (got " .. shown .. ")",
        msg_of(B, { half_open = v }))
    end
    for _, v in ipairs { 0, -1, math.huge, 0 / 0 } do
      local shown = v ~= v and "nan" or (v == math.huge and "inf" or tostring(v))
      assert.equal("sluice.breaker: window must be a finite positive number (got " .. shown .. ")",
        msg_of(B, { window = v }))
      assert.equal("sluice.breaker: cooldown must be a finite positive number (got " .. shown .. ")",
        msg_of(B, { cooldown = v }))
    end
    assert.equal("sluice.breaker: on_change must be a function (got boolean)", msg_of(B, { on_change = true }))
    assert.equal("sluice.breaker: failure_if must be a function (got 1)", msg_of(B, { failure_if = 1 }))
  end)
end)

-- Randomized concurrent callers: the breaker never runs a call while
-- open, never runs more than half_open trials at once, moves only along
-- closed -> open -> half_open -> closed | open, and accounts for every
-- call exactly once.
describe("sluice.breaker under random schedules", function()
  local property = require "spec.support.property"
  local NEXT = { closed = { open = true }, open = { half_open = true },
    half_open = { closed = true, open = true } }

  local function run_schedule(seed)
    local rand = property.prng(seed)
    local problems = {}
    local function check(cond, what, ...)
      if not cond then problems[#problems + 1] = what:format(...) end
    end
    sluice.run({ clock = "virtual" }, function()
      local half_open = rand(3)
      local state, trials, epoch = "closed", 0, 0
      local b = sluice.breaker {
        min_calls = rand(4), failure_ratio = rand(4) / 4, window = rand(8) / 2,
        cooldown = rand(8) / 4, half_open = half_open,
        on_change = function(from, to)
          check(from == state and NEXT[from][to], "moved %s -> %s while %s", from, to, state)
          state, epoch = to, epoch + 1
          if to == "half_open" then trials = 0 end
        end,
      }
      local ncalls, ran = 8 + rand(24), 0
      local tasks = {}
      for i = 1, ncalls do
        local took, fails, cancel = rand(8) / 8, rand(3) == 1, rand(8) == 1
        tasks[i] = sluice.spawn(function()
          pcall(b.call, b, function()
            ran = ran + 1
            local st = b.state
            check(st ~= "open", "call %d ran while open", i)
            local trial = st == "half_open" and epoch
            if trial then
              trials = trials + 1
              check(trials <= half_open, "%d trials at once (half_open %d)", trials, half_open)
            end
            local ok, err = pcall(sluice.sleep, took)
            if trial == epoch then trials = trials - 1 end
            if not ok then error(err, 0) end
            if fails then error("down", 0) end
          end)
        end)
        if cancel then
          local t = tasks[i]
          sluice.spawn(function() sluice.sleep(rand(8) / 8) t:cancel() end)
        end
        sluice.sleep(rand(4) / 8)
      end
      for i = 1, ncalls do pcall(tasks[i].await, tasks[i]) end
      local s = b:stats()
      check(s.successes + s.failures + s.cancelled == ran, "%d ran, counted %d + %d + %d",
        ran, s.successes, s.failures, s.cancelled)
      check(s.rejected + ran <= ncalls, "%d rejected + %d ran > %d calls", s.rejected, ran, ncalls)
      check(s.state == state, "state %s, last change to %s", s.state, state)
    end)
    return problems
  end

  property.batches(it, "keeps its invariants (seeds %d-%d)", run_schedule)
end)
