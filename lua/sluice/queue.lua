-- sluice.queue{...}: p-queue, the Lua face of lib/sl_jobq.c.
--
-- A queue is the C struct itself (an FFI cdata with a finaliser).
-- q:add(fn, opts, ...) returns a handle, a 4-byte cdata that acts as a
-- task (await, cancel, result, status).  The job itself is a slot: a
-- record in C plus, here, the function (and its argument, or a packed
-- {fn, args...}), the handle and the queue in arrays indexed by the slot
-- (the queue there keeps it alive while it has pending jobs).
--
-- Jobs run in runners, as sluice.limit's calls do: a runner is a task
-- holding one place, which runs its first job and then, as long as C
-- hands it the next (sl_jobq_continue), the following ones.  When the
-- interval cap holds a start back, C parks one runner (the keeper) until
-- the window frees; woken, it takes a job and spawns runners for the
-- further starts the window allows.  Runners live in the root scope: the
-- queue is a service, its jobs are not the adding task's children.
--
-- The handles and the runners' loop are the ones sluice.limit's calls
-- use too (lua/sluice/handles.lua), over this primitive's C functions.
local ffi = require "ffi"
local bit = require "bit"
local sffi = require "sluice.ffi"
local core = require "sluice.core"
local call_handles = require "sluice.handles"

local C, fail = sffi.C, sffi.fail
local type, error, tostring, setmetatable, pairs = type, error, tostring, setmetatable, pairs
local floor, huge, fmt = math.floor, math.huge, string.format
local rshift, band = bit.rshift, bit.band
local c_spawn, c_current = core.spawn, core.current

local weak = { __mode = "k" }
local QUEUE_OPTS = { concurrency = true, interval = true, interval_cap = true, max_size = true,
                     timeout = true, autostart = true }

