-- sluice.plan: Little's law with headroom, Erlang C (checked against
-- closed forms, an independent direct formula and published figures),
-- pool sizing, arguments.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local msg_of = util.msg_of
local plan = sluice.plan

local function near(expected, got, rel)
  rel = rel or 1e-9
  assert(math.abs(got - expected) <= rel * math.abs(expected),
    ("expected %.17g, got %.17g"):format(expected, got))
end

-- Erlang C straight from its textbook form, in logarithms so that A^c
-- and c! do not overflow: C = X / (sum_{k<c} A^k/k! + X), X = A^c/c! * c/(c-A).
local function direct_erlang_c(a, c)
  local function log_term(k)   -- log(A^k / k!)
    local s = k * math.log(a)
    for j = 2, k do s = s - math.log(j) end
    return s
  end
  local lx = log_term(c) + math.log(c / (c - a))
  local sum = 0
  for k = 0, c - 1 do sum = sum + math.exp(log_term(k) - lx) end
  return 1 / (sum + 1)
end

describe("sluice.plan.concurrency", function()
  it("applies Little's law with a headroom of 1 + cv^2 (cv 1 by default)", function()
    -- the article's database: 1,000 queries/s of 5 ms each
    assert.same({ rate = 1000, latency = 0.005, cv = 1, in_flight = 5, headroom = 2, limit = 10 },
      plan.concurrency { rate = 1000, latency = 0.005 })
    assert.equal(5, plan.concurrency { rate = 1000, latency = 0.005, cv = 0 }.limit)
    assert.equal(15, plan.concurrency { rate = 1000, latency = 0.005, cv = math.sqrt(2) }.limit)
    assert.equal(25, plan.concurrency { rate = 1000, latency = 0.005, cv = 2 }.limit)
  end)

  it("rounds up to a whole limit of at least 1", function()
    local r = plan.concurrency { rate = 10, latency = 0.25, cv = 0 }
    assert.equal(2.5, r.in_flight)
    assert.equal(3, r.limit)
    assert.equal(1, plan.concurrency { rate = 1, latency = 0.001, cv = 0 }.limit)
    assert.equal(3, plan.concurrency { rate = 30, latency = 0.1, cv = 0 }.limit)   -- 3.0000000000000004
  end)

  it("rejects bad options with exact messages", function()
    local P = plan.concurrency
    assert.equal("sluice.plan.concurrency: opts must be a table (got nil)", msg_of(P))
    assert.equal('sluice.plan.concurrency: unknown option "latency_ms"', msg_of(P, { rate = 1, latency_ms = 1 }))
    assert.equal("sluice.plan.concurrency: rate must be a finite positive number (got nil)", msg_of(P, { latency = 1 }))
    for _, v in ipairs { 0, -1, 0 / 0, math.huge } do
      local shown = v ~= v and "nan" or (v == math.huge and "inf" or tostring(v))
      assert.equal("sluice.plan.concurrency: rate must be a finite positive number (got " .. shown .. ")",
        msg_of(P, { rate = v, latency = 1 }))
      assert.equal("sluice.plan.concurrency: latency must be a finite positive number (got " .. shown .. ")",
        msg_of(P, { rate = 1, latency = v }))
    end
    assert.equal("sluice.plan.concurrency: cv must be a finite non-negative number (got -1)",
      msg_of(P, { rate = 1, latency = 1, cv = -1 }))
    assert.equal('sluice.plan.concurrency: cv must be a finite non-negative number (got "1")',
      msg_of(P, { rate = 1, latency = 1, cv = "1" }))
  end)
end)

