-- sluice.retry, sluice.breaker, sluice.hedge: resilience built from the
-- runtime's own parts (tasks, sleep, scopes, deadlines), so pure Lua.
--
-- retry    calls fn until it succeeds, sleeping an exponential backoff
--          (base * 2^(k-1), capped, jittered) between attempts.  It reads
--          the deadline of the scopes and timeouts it runs in: a backoff
--          that would end at or after that deadline is not slept, the
--          last error is raised at once instead of a timeout later.
-- breaker  a circuit breaker over a rolling window of BUCKETS time buckets
--          on sluice.now()'s clock.  Its state moves with time as well as
--          with calls (open -> half_open after the cooldown); that move is
--          made lazily, by the next call or read of `state`.  Every state
--          change starts a new generation: a call that started in an
--          earlier one does not count in the current one.
-- hedge    starts one attempt, then another each time `delay` passes
--          with no success (or at once when an attempt fails), in a
--          scope: the first success wins and the scope cancels the rest,
--          which unwind (their cleanups run) before hedge returns.
local core = require "sluice.core"

local type, pairs, pcall, error, select, tostring, setmetatable, unpack =
      type, pairs, pcall, error, select, tostring, setmetatable, unpack
local floor, huge, min, random = math.floor, math.huge, math.min, math.random
local fmt = string.format
local c_now, c_current, c_park, c_wake = core.now, core.current, core.park, core.wake

local BUCKETS = 10          -- buckets per breaker window
local WOKEN, WAKE_CANCEL = 0, 2   -- wake codes of core.park

