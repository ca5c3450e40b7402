-- sluice.stats().loop_lag and sluice.warn_blocking: how late timers
-- fire (real clock only), and the warning for a task that runs too long
-- without yielding.  The real-clock cases run a child sluice process.
local sluice = require "sluice"
local msg_of = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua").msg_of

local BIN = os.getenv("SLUICE_BIN") or "build/sluice"

-- Runs a Lua script in a child sluice (real clock): its stdout+stderr
-- and exit status.
local function run_child(src)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local p = assert(io.popen("'" .. BIN .. "' " .. path .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return out:gsub("rc=%d+\n$", ""), rc, path
end


local SPIN = [[
local sluice = require "sluice"
%s
local t = sluice.spawn(function()
  local t0 = os.clock()
  while os.clock() - t0 < 0.2 do end
  sluice.sleep(0)
  return "spun"
end)
t.name = "spinner"
print(t:await())
]]

describe("loop lag", function()
  it("is reported by sluice.stats() and stays 0 under the virtual clock", function()
    for _ = 1, 5 do sluice.sleep(0.01) end
    assert.same({ p50 = 0, p99 = 0, max = 0, count = 0 }, sluice.stats().loop_lag)
  end)

  it("measures how late timers fire on the real clock", function()
    local out, rc = run_child([[
local sluice = require "sluice"
for _ = 1, 20 do sluice.sleep(0.002) end
local lag = sluice.stats().loop_lag
print(lag.count >= 20, lag.p50 >= 0, lag.p50 <= lag.p99, lag.p99 <= lag.max, lag.max < 1)
]])
    assert.equal(0, rc)
    assert.equal("true\ttrue\ttrue\ttrue\ttrue\n", out)
  end)
end)

describe("sluice.warn_blocking", function()
  it("warns once, naming the task and where it yielded", function()
    -- (the exit status is not asserted: the host counts every report,
    -- this warning included, as a failure)
    local out = run_child(SPIN:format("assert(sluice.warn_blocking(0.05) == false)"))
    local n = select(2, out:gsub("without yielding", ""))
    assert.equal(1, n)
    local id, secs = out:match("^sluice: task #(%d+) %(spinner%) ran (%d+%.%d+) s without yielding %(warn_blocking 0%.05 s%)\n")
    assert.is_truthy(id)
    assert.is_true(tonumber(secs) >= 0.2)
    assert.is_truthy(out:find("\nstack traceback:\n", 1, true))
    assert.is_truthy(out:find(":6: in function <", 1, true))   -- the sluice.sleep(0) line
    assert.is_truthy(out:find("spun\n", 1, true))
  end)

  it("says nothing when off", function()
    local out, rc = run_child(SPIN:format("sluice.warn_blocking(0.05); assert(sluice.warn_blocking(false) == 0.05)"))
    assert.same({ 0, "spun\n" }, { rc, out })
    out, rc = run_child(SPIN:format(""))
    assert.same({ 0, "spun\n" }, { rc, out })
  end)

  it("returns the previous setting and checks its argument", function()
    assert.is_false(sluice.warn_blocking(1))
    assert.equal(1, sluice.warn_blocking(2.5))
    assert.equal(2.5, sluice.warn_blocking(nil))
    assert.is_false(sluice.warn_blocking(false))
    for _, c in ipairs({ { 0, "0" }, { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" },
                         { "1", '"1"' }, { true, "boolean" } }) do
      assert.equal("sluice.warn_blocking: seconds must be a finite positive number, false or nil (got " ..
        c[2] .. ")", msg_of(sluice.warn_blocking, c[1]))
    end
    assert.is_false(sluice.warn_blocking(false))
  end)
end)
