-- sluice.priority_semaphore(n [, {aging = seconds}]): the Lua face of
-- lib/sl_psem.c.
--
-- A counting semaphore whose waiters are granted by priority: lower
-- numbers first, FIFO within a priority.  Priorities are integers (any
-- sign).  With aging, a waiter's priority improves by 1 for every
-- `aging` seconds it has waited, so low priorities are served in the end
-- however busy the high ones keep it.  No barging: a newcomer gets a
-- permit at once only when one is free, and then nobody is queued; a
-- queued waiter is never overtaken by a newcomer of the same or a worse
-- (effective) priority, and one of a better priority only goes ahead of
-- it in the queue, never past a free permit.
--
-- Stats: ps:stats() -> { permits, held, available, waiting, aging,
-- acquired, waited, timeouts, cancelled, wait_total, wait_max,
-- histogram }, as semaphore:stats() (see lua/sluice/semaphore.lua).
local ffi = require "ffi"
local sffi = require "sluice.ffi"

local C, fail, grant, timeout_arg, WOKEN = sffi.C, sffi.fail, sffi.grant, sffi.timeout_arg, sffi.WOKEN
local type, pcall, error, tostring, tonumber, pairs = type, pcall, error, tostring, tonumber, pairs
local floor, huge, fmt = math.floor, math.huge, string.format
local istype = ffi.istype

local NAME = "priority_semaphore"
local NOMEM = -8