return function(M, I)
  local raise, describe, new_error, pack = I.raise, I.describe, I.new_error, I.pack
  local raise_cancelled, co_isyieldable, deadline = I.raise_cancelled, I.co_isyieldable, I.deadline

  ------------------------------------------------------------ arguments

  -- Each checker raises at `level` counted from its caller's caller, so
  -- that a constructor's own caller is blamed (level 3 from a checker
  -- called by the constructor).
  local function bad(fname, name, what, v, level)
    raise("invalid", fmt("%s: %s must be %s (got %s)", fname, name, what, describe(v)), level + 1)
  end

  local function is_count(v)
    return type(v) == "number" and v >= 1 and v == floor(v) and v ~= huge
  end

  local function count_opt(fname, name, v, default)
    if v == nil then return default end
    if not is_count(v) then bad(fname, name, "a positive integer", v, 4) end
    return v
  end

  local function seconds_opt(fname, name, v, default, allow_zero)
    if v == nil then return default end
    if type(v) ~= "number" or v ~= v or v == huge or v < 0 or (v == 0 and not allow_zero) then
      bad(fname, name, allow_zero and "a finite non-negative number" or "a finite positive number", v, 4)
    end
    return v
  end

  local function function_opt(fname, name, v)
    if v ~= nil and type(v) ~= "function" then bad(fname, name, "a function", v, 4) end
    return v
  end

  -- opts must be a table (or nil when allowed) with known keys only: a
  -- misspelt option is an error, not a silently ignored default.
  local function check_opts(fname, opts, known, optional)
    if opts == nil and optional then return {} end
    if type(opts) ~= "table" then bad(fname, "opts", "a table", opts, 4) end
    for k in pairs(opts) do
      if not known[k] then
        raise("invalid", fmt("%s: unknown option %s", fname, describe(k)), 4)
      end
    end
    return opts
  end

  local function check_block(fname)
    if not co_isyieldable() then I.blocked(fname) end
  end

  local function is_cancel(err)
    return M.is_error(err, "cancelled")
  end

  ------------------------------------------------------------ retry

  local RETRY_OPTS = { attempts = true, base = true, max_delay = true, jitter = true,
    random = true, retry_if = true, on_retry = true }

  -- The pause after failed attempt k: base * 2^(k-1) capped at max_delay,
  -- then jittered ("full": uniform in [0, d]; "equal": in [d/2, d]).
  local function backoff(o, k)
    local d = min(o.max_delay, o.base * 2 ^ (k - 1))
    if o.jitter then
      local u = o.random()
      if type(u) ~= "number" or not (u >= 0 and u <= 1) then
        raise("invalid", "sluice.retry: random must return a number in [0, 1] (got " ..
          describe(u) .. ")", 3)
      end
      if o.jitter == "full" then d = u * d else d = d / 2 + u * d / 2 end
    end
    return d
  end

  local function retry_options(opts)
    local F = "sluice.retry"
    opts = check_opts(F, opts, RETRY_OPTS, true)
    local o = {
      attempts = count_opt(F, "attempts", opts.attempts, 3),
      base = seconds_opt(F, "base", opts.base, 0.1, true),
      max_delay = seconds_opt(F, "max_delay", opts.max_delay, 10, true),
      random = function_opt(F, "random", opts.random) or random,
      retry_if = function_opt(F, "retry_if", opts.retry_if),
      on_retry = function_opt(F, "on_retry", opts.on_retry),
      jitter = opts.jitter,
    }
    if o.jitter == nil then o.jitter = "full" end
    if o.jitter ~= "full" and o.jitter ~= "equal" and o.jitter ~= false then
      bad(F, "jitter", '"full", "equal" or false', o.jitter, 3)
    end
    return o
  end

  -- sluice.retry(fn, opts) -> fn's results.  fn(attempt) is called until
  -- it returns; the error that ends the retrying is raised unchanged.
  function M.retry(fn, opts)
    I.check_function("sluice.retry", "fn", fn)
    local o = retry_options(opts)
    check_block("sluice.retry")
    for k = 1, o.attempts do
      local r = pack(pcall(fn, k))
      if r[1] then return unpack(r, 2, r.n) end
      local err = r[2]
      if k == o.attempts or is_cancel(err) or (o.retry_if and not o.retry_if(err, k)) then
        error(err, 0)
      end
      local d = backoff(o, k)
      local dl = deadline()
      -- at dl the scope's own timer fires first (it was armed first):
      -- an attempt due then could not start, so give up now
      if dl and c_now() + d >= dl then error(err, 0) end
      if o.on_retry then o.on_retry(err, k, d) end
      M.sleep(d)
    end
  end

  ------------------------------------------------------------ breaker

  local BREAKER_OPTS = { failure_ratio = true, min_calls = true, window = true, cooldown = true,
    half_open = true, on_change = true, failure_if = true }

  local state_of = setmetatable({}, { __mode = "k" })   -- breaker -> its record
  local breaker_methods = {}
  local breaker_mt = { __metatable = "breaker" }

  local function check_self(b, fname)
    local st = state_of[b]
    if not st then
      raise("invalid", fmt("%s: expected a breaker (got %s)", fname, type(b)), 3)
    end
    return st
  end

  -- The bucket that time t falls in, emptied if it last held an older one.
  local function bucket(st, t)
    local n = floor(t * BUCKETS / st.window)
    local i = n % BUCKETS + 1
    if st.stamp[i] ~= n then st.stamp[i], st.calls[i], st.fails[i] = n, 0, 0 end
    return i, n
  end

  local function window_counts(st)
    local _, n = bucket(st, c_now())
    local calls, fails = 0, 0
    for i = 1, BUCKETS do
      local s = st.stamp[i]
      if s > n - BUCKETS and s <= n then calls, fails = calls + st.calls[i], fails + st.fails[i] end
    end
    return calls, fails
  end

  local function move(st, to)
    local from = st.state
    st.state, st.gen, st.trials, st.passed = to, st.gen + 1, 0, 0
    if to == "open" then
      st.until_t = c_now() + st.cooldown
      st.opened = st.opened + 1
    elseif to == "closed" then
      for i = 1, BUCKETS do st.stamp[i] = -huge end
    end
    if st.on_change then st.on_change(from, to) end
  end

  -- The state now: an open breaker whose cooldown is over is half-open.
  local function refresh(st)
    if st.state == "open" and c_now() >= st.until_t then move(st, "half_open") end
    return st.state
  end

  -- A finished call's outcome; calls from an earlier generation (begun
  -- before the last state change) do not count.
  local function record(st, gen, failed)
    if failed then st.failures = st.failures + 1 else st.successes = st.successes + 1 end
    if gen ~= st.gen then return end
    if st.state == "half_open" then
      if failed then return move(st, "open") end
      st.passed = st.passed + 1
      if st.passed >= st.half_open then move(st, "closed") end
      return
    end
    local i = bucket(st, c_now())
    st.calls[i] = st.calls[i] + 1
    if failed then st.fails[i] = st.fails[i] + 1 end
    local calls, fails = window_counts(st)
    if calls >= st.min_calls and fails / calls >= st.failure_ratio then move(st, "open") end
  end

  local function reject(st)
    st.rejected = st.rejected + 1
    local e
    if st.state == "open" then
      local left = st.until_t - c_now()
      e = new_error("open", fmt("breaker:call: breaker is open (half-open in %s s)", describe(left)), 3)
      e.retry_in = left
    else
      e = new_error("open", fmt("breaker:call: breaker is half-open (%d of %d trial call%s admitted)",
        st.trials, st.half_open, st.half_open == 1 and "" or "s"), 3)
    end
    error(e, 0)
  end

  local function settle(st, gen, trial, ok, ...)
    if ok then
      record(st, gen, false)
      return ...
    end
    local err = ...
    if is_cancel(err) then
      st.cancelled = st.cancelled + 1
      if trial and gen == st.gen then st.trials = st.trials - 1 end   -- the slot is free again
    else
      record(st, gen, not st.failure_if or st.failure_if(err) and true or false)
    end
    error(err, 0)
  end

  -- b:call(fn, ...) -> fn(...)'s results; fails fast (kind "open") while
  -- open, or half-open with every trial slot taken.
  function breaker_methods.call(b, fn, ...)
    local st = check_self(b, "breaker:call")
    I.check_function("breaker:call", "fn", fn)
    local state = refresh(st)
    if state == "open" or (state == "half_open" and st.trials >= st.half_open) then reject(st) end
    local trial = state == "half_open"
    if trial then st.trials = st.trials + 1 end
    return settle(st, st.gen, trial, pcall(fn, ...))
  end

  function breaker_methods.stats(b)
    local st = check_self(b, "breaker:stats")
    local state = refresh(st)
    local calls, fails = window_counts(st)
    return { state = state, window_calls = calls, window_failures = fails,
      successes = st.successes, failures = st.failures, cancelled = st.cancelled,
      rejected = st.rejected, opened = st.opened }
  end

  breaker_mt.__index = function(b, k)
    if k == "state" then return refresh(state_of[b]) end
    return breaker_methods[k]
  end
  breaker_mt.__newindex = function(_, k)
    raise("invalid", fmt("breaker: %s cannot be set", describe(k)), 2)
  end
  breaker_mt.__tostring = function(b)
    local st = state_of[b]
    local calls, fails = window_counts(st)
    return fmt("breaker (%s, %d of %d calls failed in the window)", refresh(st), fails, calls)
  end

  local function breaker_options(opts)
    local F = "sluice.breaker"
    opts = check_opts(F, opts, BREAKER_OPTS, true)
    local ratio = opts.failure_ratio
    if ratio == nil then ratio = 0.5
    elseif type(ratio) ~= "number" or not (ratio > 0 and ratio <= 1) then
      bad(F, "failure_ratio", "a number in (0, 1]", ratio, 3)
    end
    return {
      failure_ratio = ratio,
      min_calls = count_opt(F, "min_calls", opts.min_calls, 10),
      window = seconds_opt(F, "window", opts.window, 10),
      cooldown = seconds_opt(F, "cooldown", opts.cooldown, 5),
      half_open = count_opt(F, "half_open", opts.half_open, 1),
      on_change = function_opt(F, "on_change", opts.on_change),
      failure_if = function_opt(F, "failure_if", opts.failure_if),
    }
  end

  -- sluice.breaker([opts]) -> a closed breaker
  function M.breaker(opts)
    local st = breaker_options(opts)
    st.state, st.gen, st.trials, st.passed, st.until_t = "closed", 0, 0, 0, 0
    st.successes, st.failures, st.cancelled, st.rejected, st.opened = 0, 0, 0, 0, 0
    st.stamp, st.calls, st.fails = {}, {}, {}
    for i = 1, BUCKETS do st.stamp[i], st.calls[i], st.fails[i] = -huge, 0, 0 end
    local b = setmetatable({}, breaker_mt)
    state_of[b] = st
    return b
  end

  ------------------------------------------------------------ hedge

  local HEDGE_OPTS = { delay = true, max = true }

  -- The attempts (a list of functions, or max calls of one function) as
  -- a function giving attempt i's function, their number, and the delay.
  local function hedge_options(fns, opts)
    local F = "sluice.hedge"
    opts = check_opts(F, opts, HEDGE_OPTS, false)
    local get, n
    if type(fns) == "function" then
      get, n = function() return fns end, count_opt(F, "max", opts.max, 2)
    elseif type(fns) ~= "table" then
      bad(F, "fns", "a function or a list of functions", fns, 3)
    else
      n = #fns
      if n == 0 then raise("invalid", "sluice.hedge: list is empty", 3) end
      for i = 1, n do
        if type(fns[i]) ~= "function" then bad(F, fmt("list[%d]", i), "a function", fns[i], 3) end
      end
      if opts.max ~= nil then
        raise("invalid", fmt("sluice.hedge: max is for a single function (got a list of %d)", n), 3)
      end
      get = function(i) return fns[i] end
    end
    if opts.delay == nil then bad(F, "delay", "a finite non-negative number", nil, 3) end
    return get, n, seconds_opt(F, "delay", opts.delay, nil, true)
  end

  -- sluice.hedge(fns, {delay=, max=}) -> the first successful attempt's
  -- results; every attempt failed: an "aggregate" error listing them.
  function M.hedge(fns, opts)
    local F = "sluice.hedge"
    local attempt_fn, n, delay = hedge_options(fns, opts)
    check_block(F)
    local winner, errors = nil, {}
    local owed, starter = 0, nil   -- failures not yet answered by a start; parked starter
    M.scope(function(s)
      local function attempt(i)
        local r = pack(pcall(attempt_fn(i), i))
        if winner then   -- a loser: unwinding from the cancellation
          if not r[1] and is_cancel(r[2]) then error(r[2], 0) end
          return
        end
        if r[1] then winner = r; s:cancel(); return end
        errors[i] = r[2]
        owed = owed + 1
        if starter then c_wake(starter) end
      end
      for i = 1, n do
        if winner then break end   -- won while this task was already due to run
        s:spawn(attempt, i)
        if i == n then break end
        if owed > 0 then
          owed = owed - 1
        elseif delay > 0 then
          starter = c_current()
          local why = c_park("hedge", F, delay)
          starter = nil
          if why == WAKE_CANCEL then raise_cancelled(1) end
          if why == WOKEN then owed = owed - 1 end   -- woken by a failure
        end
      end
    end)
    if winner then return unpack(winner, 2, winner.n) end
    local e = new_error("aggregate",
      fmt("sluice.hedge: all %d failed (first: %s)", n, tostring(errors[1])), 2)
    e.errors = errors
    error(e, 0)
  end
end
