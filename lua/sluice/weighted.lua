-- sluice.weighted_semaphore(capacity): the Lua face of lib/sl_wsem.c.
--
-- Semantics of Go's golang.org/x/sync/semaphore: acquire(w) takes w
-- units of the capacity at once or waits for them, strictly FIFO; a
-- head waiter that does not fit blocks the smaller ones behind it, so a
-- large request is never starved (no barging).  Weights and the capacity
-- are positive integers (up to 2^53); a weight above the capacity is an
-- error at once, as is a capacity shrunk below a queued weight for that
-- waiter (it could never be granted and would block the queue).
--
-- The object is the C struct itself (an FFI cdata with a finaliser), so
-- an uncontended acquire or release is one JIT-compiled call into C.
--
-- Stats: ws:stats() -> { capacity, held, available, waiting, acquired,
-- waited, timeouts, cancelled, wait_total, wait_max, histogram }, as
-- semaphore:stats() (see lua/sluice/semaphore.lua).
local ffi = require "ffi"
local sffi = require "sluice.ffi"

local C, fail, grant, timeout_arg, WOKEN = sffi.C, sffi.fail, sffi.grant, sffi.timeout_arg, sffi.WOKEN
local type, pcall, error, tostring, tonumber = type, pcall, error, tostring, tonumber
local floor, huge, fmt = math.floor, math.huge, string.format
local istype = ffi.istype

local NAME = "weighted_semaphore"
local WAKE_TOOBIG = 3

