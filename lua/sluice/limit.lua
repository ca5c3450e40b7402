-- sluice.limit(n), sluice.map(list, fn, opts): the Lua face of lib/sl_limit.c.
--
-- A limiter is the C struct itself (an FFI cdata with a finaliser), and
-- callable: lim(fn, ...) starts fn(...) as a task at once if a place is
-- free (and returns that task), else queues the call and returns a
-- handle.  A queued call is no task yet: a 32-byte record in C plus, here,
-- the function (or a packed {fn, args...}) and the handle in two arrays
-- indexed by the record's slot.  The handle is a 4-byte cdata that acts
-- as a task (await, cancel, result, status) and forwards to the real task
-- once the call has started.
--
-- A started call's task runs `run`, which tells C when fn has ended so
-- that the next queued call starts (in the scope it was made in).
local ffi = require "ffi"
local sffi = require "sluice.ffi"
local core = require "sluice.core"

local C, fail = sffi.C, sffi.fail
local type, select, error, pcall, tostring, setmetatable, unpack =
      type, select, error, pcall, tostring, setmetatable, unpack
local floor, huge, fmt, max, min = math.floor, math.huge, string.format, math.max, math.min
local c_spawn = core.spawn

local PENDING, DROPPED = 1, 2

return function(M, I)
  local raise, describe, raise_cancelled, new_error = I.raise, I.describe, I.raise_cancelled, I.new_error
  local co_yield, co_isyieldable, PARK, pack = I.co_yield, I.co_isyieldable, I.PARK, I.pack

  local limit_t = ffi.typeof("sl_limit")
  local lcall_t = ffi.typeof("sl_lcall")

  -- Queued calls by slot: the function or {n=, fn, args...}, and the handle.
  local calls, handles = {}, {}
  -- What became of a handle's call: its task, or the error it ended with.
  local task_of = setmetatable({}, { __mode = "k" })
  local dropped = setmetatable({}, { __mode = "k" })

  local function cancel_error(reason, level)
    local e = new_error("cancelled", reason ~= nil and "cancelled: " .. tostring(reason) or "cancelled",
      (level or 1) + 1)
    e.reason = reason
    return e
  end

  local function forget(slot, h, err)
    calls[slot], handles[slot] = nil, nil
    dropped[h] = err
  end

  -- Calls C dropped because their scope was cancelled.
  local function reap(lim)
    local slot = C.sl_limit_reap(lim)
    while slot ~= 0 do
      forget(slot, handles[slot], cancel_error(nil, 2))
      slot = C.sl_limit_reap(lim)
    end
  end

  local dispatch

  local function finish(lim, ok, ...)
    C.sl_limit_leave(lim)
    dispatch(lim)
    if not ok then error((...), 0) end
    return ...
  end

  -- The body of every started call's task.
  local function run(lim, fn, ...)
    if C.sl_limit_begin() ~= 0 then   -- cancelled before it ran
      C.sl_limit_leave(lim)
      dispatch(lim)
      raise_cancelled(2)
    end
    return finish(lim, pcall(fn, ...))
  end

  -- Starts queued calls while places are free.
  function dispatch(lim)
    local slot = C.sl_limit_next(lim)
    while slot ~= 0 do
      local c, h = calls[slot], handles[slot]
      calls[slot], handles[slot] = nil, nil
      local t
      if type(c) == "function" then t = c_spawn(run, lim, c)
      else t = c_spawn(run, lim, unpack(c, 1, c.n)) end
      task_of[h] = t
      C.sl_limit_adopt(lim, t, slot)
      slot = C.sl_limit_next(lim)
    end
    if C.sl_limit_pending(lim) == 0 then reap(lim) end
  end

  -- lim(fn, ...) -> task (started at once) or handle (queued)
  local function call(lim, fn, ...)
    if type(fn) ~= "function" then
      raise("invalid", "limit: fn must be a function (got " .. describe(fn) .. ")", 2)
    end
    if C.sl_limit_enter(lim) ~= 0 then
      local t = c_spawn(run, lim, fn, ...)
      C.sl_limit_adopt(lim, t, 0)
      return t
    end
    local slot = C.sl_limit_queue(lim)
    if slot <= 0 then
      if slot == -2 then   -- the caller's scope is cancelled: never starts
        local h = lcall_t(0)
        dropped[h] = cancel_error(nil, 2)
        return h
      end
      if slot == -1 then fail(I, slot, "limit") end
      raise("invalid", "limit: out of memory", 2)
    end
    local h = lcall_t(slot)
    handles[slot] = h
    if select("#", ...) == 0 then calls[slot] = fn else calls[slot] = pack(fn, ...) end
    return h
  end

  ---------------------------------------------------------------- handles

  -- The handle's task, or nil and its error, or nil, nil while queued.
  local function resolve(h)
    local t = task_of[h]
    if t then return t end
    local e = dropped[h]
    if e then return nil, e end
    local slot = h.slot
    if handles[slot] == h and C.sl_limit_state(slot) == PENDING then return nil, nil end
    -- dropped by its scope's cancellation (or its limiter is gone)
    if handles[slot] == h then C.sl_limit_drop(slot) end
    e = cancel_error(nil, 3)
    forget(slot, h, e)
    return nil, e
  end

  local hmethods = {}

  function hmethods.await(h)
    while true do
      local t, e = resolve(h)
      if t then return t:await() end
      if e then error(e, 0) end
      local r = C.sl_limit_await(h.slot, co_isyieldable() and 1 or 0)
      if r == 0 then
        if co_yield(PARK) ~= 0 then raise_cancelled(2) end
      elseif r ~= 1 then
        fail(I, r, "task:await")
      end
    end
  end

  function hmethods.cancel(h, reason)
    local t, e = resolve(h)
    if t then return t:cancel(reason) end
    if e then return false end
    local slot = h.slot
    C.sl_limit_drop(slot)
    forget(slot, h, cancel_error(reason, 2))
    return true
  end

  function hmethods.result(h)
    local t, e = resolve(h)
    if t then return t:result() end
    if e then return false, e end
  end

  local hgetters = {
    status = function(h, t, e) return t and t.status or (e and "cancelled" or "pending") end,
    task = function(h, t) return t end,
    cancelled = function(h, t, e) if t then return t.cancelled end return e ~= nil end,
    id = function(h, t) return t and t.id end,
    name = function(h, t) return t and t.name end,
  }

  ffi.metatype("sl_lcall", {
    __index = function(h, k)
      local m = hmethods[k]
      if m then return m end
      local g = hgetters[k]
      if g then return g(h, resolve(h)) end
    end,
    __tostring = function(h)
      local t, e = resolve(h)
      if t then return tostring(t) end
      return e and "limited call (cancelled)" or "limited call (pending)"
    end,
  })

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
