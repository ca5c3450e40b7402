-- sluice.hedge: staggered attempts, first success wins, losers really
-- cancelled (their cleanups run before hedge returns), early failures
-- start the next attempt at once, aggregate errors, arguments.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, msg_of = util.tracer, util.msg_of

local function virtual(fn) return sluice.run({ clock = "virtual" }, fn) end

-- An attempt taking took[i] seconds (failing with fails[i] then, if
-- given), logging its start, end, and cleanup when cancelled.
local function service(log, took, fails)
  return function(i)
    log(("start %d@%s"):format(i, sluice.now()))
    local ok, err = pcall(sluice.sleep, took[i])
    if not ok then
      log(("cleanup %d@%s: %s"):format(i, sluice.now(), err.kind))
      error(err, 0)
    end
    if fails and fails[i] then
      log(("fail %d@%s"):format(i, sluice.now()))
      error(fails[i], 0)
    end
    log(("done %d@%s"):format(i, sluice.now()))
    return "reply " .. i, i
  end
end

describe("sluice.hedge", function()
  it("makes one attempt when it answers within the delay", function()
    virtual(function()
      local trace, log = tracer()
      assert.same({ "reply 1", 1 }, { sluice.hedge(service(log, { 0.5, 1 }), { delay = 1 }) })
      assert.same({ "start 1@0", "done 1@0.5" }, trace)
      assert.equal(0.5, sluice.now())
    end)
  end)

  it("starts a second attempt after the delay; the first success wins, the loser is cancelled", function()
    virtual(function()
      local trace, log = tracer()
      local r = { sluice.hedge(service(log, { 5, 1 }), { delay = 0.5 }) }
      assert.same({ "reply 2", 2 }, r)
      assert.same({ "start 1@0", "start 2@0.5", "done 2@1.5", "cleanup 1@1.5: cancelled" }, trace)
      assert.equal(1.5, sluice.now())
    end)
  end)

  it("cleans losers up before returning: their scopes exit and their children are cancelled", function()
    virtual(function()
      local trace, log = tracer()
      local child
      local r = sluice.hedge({
        function()
          return sluice.scope(function(s)
            child = s:spawn(function()
              local ok, err = pcall(sluice.sleep, 100)
              log("child cleanup: " .. err.kind)
              error(err, 0)
            end)
            local ok, err = pcall(sluice.sleep, 10)
            log("attempt 1 finally: " .. err.kind)
            error(err, 0)
          end)
        end,
        function() sluice.sleep(1) return "fast" end,
      }, { delay = 0.25 })
      assert.equal("fast", r)
      assert.equal("cancelled", child.status)
      assert.same({ "attempt 1 finally: cancelled", "child cleanup: cancelled" }, trace)
      assert.equal(1.25, sluice.now())
      assert.equal(0, sluice.stats().waiting)
    end)
  end)

  it("calls one function up to max times, one more per delay, passing the attempt number", function()
    virtual(function()
      local trace, log = tracer()
      local r = { sluice.hedge(service(log, { 10, 10, 1, 1 }), { delay = 2, max = 3 }) }
      assert.same({ "reply 3", 3 }, r)
      assert.same({ "start 1@0", "start 2@2", "start 3@4", "done 3@5",
        "cleanup 1@5: cancelled", "cleanup 2@5: cancelled" }, trace)
    end)
  end)

  it("defaults to 2 attempts of a function", function()
    virtual(function()
      local trace, log = tracer()
      sluice.hedge(service(log, { 10, 10, 10 }), { delay = 1 })
      assert.same({ "start 1@0", "start 2@1", "done 1@10", "cleanup 2@10: cancelled" }, trace)
    end)
  end)

  it("starts the next attempt at once when one fails, then waits the delay again", function()
    virtual(function()
      local trace, log = tracer()
      local r = sluice.hedge(service(log, { 0.25, 10, 10 }, { "e1" }), { delay = 1, max = 3 })
      assert.equal("reply 2", r)
      assert.same({ "start 1@0", "fail 1@0.25", "start 2@0.25", "start 3@1.25",
        "done 2@10.25", "cleanup 3@10.25: cancelled" }, trace)
    end)
  end)

  it("starts one attempt per failure when several fail at the same time", function()
    virtual(function()
      local trace, log = tracer()
      local r = sluice.hedge(service(log, { 1.5, 0.5, 10, 10, 3 }, { "e1", "e2" }), { delay = 1, max = 5 })
      assert.equal("reply 5", r)
      assert.same({ "start 1@0", "start 2@1", "fail 1@1.5", "fail 2@1.5", "start 3@1.5", "start 4@1.5",
        "start 5@2.5", "done 5@5.5", "cleanup 3@5.5: cancelled", "cleanup 4@5.5: cancelled" }, trace)
    end)
  end)

  it("starts every attempt at once with delay 0", function()
    virtual(function()
      local trace, log = tracer()
      sluice.hedge(service(log, { 3, 2, 1 }), { delay = 0, max = 3 })
      assert.same({ "start 1@0", "start 2@0", "start 3@0", "done 3@1",
        "cleanup 1@1: cancelled", "cleanup 2@1: cancelled" }, trace)
    end)
  end)

  it("raises an aggregate error listing every attempt's error when all fail", function()
    virtual(function()
      local e2 = { code = 503 }
      local ok, err = pcall(sluice.hedge, service(function() end, { 1, 1 }, { "e1", e2 }), { delay = 5 })
      assert.is_false(ok)
      assert.is_true(sluice.is_error(err, "aggregate"))
      assert.equal("sluice.hedge: all 2 failed (first: e1)", err.message)
      assert.same({ "e1", e2 }, err.errors)
      assert.equal(e2, err.errors[2])
      assert.equal("string", type(err.traceback))
      assert.equal(2, sluice.now())   -- the second started when the first failed
    end)
  end)

  it("is cancelled with its caller: every attempt is cancelled and cleaned up", function()
    virtual(function()
      local trace, log = tracer()
      local t = sluice.spawn(sluice.hedge, service(log, { 10, 10 }), { delay = 1 })
      sluice.sleep(3)
      t:cancel("enough")
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.equal("cancelled: enough", err.message)
      assert.same({ "start 1@0", "start 2@1", "cleanup 1@3: cancelled", "cleanup 2@3: cancelled" }, trace)
    end)
  end)

  it("is cancelled by an enclosing timeout while waiting to start the next attempt", function()
    virtual(function()
      local trace, log = tracer()
      local ok, err = pcall(sluice.timeout, 0.5, sluice.hedge, service(log, { 10, 10 }), { delay = 1 })
      assert.is_false(ok)
      assert.equal("timeout", err.kind)
      assert.same({ "start 1@0", "cleanup 1@0.5: cancelled" }, trace)
    end)
  end)

  it("rejects bad arguments with exact messages, starting nothing", function()
    local called = false
    local fn = function() called = true end
    local H = sluice.hedge
    assert.equal("sluice.hedge: fns must be a function or a list of functions (got nil)", msg_of(H, nil, { delay = 1 }))
    assert.equal("sluice.hedge: fns must be a function or a list of functions (got 1)", msg_of(H, 1, { delay = 1 }))
    assert.equal("sluice.hedge: list is empty", msg_of(H, {}, { delay = 1 }))
    assert.equal("sluice.hedge: list[2] must be a function (got \"x\")", msg_of(H, { fn, "x" }, { delay = 1 }))
    assert.equal("sluice.hedge: opts must be a table (got nil)", msg_of(H, fn))
    assert.equal('sluice.hedge: unknown option "dealy"', msg_of(H, fn, { dealy = 1 }))
    assert.equal("sluice.hedge: delay must be a finite non-negative number (got nil)", msg_of(H, fn, {}))
    for _, v in ipairs { -1, 0 / 0, math.huge, "1" } do
      local shown = v ~= v and "nan" or (v == math.huge and "inf" or (type(v) == "string" and '"1"' or tostring(v)))
      assert.equal("sluice.hedge: delay must be a finite non-negative number (got " .. shown .. ")",
        msg_of(H, fn, { delay = v }))
    end
    for _, v in ipairs { 0, -1, 1.5, math.huge } do
      local shown = v == math.huge and "inf" or tostring(v)
      assert.equal("sluice.hedge: max must be a positive integer (got " .. shown .. ")",
        msg_of(H, fn, { delay = 1, max = v }))
    end
    assert.equal("sluice.hedge: max is for a single function (got a list of 2)",
      msg_of(H, { fn, fn }, { delay = 1, max = 2 }))
    local ok, err = pcall(table.sort, { 2, 1 }, function() H(fn, { delay = 1 }) return true end)
    assert.is_false(ok)
    assert.equal("sluice.hedge: cannot block here (inside a C call such as a table.sort " ..
      "comparator or a string.gsub callback)", err.message)
    assert.is_false(called)
  end)
end)

