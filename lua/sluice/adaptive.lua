-- sluice.adaptive{...}: a concurrency limit that finds its own level from
-- the latency and errors of the calls it runs (AIMD, or a gradient
-- limiter after Netflix's), for a backend whose capacity is unknown or
-- changes.
--
-- Gating.  a:run(fn, ...) waits for a permit of one sluice.semaphore
-- (FIFO, lib/sl_sem.c), runs fn, measures its latency on sluice.now()
-- and adjusts the limit.  A new limit is assigned to the semaphore's
-- permits: growing grants queued waiters at once; shrinking never blocks
-- and keeps every queued waiter (calls above the new limit finish and
-- nothing is granted until fewer than the limit run).  The semaphore is
-- never replaced, so no waiter is ever stranded on an old one.
--
-- With drive = a semaphore or a sluice.limit, run() does not gate: it
-- only measures, and the controller sets that primitive's permits or
-- concurrency instead, so calls the primitive already queues (or that
-- acquire it themselves and call a:run inside) follow the limit.
--
-- The estimate is a real number; the limit (the permits) is its floor.
--
-- AIMD.  A success (no error, and latency <= target if target is set)
-- adds increase / estimate: increase per window of `limit` successes,
-- TCP's congestion avoidance (the seed's +increase per success grows the
-- limit by its own size per round trip: exponentially).  It counts only
-- while the limit is in use: when the call started, calls were waiting
-- behind it or inflight * 2 >= limit (itself included, as Netflix's
-- limiters count it); else an idle service would grow the limit to max.
-- A failure (an error, or latency above target) multiplies the estimate by
-- decrease, once per window: a failure of a call that started before the
-- last decrease reflects the old, higher load and does not decrease it
-- again (the seed halves once per failure, collapsing to min on a burst),
-- nor does its success increase it: each adjustment answers the load it
-- measured.
--
-- Gradient (after Netflix's Gradient and Gradient2).  long is the
-- no-load latency: the minimum latency of a successful call over the
-- last one to two windows of long_window seconds (so a lasting change of
-- the baseline is learnt within two windows, and so is a queue that
-- lasts that long: the window bounds how long a standing queue is
-- recognised as one).  short is the mean latency of a round of `limit`
-- successful calls (about one round trip; Netflix wraps Gradient2 in
-- such a window too).  After each round in which the limit
-- was in use (as in AIMD), the estimate becomes
--   gradient = max(0.5, min(1, tolerance * long / short))
--   new      = estimate * gradient + queue_size
--   estimate = estimate * (1 - smoothing) + new * smoothing
-- clamped to [min, max]: a mean latency above tolerance times the
-- no-load latency lowers the limit, one within it lets the queue_size
-- allowance grow it (by queue_size * smoothing per round); it settles
-- where gradient = 1 - queue_size / limit.  (Gradient2 compares with a
-- long average instead, which follows a lasting queue upwards, so the
-- limit would never come down from it.)  Errors, and latency above
-- target, decrease the limit as in AIMD.
--
-- A call cancelled (while waiting or running) counts neither way; errors
-- pass through unchanged.
local ffi = require "ffi"
local sffi = require "sluice.ffi"
local core = require "sluice.core"

local C = sffi.C
local type, error, pcall, setmetatable, getmetatable, rawequal, tostring, next =
      type, error, pcall, setmetatable, getmetatable, rawequal, tostring, next
local floor, huge, fmt, max, min = math.floor, math.huge, string.format, math.max, math.min
local c_now = core.now
local istype = ffi.istype

local OPTIONS = {
  initial = true, min = true, max = true, increase = true, decrease = true, mode = true,
  target = true, on_change = true, drive = true, tolerance = true, smoothing = true,
  queue_size = true, long_window = true,
}

return function(M, I)
  local raise, describe, check_function = I.raise, I.describe, I.check_function
  local co_isyieldable, blocked = I.co_isyieldable, I.blocked

  local sem_ptr = ffi.typeof("sl_sem *")
  local limit_t = ffi.typeof("sl_limit")

  local Adaptive = {}
  local methods = {}
  local getters = {}

  local function check_self(a, fname)
    if not rawequal(getmetatable(a), Adaptive) then
      raise("invalid", fmt("%s: expected an adaptive limit (got %s)", fname, type(a)), 3)
    end
  end

  local function is_cancel(err)
    return M.is_error(err, "cancelled")
  end

  ------------------------------------------------------------ the limit

  -- Sets the estimate; when its floor changes, resizes what is gated and
  -- tells on_change.
  local function set_estimate(a, est)
    est = max(a.min, min(a.max, est))
    a.estimate = est
    local old, new = a.current, floor(est)
    if new == old then return end
    a.current = new
    if a.sem then a.sem.permits = new end
    if a.drive_kind == "semaphore" then a.drive.permits = new
    elseif a.drive_kind == "limit" then a.drive.concurrency = new end
    if a.on_change then a.on_change(old, new) end
  end

  local function decrease(a, epoch)
    a.failures = a.failures + 1
    if epoch < a.epoch then return end   -- started before the last decrease
    a.epoch = a.epoch + 1
    a.decreases = a.decreases + 1
    set_estimate(a, a.estimate * a.decrease)
  end

  -- The latency sample of a successful call, in gradient mode.  The
  -- minimum is kept for the current window of long_window seconds and
  -- the one before it; short is the mean over a round of `limit` calls.
  -- A zero latency (no time passed) says nothing and is skipped.
  local function gradient(a, latency, in_use)
    if latency <= 0 then return end
    a.samples = a.samples + 1
    local now = c_now()
    if now >= a.win_start + a.long_window then
      a.prev_min, a.win_min, a.win_start = a.win_min, huge, now
    end
    if latency < a.win_min then a.win_min = latency end
    local long = min(a.prev_min, a.win_min)
    local rn, rsum = a.round_n + 1, a.round_sum + latency
    local busy = a.round_busy or in_use
    if rn < a.current then
      a.round_n, a.round_sum, a.round_busy = rn, rsum, busy
      return
    end
    a.round_n, a.round_sum, a.round_busy = 0, 0, false
    if not busy then return end
    local g = max(0.5, min(1, a.tolerance * long / (rsum / rn)))
    local new = a.estimate * g + a.queue_size
    set_estimate(a, a.estimate * (1 - a.smoothing) + new * a.smoothing)
  end

  -- A call that started in epoch, finding the limit in use or not (busy),
  -- ended after latency seconds: ok, or failed.
  local function record(a, ok, latency, epoch, busy)
    if ok and a.target and latency > a.target then ok = false end
    if not ok then return decrease(a, epoch) end
    a.successes = a.successes + 1
    local in_use = busy and epoch == a.epoch
    if a.mode == "gradient" then return gradient(a, latency, in_use) end
    if in_use then set_estimate(a, a.estimate + a.increase / a.estimate) end
  end

  ------------------------------------------------------------ methods

  -- The limit is adjusted before the permit is given back, so a decrease
  -- takes effect before the freed place is handed to a waiter.
  local function finish(a, t0, epoch, busy, ok, ...)
    local rok, rerr = true, nil
    if ok or not is_cancel((...)) then
      rok, rerr = pcall(record, a, ok, c_now() - t0, epoch, busy)
    else
      a.cancelled = a.cancelled + 1
    end
    a.inflight = a.inflight - 1
    if a.sem then a.sem:release() end
    if not ok then error((...), 0) end   -- fn's error first: it passes through unchanged
    if not rok then error(rerr, 0) end   -- on_change failed
    return ...
  end

  -- a:run(fn, ...) -> fn(...)'s results, run under the limit.
  function methods.run(a, fn, ...)
    check_self(a, "adaptive:run")
    check_function("adaptive:run", "fn", fn)
    local sem = a.sem
    if sem then
      if not co_isyieldable() then blocked("adaptive:run") end
      sem:acquire()   -- raises if cancelled while waiting: nothing counted
    end
    local inflight = a.inflight + 1
    a.inflight = inflight
    local busy = inflight * 2 >= a.current or getters.waiting(a) > 0
    return finish(a, c_now(), a.epoch, busy, pcall(fn, ...))
  end

  function methods.stats(a)
    check_self(a, "adaptive:stats")
    return {
      limit = a.current, estimate = a.estimate, inflight = a.inflight, waiting = getters.waiting(a),
      successes = a.successes, failures = a.failures, cancelled = a.cancelled,
      decreases = a.decreases, min_latency = a.samples > 0 and min(a.prev_min, a.win_min) or nil,
    }
  end

  getters.limit = function(a) return a.current end
  getters.waiting = function(a)
    if a.sem then return a.sem.waiting end
    if a.drive_kind == "semaphore" then return a.drive.waiting end
    return a.drive.pending_count
  end

  local function check_limit(a, v, level)
    if type(v) ~= "number" or v ~= floor(v) or v < a.min or v > a.max then
      raise("invalid", fmt("adaptive: limit must be an integer from %s to %s (got %s)",
        describe(a.min), describe(a.max), describe(v)), level + 1)
    end
  end

  Adaptive.__index = function(a, k)
    local m = methods[k]
    if m then return m end
    local g = getters[k]
    if g then return g(a) end
  end
  -- a.limit = n sets the limit by hand (the estimate starts again there).
  Adaptive.__newindex = function(a, k, v)
    if k ~= "limit" then
      raise("invalid", fmt("adaptive: field '%s' is %s", tostring(k),
        getters[k] and "read-only" or "not settable"), 2)
    end
    check_limit(a, v, 2)
    set_estimate(a, v)
  end
  Adaptive.__tostring = function(a)
    return fmt("adaptive %s (limit %d, %d running, %d waiting)", a.mode, a.current, a.inflight,
      getters.waiting(a))
  end

  ------------------------------------------------------------ constructor

  -- level 4 (default): the caller of sluice.adaptive, two calls up; 3 from sluice.adaptive itself
  local function bad(name, what, v, level)
    raise("invalid", fmt("adaptive: %s must be %s (got %s)", name, what, describe(v)), level or 4)
  end

  local function int_opt(opts, name, default)
    local v = opts[name]
    if v == nil then return default end
    if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then bad(name, "a positive integer", v) end
    return v
  end

  -- A number in (lo, hi), or in [lo, hi] where closed says so.
  local function num_opt(opts, name, default, lo, hi, what, closed)
    local v = opts[name]
    if v == nil then return default end
    if type(v) ~= "number" or v ~= v or v == huge or v < lo or v > hi or
       (v == lo and closed ~= "lo") or (v == hi and closed ~= "hi") then
      bad(name, what, v)
    end
    return v
  end

  local function drive_opt(v)
    if v == nil then return nil end
    if istype(sem_ptr, v) and C.sl_sem_is_mutex(v) == 0 then return "semaphore" end
    if istype(limit_t, v) then return "limit" end
    bad("drive", "a semaphore or a limit", v)
  end

  -- sluice.adaptive([opts]) -> adaptive limit
  function M.adaptive(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then
      raise("invalid", "adaptive: opts must be a table (got " .. describe(opts) .. ")", 2)
    end
    for k in next, opts do
      if not OPTIONS[k] then raise("invalid", "adaptive: unknown option " .. describe(k), 2) end
    end
    local lo, hi = int_opt(opts, "min", 1), int_opt(opts, "max", 200)
    if lo > hi then bad("max", fmt("at least min (%s)", describe(lo)), hi, 3) end
    local initial = int_opt(opts, "initial", max(lo, min(hi, 10)))
    if initial < lo or initial > hi then
      bad("initial", fmt("from min to max (%s to %s)", describe(lo), describe(hi)), initial, 3)
    end
    local mode = opts.mode == nil and "aimd" or opts.mode
    if mode ~= "aimd" and mode ~= "gradient" then bad("mode", '"aimd" or "gradient"', mode, 3) end
    local a = {
      min = lo, max = hi, mode = mode, estimate = initial, current = initial,
      increase = num_opt(opts, "increase", 1, 0, huge, "a finite positive number"),
      decrease = num_opt(opts, "decrease", 0.5, 0, 1, "a number between 0 and 1 (exclusive)"),
      target = num_opt(opts, "target", false, 0, huge, "a finite positive number"),
      tolerance = num_opt(opts, "tolerance", 1.5, 0, huge, "a finite positive number"),
      smoothing = num_opt(opts, "smoothing", 0.2, 0, 1, "a number in (0, 1]", "hi"),
      queue_size = num_opt(opts, "queue_size", 4, 0, huge, "a finite non-negative number", "lo"),
      long_window = num_opt(opts, "long_window", 60, 0, huge, "a finite positive number"),
      on_change = opts.on_change or false,
      drive = opts.drive or false, drive_kind = drive_opt(opts.drive) or false, sem = false,
      inflight = 0, epoch = 0, samples = 0, win_min = huge, prev_min = huge, win_start = c_now(),
      round_n = 0, round_sum = 0, round_busy = false,
      successes = 0, failures = 0, cancelled = 0, decreases = 0,
    }
    if a.on_change then check_function("adaptive", "on_change", a.on_change, 2) end
    if a.drive_kind == "semaphore" then a.drive.permits = initial
    elseif a.drive_kind == "limit" then a.drive.concurrency = initial
    else a.sem = M.semaphore(initial) end
    return setmetatable(a, Adaptive)
  end
end
