-- sluice.token_bucket: take, try_take, tokens, capacity, rate (settable),
-- waiting, stats; exact due times on the virtual clock, FIFO with no
-- barging, timeouts, cancellation (of the head too), rate changes,
-- argument checks.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of = util.tracer, util.error_of

local function counts(b)
  return { tokens = b.tokens, capacity = b.capacity, rate = b.rate, waiting = b.waiting }
end

-- Times relative to t0, rounded to the microsecond only to print them.
local function at(t0) return string.format("%.6g", sluice.now() - t0) end

-- A clock origin at a whole second, so that due times are exact sums.
local function whole_second()
  local now = sluice.now()
  if now ~= math.ceil(now) then sluice.sleep(math.ceil(now) - now) end
  return sluice.now()
end

describe("sluice.token_bucket", function()
  it("starts full and takes tokens at once while there are enough", function()
    local b = sluice.token_bucket{ capacity = 10, rate = 5 }
    assert.same({ tokens = 10, capacity = 10, rate = 5, waiting = 0 }, counts(b))
    assert.equal("token_bucket (10/10 tokens, 5/s, 0 waiting)", tostring(b))
    local t0 = sluice.now()
    assert.is_true(b:take())
    assert.is_true(b:take(4))
    assert.is_true(b:try_take(2.5))
    assert.is_true(b:try_take())
    assert.equal(1.5, b.tokens)
    assert.is_false(b:try_take(2))
    assert.equal(1.5, b.tokens)
    assert.equal(t0, sluice.now())
    assert.equal("token_bucket (1.5/10 tokens, 5/s, 0 waiting)", tostring(b))
  end)

  it("refills at rate up to the capacity, counted from the scheduler's clock", function()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 4, rate = 2, initial = 0 }
    assert.equal(0, b.tokens)
    sluice.sleep(0.25)
    assert.equal(0.5, b.tokens)
    sluice.sleep(1)
    assert.equal(2.5, b.tokens)
    sluice.sleep(100)
    assert.equal(4, b.tokens)
    assert.is_true(b:try_take(4))
    assert.equal(0, b.tokens)
    assert.equal(t0 + 101.25, sluice.now())
  end)

  it("serves the 11th token of a 10/s bucket emptied at 0 at exactly 0.1 s, then one every 0.1 s", function()
    -- on a virtual clock of its own, starting at 0
    local trace = sluice.run({ clock = "virtual" }, function()
      local trace, log = tracer()
      local b = sluice.token_bucket{ capacity = 10, rate = 10 }
      for _ = 1, 10 do assert.is_true(b:take()) end
      assert.equal(0, sluice.now())
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = sluice.spawn(function()
          assert.is_true(b:take())
          log(i .. "@" .. sluice.now())
        end)
      end
      for i = 1, 5 do tasks[i]:await() end
      assert.equal(0, b.tokens)
      return trace
    end)
    -- exact (0.3, not 0.30000000000000004): due times are k / rate from one origin
    assert.same({ "1@0.1", "2@0.2", "3@0.3", "4@0.4", "5@0.5" }, trace)
  end)

  it("keeps due times exact from any origin: t0 + k / rate", function()
    local t0 = whole_second() + 0.5
    sluice.sleep(0.5)
    local b = sluice.token_bucket{ capacity = 3, rate = 10, initial = 0 }
    for k = 1, 12 do
      assert.is_true(b:take())
      assert.equal(t0 + k / 10, sluice.now())
    end
  end)

  it("waits exactly the deficit: a take of 3 with 1.5 there at 2/s waits 0.75 s", function()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 5, rate = 2, initial = 1.5 }
    assert.is_true(b:take(3))
    assert.equal(t0 + 0.75, sluice.now())
    assert.equal(0, b.tokens)
  end)

  it("arms one timer for the head waiter only, and none once nobody waits", function()
    local b = sluice.token_bucket{ capacity = 1, rate = 1, initial = 0 }
    local base = sluice.stats().timers
    local tasks = {}
    for i = 1, 4 do tasks[i] = sluice.spawn(function() b:take() end) end
    sluice.yield()
    assert.equal(4, b.waiting)
    assert.equal(base + 1, sluice.stats().timers)
    for i = 1, 4 do tasks[i]:await() end
    assert.equal(base, sluice.stats().timers)
  end)

  it("serves waiters in FIFO order: a large head holds back small newcomers", function()
    local trace, log = tracer()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 8, rate = 2, initial = 2 }
    local big = sluice.spawn(function() b:take(8) log("big@" .. at(t0)) end)
    sluice.yield()                                      -- big is queued: needs 6 more, due at 3
    assert.is_false(b:try_take(1))                      -- 2 are there, but big is first
    local small = {}
    for i = 1, 3 do
      small[i] = sluice.spawn(function() b:take(1) log("small" .. i .. "@" .. at(t0)) end)
    end
    sluice.sleep(2)
    assert.same({ tokens = 6, capacity = 8, rate = 2, waiting = 4 }, counts(b))
    big:await()
    for i = 1, 3 do small[i]:await() end
    assert.same({ "big@3", "small1@3.5", "small2@4", "small3@4.5" }, trace)
  end)

  it("lets a newcomer in at once when nobody is queued", function()
    local b = sluice.token_bucket{ capacity = 2, rate = 1, initial = 0 }
    local t = sluice.spawn(function() b:take(2) end)
    sluice.sleep(3)
    assert.equal("done", t.status)
    assert.is_true(b:try_take(1))
  end)
