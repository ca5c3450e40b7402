-- sluice.semaphore(n), sluice.mutex(): the Lua face of lib/sl_sem.c.
--
-- The object is the C struct itself (an FFI cdata with a finaliser), so
-- an uncontended acquire or release is one JIT-compiled call into C.
-- Only when C answers "queued" (it has parked the task) does acquire
-- yield to the scheduler, and the wake code says how the wait ended.
local ffi = require "ffi"
local sffi = require "sluice.ffi"

local C, fail = sffi.C, sffi.fail
local type, pcall, error, select, tostring = type, pcall, error, select, tostring
local floor, huge, fmt = math.floor, math.huge, string.format

return function(M, I)
  local raise, describe, raise_cancelled = I.raise, I.describe, I.raise_cancelled
  local co_yield, co_isyieldable, PARK = I.co_yield, I.co_isyieldable, I.PARK

  local methods = {}
  local kind_of = setmetatable({}, { __mode = "k" })   -- mutexes

  local function name(s) return kind_of[s] and "mutex" or "semaphore" end

  local function check_timeout(s, timeout)
    if timeout == nil then return -1 end
    if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 or timeout == huge then
      raise("invalid", fmt("%s:acquire: timeout must be a finite non-negative number of seconds (got %s)",
        name(s), describe(timeout)), 4)
    end
    return timeout
  end

  -- sem:acquire([timeout]) -> true | nil, "timeout"
  function methods.acquire(s, timeout)
    local r = C.sl_sem_acquire(s, check_timeout(s, timeout), co_isyieldable() and 1 or 0)
    if r == 1 then return true end
    if r == 0 then
      local code = co_yield(PARK)
      if code == 0 then
        -- cancelled right after the hand-off: pass the permit on
        if C.sl_ffi_cancel_pending() ~= 0 then
          C.sl_sem_release(s)
          raise_cancelled(2)
        end
        return true
      end
      if code == 1 then return nil, "timeout" end
      raise_cancelled(2)
    end
    if r == -7 then return nil, "timeout" end
    if r == -4 then
      fail(I, r, name(s) .. ":acquire", fmt("deadlock: every permit is held by this task or by tasks waiting on it"))
    end
    fail(I, r, name(s) .. ":acquire")
  end

  function methods.try_acquire(s)
    local r = C.sl_sem_try_acquire(s)
    if r == 1 then return true end
    if r == 0 then return false end
    fail(I, r, name(s) .. ":try_acquire")
  end

  function methods.release(s)
    local r = C.sl_sem_release(s)
    if r == 1 then return end
    fail(I, r, name(s) .. ":release", r == -5 and "the task does not hold a permit" or nil)
  end

  local function finish(s, ok, ...)
    C.sl_sem_release(s)
    if not ok then error((...), 0) end
    return ...
  end

  -- sem:with(fn, ...): fn(...) holding a permit, released on return,
  -- error and cancellation.
  function methods.with(s, fn, ...)
    I.check_function(name(s) .. ":with", "fn", fn)
    methods.acquire(s)
    return finish(s, pcall(fn, ...))
  end

  local getters = {
    available = function(s) return C.sl_sem_available(s) end,
    waiting = function(s) return C.sl_prim_waiting(C.sl_sem_prim(s)) end,
    permits = function(s) return C.sl_sem_limit(s) end,
  }

  ffi.metatype("sl_sem", {
    __index = function(s, k)
      local m = methods[k]
      if m then return m end
      local g = getters[k]
      if g then return g(s) end
    end,
    __newindex = function(s, k, v)
      if k ~= "permits" or kind_of[s] then
        raise("invalid", fmt("%s: field '%s' is read-only", name(s), tostring(k)), 2)
      end
      if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
        raise("invalid", "semaphore: permits must be a positive integer (got " .. describe(v) .. ")", 2)
      end
      C.sl_sem_set_limit(s, v)
    end,
    __tostring = function(s)
      return fmt("%s (%d/%d held, %d waiting)", name(s), C.sl_sem_limit(s) - C.sl_sem_available(s),
        C.sl_sem_limit(s), C.sl_prim_waiting(C.sl_sem_prim(s)))
    end,
  })

  function M.semaphore(permits)
    if type(permits) ~= "number" or permits < 1 or permits ~= floor(permits) or permits == huge then
      raise("invalid", "semaphore: permits must be a positive integer (got " .. describe(permits) .. ")", 2)
    end
    return ffi.gc(C.sl_sem_new(permits, 0), C.sl_sem_free)
  end

  function M.mutex()
    local s = ffi.gc(C.sl_sem_new(1, 1), C.sl_sem_free)
    kind_of[s] = true
    return s
  end
end