return function(M, I)
  local raise, describe, raise_cancelled, new_error = I.raise, I.describe, I.raise_cancelled, I.new_error
  local co_yield, co_isyieldable, PARK = I.co_yield, I.co_isyieldable, I.PARK
  local keep_traceback = I.keep_traceback

  ---------------------------------------------------------------- handles

  local H = call_handles(I, {
    ctype = "sl_qjob", label = "queued job", state = C.sl_jobq_state, await = C.sl_jobq_await,
    drop = C.sl_jobq_drop, of = C.sl_jobq_of, prim = C.sl_jobq_prim,
  })
  local handles, running, task_of = H.handles, H.running, H.task_of
  local forget, cancel_error = H.forget, H.cancel_error

  local queue_t = ffi.typeof("sl_jobq")
  local qjob_t = ffi.typeof("sl_qjob")
  -- The options each queue was made with, for its fields and messages.
  local conf = setmetatable({}, weak)

  ---------------------------------------------------------------- runners

  local runner, ended, after_take

  -- Spawns runners for the places C reserves for pending jobs.
  local function dispatch(q)
    while C.sl_jobq_next(q) ~= 0 do
      C.sl_jobq_adopt(q, c_spawn(runner, q))
    end
  end

  -- A runner's loop: H.run starts the job in slot, ended takes its
  -- outcome (xpcall's answer), after_take goes on with C's next answer.

  function ended(q, me, slot, h, ok, ...)
    running[slot] = nil
    local limit_s = C.sl_jobq_timed_out(slot)
    if not ok or limit_s > 0 then
      -- the runner ends with the job's error, which its handle answers
      task_of[h] = me
      C.sl_jobq_fail(q, slot)
      dispatch(q)
      if limit_s > 0 then
        error(new_error("timeout", "queue: job timed out after " .. describe(limit_s) .. " s", 1), 0)
      end
      keep_traceback()
      error((...), 0)
    end
    H.done(h, ...)
    return after_take(q, me, C.sl_jobq_continue(q, slot))
  end

  -- r: a slot to run, 0 to end, -1 parked as the keeper (yield here,
  -- woken when the window frees, or to leave).
  function after_take(q, me, r)
    if r > 0 then return H.run(ended, q, me, r) end
    if r == 0 then return dispatch(q) end
    co_yield(PARK)
    r = C.sl_jobq_retake(q)
    if r > 0 then dispatch(q) end   -- the window may allow more starts
    return after_take(q, me, r)
  end

  function runner(q)
    return after_take(q, c_current(), C.sl_jobq_begin(q))
  end

  ---------------------------------------------------------------- checks

  local function check_self(q, fn)
    if not ffi.istype(queue_t, q) then
      raise("invalid", fmt("queue:%s: expected a queue (got %s)", fn, type(q)), 3)
    end
  end

  local function is_count(v, allow_huge)
    return type(v) == "number" and v >= 1 and (v == floor(v) and v ~= huge or (allow_huge and v == huge))
  end

  local function check_count(fname, name, v, allow_huge, level)
    if not is_count(v, allow_huge) then
      raise("invalid", fmt("%s: %s must be a positive integer%s (got %s)", fname, name,
        allow_huge and " or math.huge" or "", describe(v)), level + 1)
    end
  end

  local function check_positive(fname, name, v, level)
    if type(v) ~= "number" or v ~= v or v <= 0 or v == huge then
      raise("invalid", fmt("%s: %s must be a finite positive number (got %s)", fname, name, describe(v)),
        level + 1)
    end
  end

  ---------------------------------------------------------------- methods

  local methods = {}

  -- q:add(fn [, opts [, ...]]) -> handle; fn(...) runs when a place is
  -- free, the interval cap allows and no better job is pending.
  function methods.add(q, fn, opts, ...)
    check_self(q, "add")
    if type(fn) ~= "function" then
      raise("invalid", "queue:add: fn must be a function (got " .. describe(fn) .. ")", 2)
    end
    local prio, timeout = 0, -1
    if opts ~= nil then
      if type(opts) ~= "table" then
        raise("invalid", "queue:add: opts must be a table (got " .. describe(opts) .. ")", 2)
      end
      for k in pairs(opts) do
        if k ~= "priority" and k ~= "timeout" then
          raise("invalid", "queue:add: unknown option " .. describe(k), 2)
        end
      end
      local p = opts.priority
      if p ~= nil then
        if type(p) ~= "number" or p ~= p or p == huge or p == -huge then
          raise("invalid", "queue:add: priority must be a finite number (got " .. describe(p) .. ")", 2)
        end
        prio = p
      end
      if opts.timeout ~= nil then
        check_positive("queue:add", "timeout", opts.timeout, 2)
        timeout = opts.timeout
      end
    end
    local r = C.sl_jobq_submit(q, prio, timeout)
    if r <= 0 then
      if r == -6 then
        raise("full", "queue:add: the queue is full (max_size " .. describe(conf[q].max_size) .. ")", 2)
      end
      if r == -1 then fail(I, r, "queue:add") end
      raise("invalid", "queue:add: out of memory", 2)
    end
    local slot = rshift(r, 1)
    local h = qjob_t(slot)
    H.store(slot, h, q, fn, ...)
    if band(r, 1) == 1 then C.sl_jobq_adopt(q, c_spawn(runner, q)) end
    return h
  end

  -- No job starts until q:start(); running jobs go on.
  function methods.pause(q)
    check_self(q, "pause")
    C.sl_jobq_pause(q)
  end

  function methods.start(q)
    check_self(q, "start")
    C.sl_jobq_start(q)
    dispatch(q)
  end

  -- Pending jobs end cancelled (their awaiters get the error).
  function methods.clear(q)
    check_self(q, "clear")
    local e
    local slot = C.sl_jobq_drop_any(q)
    while slot ~= 0 do
      e = e or cancel_error("queue:clear()", 2)
      forget(slot, handles[slot], e)
      slot = C.sl_jobq_drop_any(q)
    end
  end

  -- The answer of a wait after C parked the task (r = 0) or not.
  local function waited(fname, r)
    if r == 1 then return end
    if r <= sffi.WOKEN then
      if r == sffi.WOKEN and C.sl_ffi_cancel_pending() == 0 then return end
      raise_cancelled(3)
    end
    fail(I, r, fname, r == -4 and "deadlock: called from a job of this queue, " ..
      "which keeps it busy until the job returns" or nil, 2)
  end

  -- q:on_empty(): blocks until no job is pending (running ones may be).
  function methods.on_empty(q)
    check_self(q, "on_empty")
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_jobq_wait(q, 1, can_block)
    if r == 0 then r = sffi.WOKEN - co_yield(PARK) end
    return waited("queue:on_empty", r)
  end

  -- q:on_idle(): blocks until no job is pending and none is running.
  function methods.on_idle(q)
    check_self(q, "on_idle")
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_jobq_wait(q, 0, can_block)
    if r == 0 then r = sffi.WOKEN - co_yield(PARK) end
    return waited("queue:on_idle", r)
  end

  -- q:on_size_less_than(n): blocks until fewer than n jobs are pending.
  function methods.on_size_less_than(q, n)
    check_self(q, "on_size_less_than")
    check_count("queue:on_size_less_than", "n", n, false, 2)
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_jobq_wait(q, n, can_block)
    if r == 0 then r = sffi.WOKEN - co_yield(PARK) end
    return waited("queue:on_size_less_than", r)
  end

  -- q:stats() -> counts and wait times (from add to start); hist[i]
  -- counts the waits shorter than 2^(i-1) microseconds (the last: all
  -- longer ones).
  function methods.stats(q)
    check_self(q, "stats")
    local t = sffi.stats(C.sl_jobq_prim(q), {
      concurrency = C.sl_jobq_concurrency(q), size = C.sl_jobq_size(q),
      pending = C.sl_jobq_running(q), running = C.sl_jobq_running(q),
      throttled = C.sl_jobq_throttled(q), is_paused = C.sl_jobq_paused(q) ~= 0,
    })
    -- a grant is a start; those waiting are tasks awaiting pending jobs
    t.started, t.started_after_wait, t.awaiting = t.acquired, t.waited, t.waiting
    t.acquired, t.waited, t.waiting = nil, nil, nil
    return t
  end

  local getters = {
    size = function(q) return C.sl_jobq_size(q) end,
    pending = function(q) return C.sl_jobq_running(q) end,
    running = function(q) return C.sl_jobq_running(q) end,
    is_paused = function(q) return C.sl_jobq_paused(q) ~= 0 end,
    concurrency = function(q) return C.sl_jobq_concurrency(q) end,
    interval = function(q) return conf[q].interval end,
    interval_cap = function(q) return conf[q].interval_cap end,
    max_size = function(q) return conf[q].max_size end,
    timeout = function(q) return conf[q].timeout end,
  }

  ffi.metatype("sl_jobq", {
    __index = sffi.indexer(methods, getters),
    __newindex = function(q, k, v)
      if k ~= "concurrency" then
        raise("invalid", fmt("queue: field '%s' is read-only", tostring(k)), 2)
      end
      check_count("queue", "concurrency", v, true, 2)
      C.sl_jobq_set_concurrency(q, v)
      dispatch(q)
    end,
    __tostring = function(q)
      return fmt("queue (%d running, %d pending%s)", C.sl_jobq_running(q), C.sl_jobq_size(q),
        C.sl_jobq_paused(q) ~= 0 and ", paused" or "")
    end,
  })

  -- sluice.queue{concurrency=, interval=, interval_cap=, max_size=,
  -- timeout=, autostart=} -> queue
  function M.queue(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then
      raise("invalid", "queue: opts must be a table (got " .. describe(opts) .. ")", 2)
    end
    for k in pairs(opts) do
      if not QUEUE_OPTS[k] then raise("invalid", "queue: unknown option " .. describe(k), 2) end
    end
    local conc, interval, icap = opts.concurrency, opts.interval, opts.interval_cap
    local max_size, timeout, autostart = opts.max_size, opts.timeout, opts.autostart
    if conc == nil then conc = huge end
    check_count("queue", "concurrency", conc, true, 2)
    if interval ~= nil then check_positive("queue", "interval", interval, 2) end
    if icap ~= nil then check_count("queue", "interval_cap", icap, false, 2) end
    if (interval == nil) ~= (icap == nil) then
      raise("invalid", interval == nil and "queue: interval_cap needs interval (the window it counts starts in)"
        or "queue: interval needs interval_cap (how many starts the window allows)", 2)
    end
    if max_size == nil then max_size = huge end
    check_count("queue", "max_size", max_size, true, 2)
    if timeout ~= nil then check_positive("queue", "timeout", timeout, 2) end
    if autostart == nil then autostart = true end
    if type(autostart) ~= "boolean" then
      raise("invalid", "queue: autostart must be a boolean (got " .. describe(autostart) .. ")", 2)
    end
    local q = C.sl_jobq_new(conc, interval or 0, icap or 0, timeout or 0, max_size, autostart and 0 or 1)
    if q == nil then raise("invalid", "queue: out of memory", 2) end
    q = ffi.gc(q, C.sl_jobq_free)
    conf[q] = { interval = interval, interval_cap = icap, max_size = max_size, timeout = timeout }
    return q
  end

  -- For tests and benchmarks: the C side's bytes (records, heaps, rings).
  M._queue_bytes = function() return C.sl_jobq_bytes() end
end