describe("sluice.plan.erlang_c", function()
  it("matches the closed form for 2 arrivals/s, 1 s service, 3 servers: P(wait) = 4/9", function()
    local r = plan.erlang_c { rate = 2, service = 1, servers = 3 }
    near(4 / 9, r.p_wait)
    near(4 / 9, r.mean_wait)
    near(2 / 3, r.utilization)
    near(8 / 9, r.mean_queue)       -- Little's law on the queue
    near(13 / 9, r.mean_response)
    assert.equal(2, r.load)
    assert.equal(3, r.servers)
  end)

  it("is M/M/1 with one server: P(wait) = utilization, wait = rho S / (1 - rho)", function()
    local r = plan.erlang_c { rate = 0.75, service = 1, servers = 1 }
    near(0.75, r.p_wait)
    near(3, r.mean_wait)
  end)

  it("gives the published call-centre figures: 100 calls/30 min, 180 s each, 14 agents", function()
    local r = plan.erlang_c { rate = 100 / 1800, service = 180, servers = 14, within = 20 }
    near(10, r.load)
    assert.is_true(math.abs(r.p_wait - 0.1741) < 5e-5)       -- 17.41 % wait
    assert.is_true(math.abs(r.mean_wait - 7.8) < 0.05)       -- 7.8 s average speed of answer
    near(direct_erlang_c(10, 14), r.p_wait)
    near(1 - r.p_wait * math.exp(-(14 - 10) * 20 / 180), r.within)
  end)

  it("agrees with the direct formula with many servers, where A^c and c! overflow a naive form", function()
    for _, case in ipairs { { 15, 20 }, { 90, 100 }, { 950, 1000 }, { 0.01, 1 } } do
      local a, c = case[1], case[2]
      local r = plan.erlang_c { rate = a, service = 1, servers = c }
      near(direct_erlang_c(a, c), r.p_wait, 1e-9)
      near(r.p_wait / (c - a), r.mean_wait, 1e-12)
    end
  end)

  it("raises when the load is too much for the servers", function()
    assert.equal("sluice.plan.erlang_c: unstable: utilization 1 >= 1 (load 3 Erlangs on 3 servers)",
      msg_of(plan.erlang_c, { rate = 3, service = 1, servers = 3 }))
    assert.equal("sluice.plan.erlang_c: unstable: utilization 2 >= 1 (load 2 Erlangs on 1 server)",
      msg_of(plan.erlang_c, { rate = 4, service = 0.5, servers = 1 }))
  end)

  it("rejects bad options with exact messages", function()
    local E = plan.erlang_c
    assert.equal("sluice.plan.erlang_c: opts must be a table (got 1)", msg_of(E, 1))
    assert.equal('sluice.plan.erlang_c: unknown option "agents"', msg_of(E, { rate = 1, service = 1, agents = 2 }))
    assert.equal("sluice.plan.erlang_c: service must be a finite positive number (got 0)",
      msg_of(E, { rate = 1, service = 0, servers = 2 }))
    for _, v in ipairs { 0, -1, 1.5, math.huge } do
      local shown = v == math.huge and "inf" or tostring(v)
      assert.equal("sluice.plan.erlang_c: servers must be a positive integer (got " .. shown .. ")",
        msg_of(E, { rate = 1, service = 0.1, servers = v }))
    end
    assert.equal("sluice.plan.erlang_c: within must be a finite non-negative number (got -1)",
      msg_of(E, { rate = 1, service = 0.1, servers = 1, within = -1 }))
  end)
end)

describe("sluice.plan.pool_size", function()
  it("finds the fewest servers whose mean wait is within max_wait", function()
    local r = plan.pool_size { rate = 100 / 1800, service = 180, max_wait = 10 }
    assert.equal(14, r.servers)
    near(plan.erlang_c { rate = 100 / 1800, service = 180, servers = 14 }.p_wait, r.p_wait, 1e-12)
    assert.is_true(r.mean_wait <= 10)
    assert.is_true(plan.erlang_c { rate = 100 / 1800, service = 180, servers = 13 }.mean_wait > 10)
  end)

  it("is minimal over a range of loads and bounds", function()
    for _, case in ipairs { { 2, 1, 0.5 }, { 1000, 0.05, 0.001 }, { 0.5, 1, 100 }, { 400, 0.25, 1e-6 } } do
      local rate, s, w = case[1], case[2], case[3]
      local r = plan.pool_size { rate = rate, service = s, max_wait = w }
      assert.is_true(r.mean_wait <= w)
      local c = r.servers
      if c - 1 > rate * s then
        assert.is_true(plan.erlang_c { rate = rate, service = s, servers = c - 1 }.mean_wait > w)
      end
    end
    assert.equal(1, plan.pool_size { rate = 0.5, service = 1, max_wait = 100 }.servers)
    assert.equal(3, plan.pool_size { rate = 2, service = 1, max_wait = 0.5 }.servers)   -- 4/9 <= 0.5
  end)

  it("rejects bad options with exact messages", function()
    local S = plan.pool_size
    assert.equal("sluice.plan.pool_size: max_wait must be a finite positive number (got 0)",
      msg_of(S, { rate = 1, service = 1, max_wait = 0 }))
    assert.equal("sluice.plan.pool_size: rate must be a finite positive number (got inf)",
      msg_of(S, { rate = math.huge, service = 1, max_wait = 1 }))
    assert.equal('sluice.plan.pool_size: unknown option "servers"',
      msg_of(S, { rate = 1, service = 1, max_wait = 1, servers = 2 }))
  end)
end)