end)

describe("token_bucket:take(n, timeout)", function()
  it("gives nil, \"timeout\" at exactly the timeout, not earlier, leaving the queue as it was", function()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 10, rate = 1, initial = 0 }
    -- 10 tokens take 10 s; the wait is known to be too long, and still
    -- the answer comes at the timeout (the rate might have been raised)
    local ok, why = b:take(10, 2.5)
    assert.same({ nil, "timeout" }, { ok, why })
    assert.equal(t0 + 2.5, sluice.now())
    assert.same({ tokens = 2.5, capacity = 10, rate = 1, waiting = 0 }, counts(b))
    assert.equal(0, b:stats().waiting)
  end)

  it("take(n, 0) takes what is there or answers at once", function()
    local b = sluice.token_bucket{ capacity = 2, rate = 1 }
    local t0 = sluice.now()
    assert.is_true(b:take(2, 0))
    local n, ok, why = select("#", b:take(1, 0)), b:take(1, 0)
    assert.same({ 2, nil, "timeout" }, { n, ok, why })
    assert.equal(t0, sluice.now())
    assert.equal(0, b.waiting)
  end)

  it("grants a take whose tokens are due at the very instant of its timeout", function()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 2, rate = 1, initial = 0 }
    assert.is_true(b:take(1, 1))
    assert.equal(t0 + 1, sluice.now())
    local other = sluice.spawn(function() return b:take(2, 1) end)   -- due at 3
    local mine = sluice.spawn(function() return b:take(1, 2) end)    -- behind it
    assert.same({ nil, "timeout" }, { other:await() })
    assert.equal(t0 + 2, sluice.now())
    assert.is_true(mine:await())                         -- 1 token at 2: due at its timeout
    assert.equal(t0 + 2, sluice.now())
  end)

  it("a head that times out re-times the next waiter, which may be due at once", function()
    local trace, log = tracer()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 4, rate = 1, initial = 0 }
    local head = sluice.spawn(function() log("head " .. tostring(b:take(4, 1.5)) .. "@" .. at(t0)) end)
    local next1 = sluice.spawn(function() b:take(1) log("next1@" .. at(t0)) end)
    local next2 = sluice.spawn(function() b:take(1) log("next2@" .. at(t0)) end)
    head:await()
    next1:await()
    next2:await()
    -- at 1.5 the head leaves and next1 is granted at once, woken first
    assert.same({ "next1@1.5", "head nil@1.5", "next2@2" }, trace)
    local st = b:stats()
    assert.same({ 2, 2, 1, 0 }, { st.acquired, st.waited, st.timeouts, st.cancelled })
  end)

  it("a grant before the timeout disarms the timeout's timer", function()
    local base = sluice.stats().timers
    local b = sluice.token_bucket{ capacity = 1, rate = 1, initial = 0 }
    assert.is_true(b:take(1, 5))
    assert.equal(base, sluice.stats().timers)
    assert.equal(0, b:stats().timeouts)
  end)
