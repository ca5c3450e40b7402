-- examples/pool_exhaustion.lua as a child process, the story compressed
-- into 2 s per run (--seconds 2: acquire_timeout 0.2 s, analytics queries
-- of 0.4 s).  It starts and stops its own redis-server, on the real
-- clock, so the counts vary from run to run: the spec checks their
-- shape (timeouts in the naive run, described by the pool; none in the
-- fixed run), not exact figures.
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

-- The text of one run's section ("run 1" or "run 2").
local function section(out, n)
  local from = assert(out:find("\nrun " .. n .. ", ", 1, true), out)
  local to = out:find("\nrun " .. (n + 1) .. ", ", from + 1, true)
  return out:sub(from + 1, to and to - 1 or -1)
end

describe("examples/pool_exhaustion.lua", function()
  it("exhausts the shared pool, then holds with a separate pool and a semaphore", function()
    local out, status = run("examples/pool_exhaustion.lua --seconds 2")
    assert.are.equal(0, status, out)
    assert.truthy(out:find("pool exhaustion at 3 AM: 200 requests/s for 2 s; at t = 0.2 s, " ..
      "50 analytics queries of 0.4 s each\n", 1, true), out)

    local naive = section(out, 1)
    assert.truthy(naive:find("^run 1, naive: requests and analytics share the pool of 20\n"), naive)
    local sent, answered, timeouts = naive:match("requests +(%d+) sent, (%d+) answered, (%d+) timed out\n")
    assert.are.equal("400", sent, naive)
    assert.is_true(tonumber(timeouts) > 0, naive)
    assert.are.equal(400, tonumber(answered) + tonumber(timeouts), naive)
    assert.truthy(naive:find("request pool   20 of 20 connections in use at the peak", 1, true), naive)
    assert.truthy(naive:find("first timeout  pool:with: timed out after 0.2 s " ..
      "%(pool size 20, max 20, active 20, idle 0, waiting %d+%)\n"), naive)
    assert.truthy(naive:find("verdict        FAIL: " .. timeouts .. " requests %([%d.]+%%%) timed out: " ..
      "the analytics queries held all 20 connections\n"), naive)
    assert.truthy(naive:find("latency        p50 [%d.]+ ms   p99 [%d.]+ ms   max [%d.]+ ms"), naive)

    local fixed = section(out, 2)
    assert.truthy(fixed:find("^run 2, fixed: analytics on their own pool of 5 behind semaphore%(5%)\n"), fixed)
    assert.truthy(fixed:find("requests       400 sent, 400 answered, 0 timed out\n", 1, true), fixed)
    assert.falsy(fixed:find("first timeout", 1, true), fixed)
    assert.falsy(fixed:find("first error", 1, true), fixed)
    assert.truthy(fixed:find("analytics      %d+ of 50 queries done, 0 timed out waiting for a connection"), fixed)
    assert.truthy(fixed:find("verdict        OK: no request timed out; " ..
      "the analytics ran 5 at a time on their own pool\n", 1, true), fixed)
  end)

  it("rejects a bad option", function()
    local out, status = run("examples/pool_exhaustion.lua --seconds 0")
    assert.are.equal(1, status)
    assert.are.equal("pool_exhaustion: --seconds needs a positive number\n", out)
    out, status = run("examples/pool_exhaustion.lua --fast")
    assert.are.equal(1, status)
    assert.are.equal("usage: sluice examples/pool_exhaustion.lua [--seconds N]\n", out)
  end)
end)
