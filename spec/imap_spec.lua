-- sluice.imap: results in input order or completion order, the
-- concurrency bound, bounded look-ahead (source pulls against results
-- consumed), sources (list, iterator function, channel), error
-- propagation, early close, cancellation of the loop, bad arguments.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of = util.tracer, util.error_of

local function collect(it)
  local out = {}
  for r in it do out[#out + 1] = r end
  return out
end

describe("sluice.imap", function()
  it("gives results in input order, with the calls overlapping", function()
    local t0 = sluice.now()
    local delays = { 3, 1, 2, 1, 1 }
    local out = collect(sluice.imap(delays, function(d)
      sluice.sleep(d)
      return d * 10
    end, { concurrency = 2 }))
    assert.same({ 30, 10, 20, 10, 10 }, out)
    -- two lanes: 3 | 1, 2, 1 (ends at 4) then the 5th item on the first free lane
    assert.equal(t0 + 4, sluice.now())
  end)

  it("gives results as they complete with ordered = false", function()
    local trace, log = tracer()
    local t0 = sluice.now()
    for r in sluice.imap({ 3, 1, 2 }, function(d)
      sluice.sleep(d)
      return d
    end, { concurrency = 3, ordered = false }) do
      log(r .. "@" .. (sluice.now() - t0))
    end
    assert.same({ "1@1", "2@2", "3@3" }, trace)
  end)

  it("defaults to one call at a time", function()
    local t0 = sluice.now()
    assert.same({ 1, 2, 3 }, collect(sluice.imap({ 1, 2, 3 }, function(x) sluice.sleep(1) return x end)))
    assert.equal(t0 + 3, sluice.now())
  end)

  it("never has more than concurrency calls in flight", function()
    local active, peak = 0, 0
    local n = 0
    for _ in sluice.imap(function()
      n = n + 1
      if n <= 50 then return n end
    end, function(x)
      active = active + 1
      if active > peak then peak = active end
      sluice.sleep((x * 7) % 5 * 0.1)
      active = active - 1
      return x
    end, { concurrency = 4 }) do end
    assert.equal(4, peak)
    assert.equal(0, active)
  end)

  it("pulls from the source only as fast as results are consumed", function()
    local pulled, consumed, worst = 0, 0, 0
    local function source()
      pulled = pulled + 1
      if pulled - consumed > worst then worst = pulled - consumed end
      return pulled
    end
    local it = sluice.imap(source, function(x) return x end, { concurrency = 3 })
    for r in it do
      consumed = consumed + 1
      assert.equal(consumed, r)
      sluice.sleep(1)                     -- a slow consumer
      if consumed == 20 then break end
    end
    it:close()
    -- 3 in flight + 3 finished and waiting: 2 x concurrency ahead at most
    assert.equal(6, worst)
    assert.equal(26, pulled)
  end)

  it("takes items from a channel until it is closed", function()
    local ch = sluice.channel(2)
    local producer = sluice.spawn(function()
      for i = 1, 5 do ch:send(i) end
      ch:close()
    end)
    assert.same({ 1, 4, 9, 16, 25 }, collect(sluice.imap(ch, function(x)
      sluice.sleep((6 - x) * 0.1)
      return x * x
    end, { concurrency = 3 })))
    producer:await()
  end)

  it("calls an iterator that blocks one caller at a time, in order", function()
    local trace, log = tracer()
    local i = 0
    local out = collect(sluice.imap(function()
      log("pull")
      sluice.sleep(0.5)
      i = i + 1
      log("pulled " .. i)
      if i <= 3 then return i end
    end, function(x) return -x end, { concurrency = 3 }))
    assert.same({ -1, -2, -3 }, out)
    assert.same({ "pull", "pulled 1", "pull", "pulled 2", "pull", "pulled 3", "pull", "pulled 4" }, trace)
  end)

  it("handles an empty source and fewer items than concurrency", function()
    assert.same({}, collect(sluice.imap({}, function(x) return x end, { concurrency = 4 })))
    assert.same({}, collect(sluice.imap(function() end, function(x) return x end)))
    assert.same({ "a" }, collect(sluice.imap({ "a" }, function(x) return x end, { concurrency = 8 })))
  end)
end)

describe("sluice.imap errors", function()
  it("an error in fn cancels the calls in flight and is raised from the loop", function()
    local trace, log = tracer()
    local boom = setmetatable({}, { __tostring = function() return "boom" end })
    local got = {}
    local ok, err = pcall(function()
      for r in sluice.imap({ 1, 2, 3, 4, 5 }, function(x)
        if x == 3 then sluice.sleep(0.5) error(boom) end
        local done = pcall(sluice.sleep, 1)
        log(x .. (done and " done" or " cancelled"))
        return x
      end, { concurrency = 3 }) do
        got[#got + 1] = r
      end
    end)
    assert.is_false(ok)
    assert.equal(boom, err)               -- the error itself, unchanged
    assert.same({ "1 cancelled", "2 cancelled" }, trace)
    assert.same({}, got)
  end)

  it("an error of the source is raised from the loop", function()
    local n = 0
    local err = error_of(function()
      for _ in sluice.imap(function()
        n = n + 1
        if n == 3 then error("bad source", 0) end
        return n
      end, function(x) return x end) do end
    end)
    assert.equal("bad source", err)
  end)

  it("a nil result is an error", function()
    local err = error_of(function()
      for _ in sluice.imap({ 1, 2 }, function(x) if x == 2 then return nil end return x end) do end
    end)
    assert.same({ "invalid", "sluice.imap: fn returned nil for item 2 (a nil result would end the loop)" },
      { err.kind, err.message })
  end)

  it("close() after an early break cancels the calls in flight and waits for them", function()
    local trace, log = tracer()
    local it = sluice.imap({ 1, 2, 3, 4, 5, 6 }, function(x)
      local ok = pcall(sluice.sleep, x)
      log(x .. (ok and " done" or " cancelled"))
      return x
    end, { concurrency = 2 })
    for r in it do
      if r == 1 then break end
    end
    it:close()
    it:close()                            -- idempotent
    -- the first worker had moved on to item 3: cancelled in worker order
    assert.same({ "1 done", "3 cancelled", "2 cancelled" }, trace)
    assert.is_nil(it())                   -- a closed iterator gives nothing more
    assert.equal("imap (3 pulled, 1 consumed, closed)", tostring(it))
  end)

  it("a loop cancelled while waiting closes the map", function()
    local trace, log = tracer()
    local t = sluice.spawn(function()
      for _ in sluice.imap({ 1, 2 }, function(x)
        local ok = pcall(sluice.sleep, 10)
        log(x .. (ok and " done" or " cancelled"))
        return x
      end, { concurrency = 2 }) do end
    end)
    sluice.sleep(1)
    t:cancel()
    assert.equal("cancelled", select(2, pcall(t.await, t)).kind)
    sluice.yield()
    assert.same({ "1 cancelled", "2 cancelled" }, trace)
  end)

  it("runs its calls in the caller's scope, which ends them", function()
    local trace, log = tracer()
    sluice.scope(function(s)
      s:spawn(function()
        for _ in sluice.imap({ 1 }, function()
          local ok = pcall(sluice.sleep, 10)
          log(ok and "done" or "cancelled")
          return 1
        end) do end
      end)
      sluice.sleep(1)
      s:cancel()
    end)
    assert.same({ "cancelled" }, trace)
  end)

  it("rejects bad arguments", function()
    local fn = function(x) return x end
    local cases = {
      { { 5, fn }, "sluice.imap: source must be a list, an iterator function or a channel (got 5)" },
      { { {}, 5 }, "sluice.imap: fn must be a function (got 5)" },
      { { {}, fn, 5 }, "sluice.imap: opts must be a table (got 5)" },
      { { {}, fn, { concurrency = 0 } }, "sluice.imap: concurrency must be a positive integer (got 0)" },
      { { {}, fn, { concurrency = -1 } }, "sluice.imap: concurrency must be a positive integer (got -1)" },
      { { {}, fn, { concurrency = 1.5 } }, "sluice.imap: concurrency must be a positive integer (got 1.5)" },
      { { {}, fn, { concurrency = 0 / 0 } }, "sluice.imap: concurrency must be a positive integer (got nan)" },
      { { {}, fn, { concurrency = math.huge } }, "sluice.imap: concurrency must be a positive integer (got inf)" },
      { { {}, fn, { concurrency = "2" } }, 'sluice.imap: concurrency must be a positive integer (got "2")' },
      { { {}, fn, { ordered = 1 } }, "sluice.imap: ordered must be a boolean (got 1)" },
    }
    for _, c in ipairs(cases) do
      local err = error_of(sluice.imap, unpack(c[1], 1, 3))
      assert.same({ "invalid", c[2] }, { err.kind, err.message })
    end
    local err = error_of(sluice.imap({}, fn).close, {})
    assert.equal("imap:close: expected an imap iterator (got table)", err.message)
  end)

  it("a loop where the task cannot yield raises", function()
    local it = sluice.imap({ 1 }, function(x) return x end)
    local err
    table.sort({ 1, 2 }, function(a, b)
      if not err then err = select(2, pcall(it)) end
      return a < b
    end)
    assert.equal("sluice.imap: cannot block here (inside a C call such as a table.sort comparator or a string.gsub callback)",
      err.message)
    assert.same({ 1 }, collect(it))
  end)
end)
