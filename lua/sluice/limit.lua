-- sluice.limit(n), sluice.map(list, fn, opts): the Lua face of lib/sl_limit.c.
--
-- A limiter is the C struct itself (an FFI cdata with a finaliser), and
-- callable: lim(fn, ...) returns a handle, a 4-byte cdata that acts as a
-- task (await, cancel, result, status).  The call itself is a slot: a
-- 32-byte record in C plus, here, the function (and its argument, or a
-- packed {fn, args...}) and the handle in arrays indexed by the slot.
--
-- Calls run in runners: a runner is a task holding one place, which runs
-- its first call and then, as long as C hands it the next queued call
-- (sl_limit_continue), the following ones, without going back through
-- the scheduler.  So a call costs no task and no coroutine of its own;
-- 100 places cost 100 tasks however many calls pass through them.  A
-- call's results go to the handle (weak tables keyed by it); a call that
-- fails ends its runner with the error, which the handle then answers
-- with, as a task would.  Inside a call, sluice.current() is the runner,
-- and cancelling a running call cancels its runner.
local ffi = require "ffi"
local bit = require "bit"
local sffi = require "sluice.ffi"
local core = require "sluice.core"
local call_handles = require "sluice.handles"

local C, fail = sffi.C, sffi.fail
local type, error, tostring = type, error, tostring
local floor, huge, fmt, max, min = math.floor, math.huge, string.format, math.max, math.min
local rshift, band = bit.rshift, bit.band
local c_spawn, c_current = core.spawn, core.current