-- Randomized schedules against a model of the documented rule: attempt
-- i+1 starts `delay` after attempt i, or at once when an attempt fails;
-- the first success wins; every loser still running is cancelled and
-- cleaned up before hedge returns.
describe("sluice.hedge under random schedules", function()
  local property = require "spec.support.property"

  -- The model's outcome: winner (or nil when all failed), the time hedge
  -- returns, how many attempts started; nil when two events tie (their
  -- order would be the scheduler's, not the rule's).
  local function model(n, delay, took, fails)
    local start, nstarted, timer, done, nfailed = {}, 0, nil, {}, 0
    local function start_next(t)
      nstarted = nstarted + 1
      start[nstarted] = t
      timer = nstarted < n and t + delay or nil
    end
    start_next(0)
    while true do
      local best, idx
      local times = {}
      for i = 1, nstarted do
        if not done[i] then times[#times + 1] = { start[i] + took[i], i } end
      end
      if timer then times[#times + 1] = { timer, 0 } end
      for _, e in ipairs(times) do
        if best and e[1] == best then return nil end
        if not best or e[1] < best then best, idx = e[1], e[2] end
      end
      for _, e in ipairs(times) do
        if e[1] == best and e[2] ~= idx then return nil end
      end
      if idx == 0 then
        start_next(best)
      else
        done[idx] = true
        if not fails[idx] then return { winner = idx, time = best, started = nstarted } end
        nfailed = nfailed + 1
        if nstarted < n then start_next(best)
        elseif nfailed == n then return { time = best, started = n } end
      end
    end
  end

  local function run_schedule(seed)
    local rand = property.prng(seed)
    local n, delay = rand(4), rand(2000) / 1000
    local took, fails = {}, {}
    for i = 1, n do took[i], fails[i] = rand(4000) / 1000, rand(5) <= 2 end
    local expect = model(n, delay, took, fails)
    local problems = {}
    local function check(cond, what, ...)
      if not cond then problems[#problems + 1] = what:format(...) end
    end
    sluice.run({ clock = "virtual" }, function()
      local started, cleaned, finished = 0, 0, 0
      local ok, r = pcall(sluice.hedge, function(i)
        started = started + 1
        local slept, err = pcall(sluice.sleep, took[i])
        if not slept then cleaned = cleaned + 1 error(err, 0) end
        finished = finished + 1
        if fails[i] then error("e" .. i, 0) end
        return i
      end, { delay = delay, max = n })
      check(cleaned + finished == started, "%d started, %d finished, %d cleaned up", started, finished, cleaned)
      if not expect then return end
      check(started == expect.started, "%d attempts started, model %d", started, expect.started)
      check(sluice.now() == expect.time, "returned at %.17g, model %.17g", sluice.now(), expect.time)
      if expect.winner then
        check(ok and r == expect.winner, "won by %s, model %d", tostring(r), expect.winner)
      else
        check(not ok and sluice.is_error(r, "aggregate") and #r.errors == n,
          "all failed: expected an aggregate of %d, got %s", n, tostring(r))
      end
    end)
    return problems
  end

  property.batches(it, "matches the model and cleans up (seeds %d-%d)", run_schedule)
end)
