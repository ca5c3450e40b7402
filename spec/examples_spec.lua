-- The runnable examples, as child processes (synchronous bodies).
local BIN = os.getenv("SLUICE_BIN") or "build/sluice"

local function run(args)
  local out = os.tmpname()
  local p = assert(io.popen("'" .. BIN .. "' " .. args .. " </dev/null >" .. out .. " 2>&1; echo $?"))
  local status = tonumber(p:read("*a"))
  p:close()
  local f = assert(io.open(out, "rb"))
  local text = f:read("*a")
  f:close()
  os.remove(out)
  return text, status
end

describe("examples/demo.lua", function()
  it("holds its limit of 50 and reports exact figures on the virtual clock", function()
    local out, status = run("examples/demo.lua --fast --requests 2000")
    assert.are.equal(0, status, out)
    assert.truthy(out:find("sluice demo: 2000 simulated requests, latency 5-200 ms, at most 50 at a time (virtual clock)", 1, true), out)
    assert.truthy(out:find("peak concurrency 50 (limit 50)", 1, true), out)
    assert.truthy(out:find("the limit held", 1, true), out)
  end)

  it("is repeatable: the same seed gives the same simulated run", function()
    local a = run("examples/demo.lua --fast --requests 500 --limit 7 --seed 3")
    local b = run("examples/demo.lua --fast --requests 500 --limit 7 --seed 3")
    a = a:gsub("simulated in [%d.]+ s", "")
    b = b:gsub("simulated in [%d.]+ s", "")
    assert.are.equal(a, b)
    assert.truthy(a:find("peak concurrency 7 (limit 7)", 1, true), a)
  end)

  it("rejects a bad option", function()
    local out, status = run("examples/demo.lua --limit 0")
    assert.are.equal(1, status)
    assert.are.equal("demo: --limit needs a positive integer\n", out)
  end)
end)
