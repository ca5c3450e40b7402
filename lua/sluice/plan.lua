-- sluice.plan: capacity arithmetic for choosing limits and pool sizes.
--
-- concurrency  Little's law, L = λW: at λ arrivals per second each taking
--              W seconds, L operations are in flight on average.  A limit
--              of exactly L queues half the time, so it is multiplied by a
--              headroom for variance, 1 + cv² where cv is the coefficient
--              of variation of the latency (standard deviation / mean):
--              2× for exponential latencies (cv = 1), 3× at cv = √2, and
--              fast growing beyond, the article's "2-3× the minimum".
-- erlang_c     the M/M/c queue (Poisson arrivals, exponential service, c
--              servers): the probability that an arrival must wait and the
--              mean wait.  Erlang B is computed by its recurrence
--              B(0) = 1, B(k) = A·B(k-1) / (k + A·B(k-1)), which stays in
--              [0, 1] (no A^c or c! to overflow), then
--              C = c·B / (c - A·(1 - B)) and mean wait = C·S / (c - A),
--              with A = λS the offered load in Erlangs.
-- pool_size    the fewest servers (pool connections, workers) whose mean
--              wait is within a bound, by continuing the same recurrence.
local type, pairs = type, pairs
local floor, ceil, abs, exp, huge, max = math.floor, math.ceil, math.abs, math.exp, math.huge, math.max
local fmt = string.format

return function(M, I)
  local raise, describe = I.raise, I.describe

  local function check_args(fname, opts, known)
    if type(opts) ~= "table" then
      raise("invalid", fmt("%s: opts must be a table (got %s)", fname, describe(opts)), 3)
    end
    for k in pairs(opts) do
      if not known[k] then raise("invalid", fmt("%s: unknown option %s", fname, describe(k)), 3) end
    end
  end

  -- A finite positive number (non-negative if allow_zero), or the default
  -- when absent and one is given.
  local function number(fname, opts, name, allow_zero, default)
    local v = opts[name]
    if v == nil and default ~= nil then return default end
    if type(v) ~= "number" or v ~= v or v == huge or v < 0 or (v == 0 and not allow_zero) then
      raise("invalid", fmt("%s: %s must be a %s number (got %s)", fname, name,
        allow_zero and "finite non-negative" or "finite positive", describe(v)), 3)
    end
    return v
  end

  -- ceil, but a product such as 1000 × 0.005 that lands a rounding error
  -- above an integer stays that integer.
  local function ceil_near(x)
    local r = floor(x + 0.5)
    if abs(x - r) <= 1e-9 * max(1, x) then return r end
    return ceil(x)
  end

  local plan = {}
  M.plan = plan

  -- plan.concurrency{rate=, latency=, cv=1} -> {rate=, latency=, cv=,
  -- in_flight=, headroom=, limit=}
  function plan.concurrency(opts)
    local F = "sluice.plan.concurrency"
    check_args(F, opts, { rate = true, latency = true, cv = true })
    local rate, latency = number(F, opts, "rate"), number(F, opts, "latency")
    local cv = number(F, opts, "cv", true, 1)
    local in_flight = rate * latency
    local headroom = 1 + cv * cv
    return { rate = rate, latency = latency, cv = cv, in_flight = in_flight,
      headroom = headroom, limit = max(1, ceil_near(in_flight * headroom)) }
  end

  -- Erlang B for load a and c servers, by the recurrence; b0, k0 resume
  -- it from B(k0) = b0.
  local function erlang_b(a, c, b0, k0)
    local b = b0 or 1
    for k = (k0 or 0) + 1, c do b = a * b / (k + a * b) end
    return b
  end

  -- The M/M/c figures for load a (Erlangs), c servers, mean service s,
  -- given B(c) = b.
  local function figures(rate, s, a, c, b, within)
    local p = c * b / (c - a * (1 - b))
    local wait = p * s / (c - a)
    local r = { servers = c, load = a, utilization = a / c, p_wait = p, mean_wait = wait,
      mean_queue = rate * wait, mean_response = wait + s }
    if within then r.within = 1 - p * exp(-(c - a) * within / s) end
    return r
  end

  local function count(fname, opts, name)
    local v = opts[name]
    if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
      raise("invalid", fmt("%s: %s must be a positive integer (got %s)", fname, name, describe(v)), 3)
    end
    return v
  end

  -- plan.erlang_c{rate=, service=, servers=, within=} -> {p_wait=,
  -- mean_wait=, utilization=, load=, servers=, mean_queue=,
  -- mean_response=, within=P(wait <= within) if asked}
  function plan.erlang_c(opts)
    local F = "sluice.plan.erlang_c"
    check_args(F, opts, { rate = true, service = true, servers = true, within = true })
    local rate, s = number(F, opts, "rate"), number(F, opts, "service")
    local c = count(F, opts, "servers")
    local within = opts.within ~= nil and number(F, opts, "within", true) or nil
    local a = rate * s
    if a >= c then
      raise("invalid", fmt("%s: unstable: utilization %s >= 1 (load %s Erlangs on %d server%s)",
        F, describe(a / c), describe(a), c, c == 1 and "" or "s"), 2)
    end
    return figures(rate, s, a, c, erlang_b(a, c), within)
  end

  -- plan.pool_size{rate=, service=, max_wait=, within=} -> the erlang_c
  -- figures of the fewest servers whose mean wait is <= max_wait.
  function plan.pool_size(opts)
    local F = "sluice.plan.pool_size"
    check_args(F, opts, { rate = true, service = true, max_wait = true, within = true })
    local rate, s = number(F, opts, "rate"), number(F, opts, "service")
    local max_wait = number(F, opts, "max_wait")
    local within = opts.within ~= nil and number(F, opts, "within", true) or nil
    local a = rate * s
    -- the fewest servers that keep up at all; the wait falls as servers
    -- are added (below S / (c - A) and on to 0), so the search ends
    local c = floor(a) + 1
    local b = erlang_b(a, c)
    while true do
      local r = figures(rate, s, a, c, b, within)
      if r.mean_wait <= max_wait then return r end
      c = c + 1
      b = erlang_b(a, c, b, c - 1)
    end
  end
end
