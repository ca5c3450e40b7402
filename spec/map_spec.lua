-- sluice.map: results in input order, bounded concurrency, first error
-- cancels the rest.
local sluice = require "sluice"

describe("sluice.map", function()
  it("returns results in input order with at most n running", function()
    local running, peak = 0, 0
    local t0 = sluice.now()
    local r = sluice.map({ 3, 1, 2, 1 }, function(d, i)
      running = running + 1
      peak = math.max(peak, running)
      sluice.sleep(d)
      running = running - 1
      return d * 10 + i
    end, { concurrency = 2 })
    assert.same({ 31, 12, 23, 14 }, r)
    assert.equal(2, peak)
    assert.equal(t0 + 4, sluice.now())
  end)

  it("handles an empty list", function()
    assert.same({}, sluice.map({}, function() end))
  end)

  it("raises the first error and cancels the rest", function()
    local started, cleaned = 0, 0
    local ok, err = pcall(sluice.map, { 1, 2, 3, 4, 5, 6 }, function(x)
      started = started + 1
      if x == 2 then sluice.sleep(0.5) error("boom " .. x, 0) end
      local ok2, e = pcall(sluice.sleep, 10)
      if not ok2 then cleaned = cleaned + 1 error(e, 0) end
    end, { concurrency = 3 })
    assert.is_false(ok)
    assert.equal("boom 2", err)
    assert.equal(3, started)
    assert.equal(2, cleaned)
  end)

  it("rejects bad arguments", function()
    local ok, err = pcall(sluice.map, 5, print)
    assert.equal("sluice.map: list must be a table (got 5)", err.message)
    ok, err = pcall(sluice.map, {}, 5)
    assert.equal("sluice.map: fn must be a function (got 5)", err.message)
    ok, err = pcall(sluice.map, {}, print, { concurrency = 0 })
    assert.equal("sluice.map: concurrency must be a positive integer (got 0)", err.message)
  end)
end)
