-- The HTTP examples, as child processes at reduced sizes (real clock,
-- real sockets on 127.0.0.1).
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

local function has(out, s) assert.truthy(out:find(s, 1, true), out) end

describe("the HTTP examples", function()
  it("fetch_many.lua: a limit keeps the descriptors flat, no limit does not", function()
    local out, status = run("examples/fetch_many.lua --n 500 --limit 10 --unlimited 300")
    assert.are.equal(0, status, out)
    has(out, "500 requests in ")
    has(out, "failures: 0")
    local limited = tonumber(out:match("limit%(10%): 500 requests opened at most (%d+) descriptors"))
    local unlimited = tonumber(out:match("no limit: 300 requests opened (%d+),"))
    assert.truthy(limited and limited <= 2 * 10 + 5, out)   -- both ends of 10 connections
    assert.truthy(unlimited and unlimited > 100, out)
  end)

  it("webhook_storm.lua: no failure, the global limit and 10/s per destination held", function()
    local out, status = run("examples/webhook_storm.lua --deliveries 1500 --destinations 100 --concurrency 50")
    assert.are.equal(0, status, out)
    has(out, "delivered        1500 of 1500")
    has(out, "failures         0")
    local peak = tonumber(out:match("peak in flight   (%d+) %(limit 50%)"))
    assert.truthy(peak and peak <= 50, out)
    local sent = tonumber(out:match("busiest 1 s      at most (%d+) deliveries sent to one destination"))
    local arrived = tonumber(out:match("and at most (%d+) arrived there %(limit 10/s%)"))
    assert.truthy(sent and sent <= 10 and sent >= 5, out)
    assert.truthy(arrived and arrived <= 10, out)
    has(out, "every delivery made; no destination got more than its rate")
  end)

  it("hedged.lua: hedging lowers p99 and the losers are aborted at the server", function()
    local out, status = run("examples/hedged.lua --n 300")
    assert.are.equal(0, status, out)
    local before, after = out:match("p99 (%d+) ms %-> (%d+) ms with a hedge after 50 ms")
    assert.truthy(before and tonumber(after) < tonumber(before), out)
    local aborted = tonumber(out:match("losers aborted: (%d+) server handlers cancelled"))
    assert.truthy(aborted and aborted > 0, out)
    has(out, "failures: 0")
  end)

  it("thundering_herd.lua: one origin hit with sluice.cache, one per request without", function()
    local out, status = run("examples/thundering_herd.lua --n 300")
    assert.are.equal(0, status, out)
    has(out, "origin hits: 300 without sluice.cache, 1 with it")
    has(out, "failures: 0")
  end)

  it("adaptive_http.lua: the AIMD limit settles near the server's knee", function()
    local out, status = run("examples/adaptive_http.lua --seconds 2 --clients 60 --knee 20")
    assert.are.equal(0, status, out)
    has(out, "converged near the knee")
  end)

  it("rejects a bad size", function()
    local out, status = run("examples/webhook_storm.lua --deliveries 0")
    assert.are.equal(1, status)
    assert.are.equal("webhook_storm: --deliveries needs a positive integer\n", out)
  end)
end)