end)

describe("token_bucket cancellation", function()
  it("of a waiter behind the head leaves the queue as if it had never been there", function()
    local trace, log = tracer()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 3, rate = 1, initial = 0 }
    local w = {}
    for i = 1, 3 do
      w[i] = sluice.spawn(function()
        local ok, err = pcall(b.take, b, 1)
        log(i .. (ok and " got" or " " .. err.kind) .. "@" .. at(t0))
      end)
    end
    sluice.sleep(0.5)
    assert.equal(3, b.waiting)
    w[2]:cancel()
    for i = 1, 3 do w[i]:await() end
    assert.same({ "2 cancelled@0.5", "1 got@1", "3 got@2" }, trace)
    local st = b:stats()
    assert.same({ 2, 2, 0, 1 }, { st.acquired, st.waited, st.timeouts, st.cancelled })
  end)

  it("of the head re-times the next waiter for its own deficit", function()
    local trace, log = tracer()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 6, rate = 2, initial = 0 }
    local head = sluice.spawn(function()
      local ok, err = pcall(b.take, b, 6)
      log("head " .. (ok and "got" or err.kind) .. "@" .. at(t0))
    end)
    local second = sluice.spawn(function() b:take(2) log("second@" .. at(t0)) end)
    local third = sluice.spawn(function() b:take(2) log("third@" .. at(t0)) end)
    sluice.sleep(0.5)                                    -- 1 token there
    head:cancel()
    head:await()
    second:await()
    third:await()
    assert.same({ "head cancelled@0.5", "second@1", "third@2" }, trace)
  end)

  it("of the head lets a smaller next waiter through at once when its tokens are there", function()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 6, rate = 1, initial = 0 }
    local head = sluice.spawn(function() b:take(6) end)
    local small = sluice.spawn(function() b:take(1) return sluice.now() end)
    sluice.sleep(3)
    head:cancel()
    assert.equal(t0 + 3, small:await())
    assert.equal(2, b.tokens)
  end)

  it("after the hand-off, before the task ran, gives the tokens back to the next waiter", function()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 2, rate = 1, initial = 0 }
    local a = sluice.spawn(function() b:take(2) end)
    local c = sluice.spawn(function() b:take(2) return sluice.now() end)
    sluice.sleep(2)                                      -- a was granted at 2, has not run:
    assert.equal("ready", a.status)                      -- the main task's sleep was armed first
    a:cancel()
    assert.equal("cancelled", error_of(a.await, a).kind)
    assert.equal(t0 + 2, c:await())                      -- a's 2 tokens went to c
    local st = b:stats()
    assert.same({ 1, 1, 1 }, { st.acquired, st.waited, st.cancelled })
  end)

  it("raises at once in a task with a pending cancellation, tokens there or not", function()
    local b = sluice.token_bucket{ capacity = 2, rate = 1 }
    local t = sluice.spawn(function()
      sluice.current():cancel()
      return b:take()
    end)
    assert.equal("cancelled", error_of(t.await, t).kind)
    assert.equal(2, b.tokens)
  end)
end)

describe("token_bucket.rate", function()
  it("counts the tokens so far at the old rate and re-times the head at the new one", function()
    local trace, log = tracer()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 10, rate = 1, initial = 0 }
    local w = sluice.spawn(function() b:take(4) log("4@" .. at(t0)) end)
    sluice.sleep(1)                                      -- 1 token; due at 4 at 1/s
    b.rate = 3                                           -- 3 more at 3/s: due at 2
    assert.equal(3, b.rate)
    w:await()
    assert.same({ "4@2" }, trace)
    b.rate = 0.5
    sluice.sleep(2)
    assert.equal(1, b.tokens)
    assert.equal("token_bucket (1/10 tokens, 0.5/s, 0 waiting)", tostring(b))
  end)

  it("rejects a bad rate and keeps the old one", function()
    local b = sluice.token_bucket{ capacity = 1, rate = 2 }
    for _, v in ipairs({ { 0, "0" }, { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "3", '"3"' },
                         { nil, "nil" }, { true, "boolean" } }) do
      local err = error_of(function() b.rate = v[1] end)
      assert.equal("invalid", err.kind)
      assert.equal("token_bucket: rate must be a finite positive number (got " .. v[2] .. ")", err.message)
    end
    assert.equal(2, b.rate)
    assert.equal("token_bucket: field 'capacity' is read-only", error_of(function() b.capacity = 3 end).message)
    assert.equal("token_bucket: field 'tokens' is read-only", error_of(function() b.tokens = 3 end).message)
    assert.equal("token_bucket: field 'waiting' is read-only", error_of(function() b.waiting = 3 end).message)
    assert.equal("token_bucket: field 'x' is not settable", error_of(function() b.x = 3 end).message)
  end)