return function(M, I)
  local raise, describe = I.raise, I.describe
  local co_isyieldable, co_yield, PARK = I.co_isyieldable, I.co_yield, I.PARK
  local check_function, holding = I.check_function, I.holding

  local psem_ptr = ffi.typeof("sl_psem *")
  local methods = {}

  local function check_self(s, fname)
    if not istype(psem_ptr, s) then
      raise("invalid", fmt("%s: expected a %s (got %s)", fname, NAME, type(s)), 3)
    end
  end

  local function check_permits(v, level)
    if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
      raise("invalid", NAME .. ": permits must be a positive integer (got " .. describe(v) .. ")", level + 1)
    end
  end

  local function check_priority(fname, p)
    if type(p) ~= "number" or p ~= floor(p) or p == huge or p == -huge then
      raise("invalid", fmt("%s: priority must be an integer (got %s)", fname, describe(p)), 3)
    end
  end

  -- Acquires for fname; errors are raised at level 3 (the caller of the
  -- method that called this).
  -- The answer r of sl_psem_acquire (after the yield, when C parked the
  -- task) as the result of fname.  The callers call C and yield in their
  -- own frame, so a parked coroutine needs no deeper stack.
  local function settle(s, r, fname)
    local ok, why = grant(I, r, C.sl_psem_abandon, s)
    if ok then
      if holding.tracking() then holding.note(s) end
      return true
    end
    if ok == nil then return nil, why end
    if why == -4 then holding.raise_deadlock(fname, s, C.sl_psem_prim(s), "permit", 3) end
    fail(I, why, fname, why == NOMEM and "out of memory" or nil, 3)
  end

  -- ps:acquire(priority [, timeout]) -> true | nil, "timeout"
  function methods.acquire(s, priority, timeout)
    local fname = NAME .. ":acquire"
    check_self(s, fname)
    check_priority(fname, priority)
    timeout = timeout_arg(I, fname, timeout)
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_psem_acquire(s, priority, timeout, can_block)
    if r == 0 then r = WOKEN - co_yield(PARK) end
    local ok, why = settle(s, r, fname)
    if ok then return true end   -- exactly one value when granted
    return nil, why
  end

  -- ps:try_acquire() -> true | false, never waits (nor barges)
  function methods.try_acquire(s)
    local fname = NAME .. ":try_acquire"
    check_self(s, fname)
    local r = C.sl_psem_try_acquire(s)
    if r == 1 then
      if holding.tracking() then holding.note(s) end
      return true
    end
    if r == 0 then return false end
    fail(I, r, fname)
  end

  function methods.release(s)
    local fname = NAME .. ":release"
    check_self(s, fname)
    local r = C.sl_psem_release(s)
    if r == 1 then
      holding.forget(s, C.sl_psem_prim(s))
      return
    end
    fail(I, r, fname, r == -5 and "the task does not hold a permit" or nil)
  end

  local function finish(s, ok, ...)
    local r = C.sl_psem_release(s)
    if r == 1 then holding.forget(s, C.sl_psem_prim(s)) end
    if not ok then error((...), 0) end
    if r ~= 1 then
      raise("invalid", NAME .. ":with: fn released what with acquired (the task does not hold a permit any more)", 3)
    end
    return ...
  end

  -- ps:with(priority, fn, ...) -> fn(...)'s results, holding a permit
  -- meanwhile; released on return, error and cancellation.
  function methods.with(s, priority, fn, ...)
    local fname = NAME .. ":with"
    check_self(s, fname)
    check_priority(fname, priority)
    check_function(fname, "fn", fn)
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_psem_acquire(s, priority, -1, can_block)
    if r == 0 then r = WOKEN - co_yield(PARK) end
    settle(s, r, fname)
    return finish(s, pcall(fn, ...))
  end

  -- ps:holders() -> { {task =, count =, acquired_at = traceback or nil}, ... }
  function methods.holders(s)
    check_self(s, NAME .. ":holders")
    return holding.list(s, C.sl_psem_prim(s))
  end

  function methods.stats(s)
    check_self(s, NAME .. ":stats")
    local aging = C.sl_psem_aging(s)
    return sffi.stats(C.sl_psem_prim(s), {
      permits = C.sl_psem_limit(s), held = C.sl_psem_held(s), available = C.sl_psem_available(s),
      aging = aging > 0 and aging or nil,
    })
  end

  local getters = {
    permits = function(s) return C.sl_psem_limit(s) end,
    held = function(s) return C.sl_psem_held(s) end,
    available = function(s) return C.sl_psem_available(s) end,
    waiting = function(s) return C.sl_prim_waiting(C.sl_psem_prim(s)) end,
    aging = function(s)
      local a = C.sl_psem_aging(s)
      return a > 0 and a or nil
    end,
  }

  ffi.metatype("sl_psem", {
    __index = sffi.indexer(methods, getters),
    -- permits: growing grants waiters at once; shrinking never blocks,
    -- holders above the new limit finish and nothing is granted until
    -- fewer than the limit are held.
    __newindex = function(s, k, v)
      if k ~= "permits" then
        raise("invalid", fmt("%s: field '%s' is %s", NAME, tostring(k),
          getters[k] and "read-only" or "not settable"), 2)
      end
      check_permits(v, 2)
      C.sl_psem_set_limit(s, v)
    end,
    __tostring = function(s)
      return fmt("%s (%d/%d held, %d waiting)", NAME, C.sl_psem_held(s), C.sl_psem_limit(s),
        C.sl_prim_waiting(C.sl_psem_prim(s)))
    end,
  })

  local function check_opts(opts)
    if opts == nil then return 0 end
    if type(opts) ~= "table" then
      raise("invalid", NAME .. ": opts must be a table (got " .. describe(opts) .. ")", 3)
    end
    for k in pairs(opts) do
      if k ~= "aging" then raise("invalid", fmt("%s: unknown option '%s'", NAME, tostring(k)), 3) end
    end
    local aging = opts.aging
    if aging == nil then return 0 end
    if type(aging) ~= "number" or aging ~= aging or aging <= 0 or aging == huge then
      raise("invalid", NAME .. ": aging must be a finite positive number of seconds (got " ..
        describe(aging) .. ")", 3)
    end
    return aging
  end

  function M.priority_semaphore(permits, opts)
    check_permits(permits, 2)
    local aging = check_opts(opts)
    local s = C.sl_psem_new(permits, aging)
    if s == nil then raise("invalid", NAME .. ": out of memory", 2) end
    return ffi.gc(s, C.sl_psem_free)
  end
end