return function(M, I)
  local raise, describe = I.raise, I.describe
  local co_isyieldable, co_yield, PARK = I.co_isyieldable, I.co_yield, I.PARK
  local check_function, holding = I.check_function, I.holding

  local wsem_ptr = ffi.typeof("sl_wsem *")
  local MAX = C.sl_wsem_max()
  local methods = {}

  local function check_self(s, fname)
    if not istype(wsem_ptr, s) then
      raise("invalid", fmt("%s: expected a %s (got %s)", fname, NAME, type(s)), 3)
    end
  end

  -- A positive integer up to MAX, else an error naming fname and what.
  local function check_count(fname, what, v, level)
    if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
      raise("invalid", fmt("%s: %s must be a positive integer (got %s)", fname, what, describe(v)), level + 1)
    end
    if v > MAX then
      raise("invalid", fmt("%s: %s must be a positive integer up to 2^53 (got %s)", fname, what, describe(v)),
        level + 1)
    end
  end

  -- A weight for fname: a positive integer within the capacity.
  local function check_weight(s, fname, w)
    check_count(fname, "weight", w, 3)
    local cap = C.sl_wsem_capacity(s)
    if w > cap then
      raise("invalid", fmt("%s: weight %s exceeds the capacity %s", fname, describe(w), describe(cap)), 3)
    end
  end

  local function raise_deadlock(s, w, fname)
    local prim = C.sl_wsem_prim(s)
    local mine, cap = C.sl_prim_held_by_me(prim), C.sl_wsem_capacity(s)
    if mine + w > cap then
      raise("deadlock", fmt("%s: deadlock: the task holds %s of the capacity %s and asks for %s more",
        fname, describe(mine), describe(cap), describe(w)), 4)
    end
    holding.raise_deadlock(fname, s, prim, "unit of weight in use", 4)
  end

  -- Acquires w for fname; errors are raised at level 3 (the caller of
  -- the method that called this).
  -- The answer r of sl_wsem_acquire (after the yield, when C parked the
  -- task) as the result of fname.  The callers call C and yield in their
  -- own frame, so a parked coroutine needs no deeper stack.
  local function settle(s, w, r, fname)
    local ok, why = grant(I, r, C.sl_wsem_abandon, s, w)
    if ok then
      if holding.tracking() then holding.note(s) end
      return true
    end
    if ok == nil then return nil, why end
    if why == WAKE_TOOBIG then
      raise("invalid", fmt("%s: weight %s exceeds the capacity %s (it shrank while the task waited)",
        fname, describe(w), describe(C.sl_wsem_capacity(s))), 3)
    end
    if why == -4 then raise_deadlock(s, w, fname) end
    fail(I, why, fname, nil, 3)
  end

  -- ws:acquire(w [, timeout]) -> true | nil, "timeout"
  function methods.acquire(s, w, timeout)
    local fname = NAME .. ":acquire"
    check_self(s, fname)
    check_weight(s, fname, w)
    timeout = timeout_arg(I, fname, timeout)
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_wsem_acquire(s, w, timeout, can_block)
    if r == 0 then r = WOKEN - co_yield(PARK) end
    local ok, why = settle(s, w, r, fname)
    if ok then return true end   -- exactly one value when granted
    return nil, why
  end

  -- ws:try_acquire(w) -> true | false, never waits (nor barges)
  function methods.try_acquire(s, w)
    local fname = NAME .. ":try_acquire"
    check_self(s, fname)
    check_weight(s, fname, w)
    local r = C.sl_wsem_try_acquire(s, w)
    if r == 1 then
      if holding.tracking() then holding.note(s) end
      return true
    end
    if r == 0 then return false end
    fail(I, r, fname)
  end

  local function release(s, w, fname, level)
    local r = C.sl_wsem_release(s, w)
    if r == 1 then
      holding.forget(s, C.sl_wsem_prim(s))
      return
    end
    if r == -5 then
      raise("invalid", fmt("%s: the task holds %s and cannot release %s", fname,
        describe(C.sl_prim_held_by_me(C.sl_wsem_prim(s))), describe(w)), level + 1)
    end
    fail(I, r, fname, nil, level + 1)
  end

  -- ws:release(w): gives back w of what the task holds.
  function methods.release(s, w)
    local fname = NAME .. ":release"
    check_self(s, fname)
    check_count(fname, "weight", w, 2)
    release(s, w, fname, 2)
  end

  local function finish(s, w, ok, ...)
    local r = C.sl_wsem_release(s, w)
    if r == 1 then holding.forget(s, C.sl_wsem_prim(s)) end
    if not ok then error((...), 0) end
    if r ~= 1 then
      raise("invalid", fmt("%s:with: fn released what with acquired (the task holds %s, not %s)", NAME,
        describe(C.sl_prim_held_by_me(C.sl_wsem_prim(s))), describe(w)), 3)
    end
    return ...
  end

  -- ws:with(w, fn, ...) -> fn(...)'s results, holding w meanwhile;
  -- released on return, error and cancellation.
  function methods.with(s, w, fn, ...)
    local fname = NAME .. ":with"
    check_self(s, fname)
    check_weight(s, fname, w)
    check_function(fname, "fn", fn)
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_wsem_acquire(s, w, -1, can_block)
    if r == 0 then r = WOKEN - co_yield(PARK) end
    settle(s, w, r, fname)
    return finish(s, w, pcall(fn, ...))
  end

  -- ws:holders() -> { {task =, count =, acquired_at = traceback or nil}, ... }
  function methods.holders(s)
    check_self(s, NAME .. ":holders")
    return holding.list(s, C.sl_wsem_prim(s))
  end

  function methods.stats(s)
    check_self(s, NAME .. ":stats")
    return sffi.stats(C.sl_wsem_prim(s), {
      capacity = C.sl_wsem_capacity(s), held = C.sl_wsem_held(s), available = C.sl_wsem_available(s),
    })
  end

  local getters = {
    capacity = function(s) return C.sl_wsem_capacity(s) end,
    held = function(s) return C.sl_wsem_held(s) end,
    available = function(s) return C.sl_wsem_available(s) end,
    waiting = function(s) return C.sl_prim_waiting(C.sl_wsem_prim(s)) end,
  }

  ffi.metatype("sl_wsem", {
    __index = sffi.indexer(methods, getters),
    -- capacity: growing grants waiters at once; shrinking never blocks,
    -- holders above the new capacity finish and nothing is granted until
    -- the head fits again; waiters heavier than it fail.
    __newindex = function(s, k, v)
      if k ~= "capacity" then
        raise("invalid", fmt("%s: field '%s' is %s", NAME, tostring(k),
          getters[k] and "read-only" or "not settable"), 2)
      end
      check_count(NAME, "capacity", v, 2)
      C.sl_wsem_set_capacity(s, v)
    end,
    __tostring = function(s)
      return fmt("%s (%s/%s held, %d waiting)", NAME, describe(C.sl_wsem_held(s)),
        describe(C.sl_wsem_capacity(s)), C.sl_prim_waiting(C.sl_wsem_prim(s)))
    end,
  })

  function M.weighted_semaphore(capacity)
    check_count(NAME, "capacity", capacity, 2)
    local s = C.sl_wsem_new(capacity)
    if s == nil then raise("invalid", NAME .. ": out of memory", 2) end
    return ffi.gc(s, C.sl_wsem_free)
  end
end