end)

describe("token_bucket stats", function()
  it("counts grants, waits, timeouts and cancellations, with wait times", function()
    local t0 = whole_second()
    local b = sluice.token_bucket{ capacity = 2, rate = 2, initial = 1 }
    assert.is_true(b:take())
    assert.is_true(b:take(1))                            -- waits 0.5
    assert.is_nil(b:take(2, 0.25))                       -- times out
    local t = sluice.spawn(function() b:take(2) end)
    sluice.yield()
    t:cancel()
    pcall(t.await, t)
    local st = b:stats()
    assert.equal(t0 + 0.75, sluice.now())
    assert.same({ capacity = 2, rate = 2, tokens = 0.5, waiting = 0, acquired = 2, waited = 1, timeouts = 1,
                  cancelled = 1, wait_total = 0.75, wait_max = 0.5 },
      { capacity = st.capacity, rate = st.rate, tokens = st.tokens, waiting = st.waiting,
        acquired = st.acquired, waited = st.waited, timeouts = st.timeouts, cancelled = st.cancelled,
        wait_total = st.wait_total, wait_max = st.wait_max })
    assert.equal(32, #st.histogram)
    assert.equal(1, st.histogram[1])                     -- the cancelled wait took no time
  end)
end)

describe("token_bucket argument checks", function()
  local bad_numbers = { { 0, "0" }, { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { -math.huge, "-inf" },
                        { "1", '"1"' }, { true, "boolean" }, { {}, "table" } }

  it("of the constructor name the option, before anything is made", function()
    assert.equal("token_bucket: opts must be a table (got nil)", error_of(sluice.token_bucket).message)
    assert.equal("token_bucket: opts must be a table (got 10)", error_of(sluice.token_bucket, 10).message)
    assert.equal("token_bucket: unknown option 'capcity'",
      error_of(sluice.token_bucket, { capcity = 1, rate = 1 }).message)
    for _, v in ipairs(bad_numbers) do
      local err = error_of(sluice.token_bucket, { capacity = v[1], rate = 1 })
      assert.equal("invalid", err.kind)
      assert.equal("token_bucket: capacity must be a finite positive number (got " .. v[2] .. ")", err.message)
      err = error_of(sluice.token_bucket, { capacity = 1, rate = v[1] })
      assert.equal("token_bucket: rate must be a finite positive number (got " .. v[2] .. ")", err.message)
    end
    assert.equal("token_bucket: capacity must be a finite positive number (got nil)",
      error_of(sluice.token_bucket, { rate = 1 }).message)
    assert.equal("token_bucket: rate must be a finite positive number (got nil)",
      error_of(sluice.token_bucket, { capacity = 1 }).message)
    for _, v in ipairs({ { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "1", '"1"' } }) do
      assert.equal("token_bucket: initial must be a finite non-negative number (got " .. v[2] .. ")",
        error_of(sluice.token_bucket, { capacity = 2, rate = 1, initial = v[1] }).message)
    end
    assert.equal("token_bucket: initial 2.5 exceeds the capacity 2",
      error_of(sluice.token_bucket, { capacity = 2, rate = 1, initial = 2.5 }).message)
    -- fractional capacities and zero initial tokens are fine
    assert.equal(0, sluice.token_bucket{ capacity = 0.5, rate = 0.25, initial = 0 }.tokens)
  end)

  it("of take and try_take name the method and leave the bucket unchanged", function()
    local b = sluice.token_bucket{ capacity = 2, rate = 1 }
    for _, m in ipairs({ "take", "try_take" }) do
      for _, v in ipairs(bad_numbers) do
        local err = error_of(b[m], b, v[1])
        assert.equal("invalid", err.kind)
        assert.equal("token_bucket:" .. m .. ": n must be a finite positive number (got " .. v[2] .. ")",
          err.message)
      end
      assert.equal("token_bucket:" .. m .. ": n 3 exceeds the capacity 2", error_of(b[m], b, 3).message)
      assert.equal("token_bucket:" .. m .. ": expected a token_bucket (got table)", error_of(b[m], {}, 1).message)
      assert.equal("token_bucket:" .. m .. ": expected a token_bucket (got nil)", error_of(b[m]).message)
      assert.equal("token_bucket:" .. m .. ": expected a token_bucket (got cdata)",
        error_of(b[m], sluice.semaphore(1), 1).message)
    end
    for _, v in ipairs({ { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "1", '"1"' } }) do
      assert.equal("token_bucket:take: timeout must be a finite non-negative number of seconds (got " .. v[2] .. ")",
        error_of(b.take, b, 1, v[1]).message)
    end
    assert.equal("token_bucket:stats: expected a token_bucket (got string)", error_of(b.stats, "x").message)
    assert.same({ tokens = 2, capacity = 2, rate = 1, waiting = 0 }, counts(b))
    assert.equal(0, b:stats().acquired)
  end)

  it("take cannot block where the task cannot yield, but may take tokens there", function()
    local b = sluice.token_bucket{ capacity = 1, rate = 1 }
    local results = {}
    table.sort({ 2, 1 }, function(x, y)
      if #results == 0 then
        results[1] = b:take()
        results[2] = { pcall(b.take, b) }
      end
      return x < y
    end)
    assert.is_true(results[1])
    assert.is_false(results[2][1])
    assert.equal("token_bucket:take: cannot block here (inside a C call such as a table.sort comparator " ..
      "or a string.gsub callback)", results[2][2].message)
    assert.equal(0, b.waiting)
  end)

  it("belongs to the scheduler it was made under: sluice.run's tasks cannot use it", function()
    local b = sluice.token_bucket{ capacity = 1, rate = 1 }
    local err = sluice.run({ clock = "virtual" }, function()
      local ok, e = pcall(b.take, b)
      assert.is_false(ok)
      return e
    end)
    assert.equal("token_bucket:take: the bucket belongs to another scheduler (it was made inside or " ..
      "outside this sluice.run)", err.message)
    -- and one made inside works there on the virtual clock
    local at_ = sluice.run({ clock = "virtual" }, function()
      local inner = sluice.token_bucket{ capacity = 1, rate = 4, initial = 0 }
      inner:take()
      return sluice.now()
    end)
    assert.equal(0.25, at_)
    assert.equal(1, b.tokens)
  end)
end)

describe("token_bucket costs", function()
  it("allocates nothing on the hot path: try_take, and take with tokens there", function()
    local b = sluice.token_bucket{ capacity = 1e15, rate = 1e15 }
    local function calls(n) for _ = 1, n do b:try_take() b:take(2) end end
    calls(50000)                                         -- compiled first: traces count as heap
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    calls(20000)
    local kb = collectgarbage("count") - before
    collectgarbage("restart")
    -- nothing per call: one allocation per call would be over a MB; what
    -- a late trace compiles may show up (a few KB), hence the margin
    assert(kb < 64, ("%.1f KB allocated by 40000 calls"):format(kb))
  end)

  it("keeps a task parked in take within its first stack", function()
    local b = sluice.token_bucket{ capacity = 1, rate = 1e-3, initial = 0 }
    local N = 2000
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    local tasks = {}
    for i = 1, N do tasks[i] = sluice.spawn(function() b:take() end) end
    sluice.yield()
    collectgarbage()
    collectgarbage()
    local bytes = (collectgarbage("count") - before) * 1024 / N
    for i = 1, N do tasks[i]:cancel() end
    for i = 1, N do pcall(tasks[i].await, tasks[i]) end
    assert.equal(0, b.waiting)
    assert(bytes < 1000, ("%.0f bytes per task parked in take"):format(bytes))
  end)
end)