return function(M, I)
  local raise, describe = I.raise, I.describe
  local co_isyieldable, keep_traceback = I.co_isyieldable, I.keep_traceback

  local limit_t = ffi.typeof("sl_limit")
  local lcall_t = ffi.typeof("sl_lcall")

  local H = call_handles(I, {
    ctype = "sl_lcall", label = "limited call", state = C.sl_limit_state, await = C.sl_limit_await,
    drop = C.sl_limit_drop, of = C.sl_limit_of, prim = C.sl_limit_prim,
  })
  local handles, running, task_of, dropped = H.handles, H.running, H.task_of, H.dropped
  local forget, cancel_error, run = H.forget, H.cancel_error, H.run

  -- Calls C dropped because their scope was cancelled.
  local function reap(lim)
    local slot = C.sl_limit_reap(lim)
    while slot ~= 0 do
      forget(slot, handles[slot], cancel_error(nil, 2))
      slot = C.sl_limit_reap(lim)
    end
  end

  local runner

  -- Spawns runners for the places C reserves for queued calls.
  local function dispatch(lim)
    while C.sl_limit_next(lim) ~= 0 do
      C.sl_limit_adopt(lim, c_spawn(runner, lim))
    end
    if C.sl_limit_pending(lim) == 0 then reap(lim) end
  end

  -- A runner's loop: H.run starts the call in slot, ended takes its
  -- outcome (xpcall's answer) and goes on with the next call.
  local function ended(lim, me, slot, h, ok, ...)
    running[slot] = nil
    if not ok then
      task_of[h] = me
      C.sl_limit_fail(lim, slot)
      dispatch(lim)
      keep_traceback()   -- the runner ends with the call's own traceback
      error((...), 0)
    end
    H.done(h, ...)
    slot = C.sl_limit_continue(lim, slot)
    if slot == 0 then return dispatch(lim) end
    return run(ended, lim, me, slot)
  end

  -- The body of a runner: calls, one after another, from the head on.
  function runner(lim)
    local slot = C.sl_limit_begin(lim)
    if slot == 0 then return dispatch(lim) end
    return run(ended, lim, c_current(), slot)
  end

  -- lim(fn, ...) -> handle
  local function call(lim, fn, ...)
    if type(fn) ~= "function" then
      raise("invalid", "limit: fn must be a function (got " .. describe(fn) .. ")", 2)
    end
    local r = C.sl_limit_submit(lim)
    if r <= 0 then
      if r == -2 then   -- the caller's scope is cancelled: never starts
        local h = lcall_t(0)
        dropped[h] = cancel_error(nil, 2)
        return h
      end
      if r == -1 then fail(I, r, "limit") end
      raise("invalid", "limit: out of memory", 2)
    end
    local slot = rshift(r, 1)
    local h = lcall_t(slot)
    H.store(slot, h, nil, fn, ...)
    if band(r, 1) == 1 then C.sl_limit_adopt(lim, c_spawn(runner, lim)) end
    return h
  end

  ---------------------------------------------------------------- limiters

  local function check_concurrency(v, level)
    if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
      raise("invalid", "limit: concurrency must be a positive integer (got " .. describe(v) .. ")", level + 1)
    end
  end

  local function check_self(s, fn)
    if not ffi.istype(limit_t, s) then
      raise("invalid", fmt("limit:%s: expected a limit (got %s)", fn, type(s)), 3)
    end
  end

  local methods = {}

  -- Queued calls end cancelled (their awaiters get the error).
  function methods.clear_queue(lim)
    check_self(lim, "clear_queue")
    local e
    local slot = C.sl_limit_drop_head(lim)
    while slot ~= 0 do
      e = e or cancel_error("limit:clear_queue()", 2)
      forget(slot, handles[slot], e)
      slot = C.sl_limit_drop_head(lim)
    end
    reap(lim)
  end

  -- lim:stats() -> counts and wait times; hist[i] counts the waits
  -- shorter than 2^(i-1) microseconds (the last: all longer ones).
  function methods.stats(lim)
    check_self(lim, "stats")
    -- the shared fields, named for what a limiter does: a grant is a start,
    -- and those waiting are tasks awaiting queued calls
    local t = sffi.stats(C.sl_limit_prim(lim), {
      concurrency = C.sl_limit_concurrency(lim), active = C.sl_limit_active(lim),
      pending = C.sl_limit_pending(lim),
    })
    t.started, t.started_after_wait, t.awaiting = t.acquired, t.waited, t.waiting
    t.acquired, t.waited, t.waiting, t.timeouts = nil, nil, nil, nil
    return t
  end

  local getters = {
    active_count = function(lim) return C.sl_limit_active(lim) end,
    pending_count = function(lim) return C.sl_limit_pending(lim) end,
    concurrency = function(lim) return C.sl_limit_concurrency(lim) end,
  }

  ffi.metatype("sl_limit", {
    __call = call,
    __index = sffi.indexer(methods, getters),
    __newindex = function(lim, k, v)
      if k ~= "concurrency" then
        raise("invalid", fmt("limit: field '%s' is read-only", tostring(k)), 2)
      end
      check_concurrency(v, 2)
      C.sl_limit_set(lim, v)
      dispatch(lim)
    end,
    __tostring = function(lim)
      return fmt("limit (%d/%d active, %d pending)", C.sl_limit_active(lim),
        C.sl_limit_concurrency(lim), C.sl_limit_pending(lim))
    end,
  })

  function M.limit(concurrency)
    check_concurrency(concurrency, 2)
    return ffi.gc(C.sl_limit_new(concurrency), C.sl_limit_free)
  end

  -- For tests and benchmarks: the C side's bytes (records, scopes).
  M._limit_bytes = function() return C.sl_limit_bytes() end

  ---------------------------------------------------------------- map

  local function progress_bar(n)
    local uv = M.uv
    if not (uv and uv.guess_handle and uv.guess_handle(2) == "tty") then return nil end
    local shown = -1
    return function(done, final)
      local pct = n > 0 and floor(done * 100 / n) or 100
      if pct == shown and not final then return end
      shown = pct
      local w = floor(pct * 30 / 100)
      io.stderr:write(fmt("\r[%s%s] %3d%% %d/%d", ("#"):rep(w), ("."):rep(30 - w), pct, done, n),
        final and "\n" or "")
    end
  end

  -- sluice.map(list, fn, {concurrency = n, progress = bool}) -> results:
  -- fn(list[i], i) for each item, at most n at once; results[i] is the
  -- first result of item i; the first error cancels the rest and is raised.
  function M.map(list, fn, opts)
    if type(list) ~= "table" then
      raise("invalid", "sluice.map: list must be a table (got " .. describe(list) .. ")", 2)
    end
    I.check_function("sluice.map", "fn", fn)
    if opts ~= nil and type(opts) ~= "table" then
      raise("invalid", "sluice.map: opts must be a table (got " .. describe(opts) .. ")", 2)
    end
    local n = #list
    local conc = opts and opts.concurrency
    if conc == nil then conc = max(n, 1) end
    if type(conc) ~= "number" or conc < 1 or conc ~= floor(conc) or conc == huge then
      raise("invalid", "sluice.map: concurrency must be a positive integer (got " .. describe(conc) .. ")", 2)
    end
    if not co_isyieldable() then I.blocked("sluice.map") end
    local results, done = {}, 0
    local bar = opts and opts.progress and progress_bar(n)
    local function item(i)
      results[i] = (fn(list[i], i))
      done = done + 1
      if bar then bar(done) end
    end
    local lim = M.limit(min(conc, max(n, 1)))
    M.scope(function()
      for i = 1, n do lim(item, i) end
    end)
    if bar then bar(done, true) end
    return results
  end
end
