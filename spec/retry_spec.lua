-- sluice.retry: attempts, exponential backoff (exact, capped, jittered),
-- retry_if, on_retry, cancellation, the enclosing deadline, arguments.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, msg_of = util.tracer, util.msg_of

-- fn for retry: fails (raising errs[k]) on attempts listed in errs,
-- logging "attempt k at t" (time since t0), and returns "ok", k after.
local function flaky(log, t0, errs)
  return function(k)
    log(("attempt %d at %s"):format(k, sluice.now() - t0))
    if errs[k] ~= nil then error(errs[k], 0) end
    return "ok", k
  end
end

local function nolog() end

-- A random source replaying fixed values.
local function replay(list)
  local i = 0
  return function() i = i + 1 return list[i] end
end

describe("sluice.retry", function()
  it("returns every result of the first attempt that succeeds, with no pause", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    assert.same({ "ok", 1 }, { sluice.retry(flaky(log, t0, {})) })
    assert.same({ "attempt 1 at 0" }, trace)
    assert.equal(t0, sluice.now())
  end)

  it("backs off exponentially, base * 2^(k-1), with exact delays when jitter is false", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local r = { sluice.retry(flaky(log, t0, { "e1", "e2", "e3" }), {
      attempts = 4, base = 0.25, jitter = false,
      on_retry = function(err, k, d) log(("retry after %s (attempt %d) in %s"):format(err, k, d)) end,
    }) }
    assert.same({ "ok", 4 }, r)
    assert.same({
      "attempt 1 at 0", "retry after e1 (attempt 1) in 0.25",
      "attempt 2 at 0.25", "retry after e2 (attempt 2) in 0.5",
      "attempt 3 at 0.75", "retry after e3 (attempt 3) in 1",
      "attempt 4 at 1.75",
    }, trace)
    assert.equal(t0 + 1.75, sluice.now())
  end)

  it("caps each delay at max_delay", function()
    local delays = {}
    local n = 0
    sluice.retry(function() n = n + 1 if n < 6 then error("no") end end, {
      attempts = 6, base = 1, max_delay = 5, jitter = false,
      on_retry = function(_, _, d) delays[#delays + 1] = d end,
    })
    assert.same({ 1, 2, 4, 5, 5 }, delays)
  end)

  it("raises the last error unchanged after the last attempt", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local e3 = { code = 503 }
    local ok, err = pcall(sluice.retry, flaky(log, t0, { "e1", "e2", e3 }), { base = 1, jitter = false })
    assert.is_false(ok)
    assert.equal(e3, err)
    assert.same({ "attempt 1 at 0", "attempt 2 at 1", "attempt 3 at 3" }, trace)
    assert.equal(t0 + 3, sluice.now())
  end)

  it("defaults to 3 attempts, base 0.1 and full jitter from math.random", function()
    local delays = {}
    math.randomseed(7)
    local expect = { math.random() * 0.1, math.random() * 0.2 }
    math.randomseed(7)
    pcall(sluice.retry, function() error("no") end, {
      on_retry = function(_, _, d) delays[#delays + 1] = d end,
    })
    assert.same(expect, delays)
  end)

  it("jitters in [0, d] (full) or [d/2, d] (equal) from the random source given", function()
    local full, equal = {}, {}
    pcall(sluice.retry, function() error("no") end, {
      attempts = 4, base = 1, random = replay { 0.5, 0, 1 },
      on_retry = function(_, _, d) full[#full + 1] = d end,
    })
    pcall(sluice.retry, function() error("no") end, {
      attempts = 4, base = 1, jitter = "equal", random = replay { 0.5, 0, 1 },
      on_retry = function(_, _, d) equal[#equal + 1] = d end,
    })
    assert.same({ 0.5, 0, 4 }, full)
    assert.same({ 0.75, 1, 4 }, equal)
  end)

  it("stops at once on an error retry_if rejects, raising it unchanged", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local seen = {}
    local err = select(2, pcall(sluice.retry, flaky(log, t0, { "busy", "fatal" }), {
      attempts = 5, base = 1, jitter = false,
      retry_if = function(e, k) seen[#seen + 1] = e .. "@" .. k return e == "busy" end,
    }))
    assert.equal("fatal", err)
    assert.same({ "busy@1", "fatal@2" }, seen)
    assert.same({ "attempt 1 at 0", "attempt 2 at 1" }, trace)
  end)

  it("retries an attempt's own timeout, which is an error like any other", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local r = sluice.retry(function(k)
      return sluice.timeout(0.5, function()
        log(("attempt %d at %s"):format(k, sluice.now() - t0))
        sluice.sleep(k == 3 and 0.25 or 1)
        return "reply"
      end)
    end, { base = 0.25, jitter = false, on_retry = function(e) log(e.kind) end })
    assert.equal("reply", r)
    assert.same({ "attempt 1 at 0", "timeout", "attempt 2 at 0.75", "timeout", "attempt 3 at 1.75" }, trace)
    assert.equal(t0 + 2, sluice.now())
  end)

  it("never retries a cancellation an attempt raises", function()
    local n = 0
    local err = select(2, pcall(sluice.retry, function()
      n = n + 1
      local t = sluice.spawn(function() sluice.sleep(10) end)
      t:cancel("gone")
      t:await()
    end, { attempts = 5, retry_if = function() return true end }))
    assert.equal(1, n)
    assert.is_true(sluice.is_error(err, "cancelled"))
    assert.equal("cancelled: gone", err.message)
  end)

  it("is cancelled while it sleeps between attempts, without another attempt", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local t = sluice.spawn(sluice.retry, flaky(log, t0, { "e1", "e2" }), { base = 2, jitter = false })
    sluice.sleep(1)
    t:cancel("stop")
    local err = select(2, pcall(t.await, t))
    assert.equal("cancelled: stop", err.message)
    assert.equal("cancelled", t.status)
    assert.same({ "attempt 1 at 0" }, trace)
    assert.equal(t0 + 1, sluice.now())
  end)

  it("is cancelled during an attempt: the attempt unwinds and nothing is retried", function()
    local trace, log = tracer()
    local t = sluice.spawn(sluice.retry, function(k)
      log("attempt " .. k)
      local ok, err = pcall(sluice.sleep, 5)
      log("cleanup: " .. err.kind)
      error(err, 0)
    end, { attempts = 3 })
    sluice.sleep(1)
    t:cancel()
    pcall(t.await, t)
    assert.equal("cancelled", t.status)
    assert.same({ "attempt 1", "cleanup: cancelled" }, trace)
  end)

  it("raises the last error at once when the next backoff would end past the deadline", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local ok, err = pcall(sluice.timeout, 1, sluice.retry, flaky(log, t0, { "e1", "e2", "e3" }), {
      attempts = 5, base = 0.25, jitter = false,
      on_retry = function(_, k, d) log(("sleep %s after %d"):format(d, k)) end,
    })
    assert.is_false(ok)
    -- 0.25 + 0.5 ends at 0.75 < 1; then a pause of 1 would end at 1.75
    assert.equal("e3", err)   -- not a timeout, and not later
    assert.same({ "attempt 1 at 0", "sleep 0.25 after 1", "attempt 2 at 0.25",
      "sleep 0.5 after 2", "attempt 3 at 0.75" }, trace)
    assert.equal(t0 + 0.75, sluice.now())
  end)

  it("gives up on a backoff ending exactly at the deadline, sleeps one ending before it", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    -- deadline at 1.5: pauses 0.5 (to 0.5) and 1 (to 1.5, the deadline)
    local err = select(2, pcall(sluice.scope, { timeout = 1.5 }, function()
      sluice.retry(flaky(log, t0, { "e1", "e2", "e3" }), { base = 0.5, jitter = false })
    end))
    assert.equal("e2", err)
    assert.same({ "attempt 1 at 0", "attempt 2 at 0.5" }, trace)
    assert.equal(t0 + 0.5, sluice.now())
  end)

  it("reads the nearest of nested deadlines, and retries freely without one", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    local err = select(2, pcall(sluice.timeout, 100, sluice.timeout, 2, sluice.retry,
      flaky(log, t0, { "e1", "e2", "e3", "e4" }), { attempts = 4, base = 1, jitter = false }))
    assert.equal("e2", err)   -- 1 + 2 would end at 3 > 2
    assert.equal(t0 + 1, sluice.now())
    local r = { sluice.retry(flaky(nolog, t0, { "e1", "e2", "e3" }),
      { attempts = 4, base = 16, max_delay = 100, jitter = false }) }
    assert.same({ "ok", 4 }, r)
    assert.equal(t0 + 1 + 16 + 32 + 64, sluice.now())
  end)

  it("passes its jittered delay through the deadline check", function()
    local t0 = sluice.now()
    local n = 0
    local r = { sluice.timeout(1, sluice.retry, function(k)
      n = n + 1
      if k < 3 then error("no") end
      return k, sluice.now() - t0
    end, { base = 1, random = replay { 0.5, 0.125 } }) }
    assert.same({ 3, 0.75 }, r)   -- full 1 and 2 would not fit; 0.5 and 0.25 do
  end)

  it("raises when it cannot block", function()
    local ok, err = pcall(table.sort, { 2, 1 }, function()
      sluice.retry(function() end)
      return true
    end)
    assert.is_false(ok)
    assert.equal("sluice.retry: cannot block here (inside a C call such as a table.sort " ..
      "comparator or a string.gsub callback)", err.message)
  end)

  it("rejects bad arguments with exact messages, before calling fn", function()
    local called = false
    local function fn() called = true end
    local R = sluice.retry
    assert.equal("sluice.retry: fn must be a function (got nil)", msg_of(R))
    assert.equal("sluice.retry: fn must be a function (got 1)", msg_of(R, 1))
    assert.equal("sluice.retry: opts must be a table (got 3)", msg_of(R, fn, 3))
    assert.equal('sluice.retry: unknown option "attemps"', msg_of(R, fn, { attemps = 2 }))
    for _, v in ipairs { 0, -1, 1.5, 0 / 0, math.huge, "3" } do
      local shown = type(v) == "string" and '"3"' or
        (v ~= v and "nan" or (v == math.huge and "inf" or tostring(v)))
      assert.equal("sluice.retry: attempts must be a positive integer (got " .. shown .. ")",
        msg_of(R, fn, { attempts = v }))
    end
    assert.equal("sluice.retry: base must be a finite non-negative number (got -1)", msg_of(R, fn, { base = -1 }))
    assert.equal("sluice.retry: base must be a finite non-negative number (got nan)", msg_of(R, fn, { base = 0 / 0 }))
    assert.equal("sluice.retry: base must be a finite non-negative number (got inf)", msg_of(R, fn, { base = math.huge }))
    assert.equal("sluice.retry: max_delay must be a finite non-negative number (got table)",
      msg_of(R, fn, { max_delay = {} }))
    assert.equal('sluice.retry: jitter must be "full", "equal" or false (got boolean)',
      msg_of(R, fn, { jitter = true }))
    assert.equal('sluice.retry: jitter must be "full", "equal" or false (got "half")', msg_of(R, fn, { jitter = "half" }))
    assert.equal("sluice.retry: retry_if must be a function (got 1)", msg_of(R, fn, { retry_if = 1 }))
    assert.equal("sluice.retry: on_retry must be a function (got \"x\")", msg_of(R, fn, { on_retry = "x" }))
    assert.equal("sluice.retry: random must be a function (got 0.5)", msg_of(R, fn, { random = 0.5 }))
    assert.is_false(called)
    assert.equal("sluice.retry: random must return a number in [0, 1] (got 2)",
      msg_of(R, function() error("no") end, { random = function() return 2 end }))
    assert.equal("sluice.retry: random must return a number in [0, 1] (got nil)",
      msg_of(R, function() error("no") end, { random = function() end }))
  end)
end)
