-- sluice.pool{...}: a generic resource pool, the Lua face of lib/sl_pool.c.
--
-- C keeps the bookkeeping (slots: idle list, borrowed set, creations in
-- flight, timestamps, uses; the FIFO queue of waiting tasks; backoff);
-- this file keeps the resources themselves, in an array indexed by slot
-- and a map back from resource to slot, and runs the user's functions.
--
-- create and destroy run in background tasks of the pool's own scope
-- (opened while any runs), so neither the cancellation of the acquire
-- that caused a creation nor the deadline of its scope stops a creation
-- another waiter could use: whatever it yields goes to the head waiter,
-- or to the idle list.  validate runs in the acquiring task, before an
-- idle resource is handed out (a hand-off from a release is not
-- validated: the resource was just in use).
--
-- Expiry (idle_timeout, max_lifetime) is checked at acquire and release,
-- and by the janitor: a weak timer (core.weak_timer: it never keeps a
-- process alive that has nothing else to do) armed for the earliest
-- expiry, so an unused pool evicts on time too.  max_uses and
-- max_lifetime are also enforced at release.
--
-- Errors: a wait bounded by the caller (acquire(timeout)) returns nil,
-- "timeout"; the pool's own acquire_timeout raises a "timeout" error that
-- describes the pool; a closed pool raises "closed"; max_waiting raises
-- "full" at once; a failed creation raises the create error itself in the
-- acquire it fails.
local ffi = require "ffi"
local sffi = require "sluice.ffi"
local core = require "sluice.core"

local C, fail, timeout_arg, WOKEN = sffi.C, sffi.fail, sffi.timeout_arg, sffi.WOKEN
local type, pcall, error, tostring, setmetatable, pairs, next, unpack =
      type, pcall, error, tostring, setmetatable, pairs, next, unpack
local floor, fmt = math.floor, string.format
local c_now, c_current, c_park, c_wake, c_cancel =
      core.now, core.current, core.park, core.wake, core.cancel
local scope_new, scope_spawn, scope_close = core.scope_new, core.scope_spawn, core.scope_close

local DROP = 2   -- SL_POOL_DROP: the slot is gone, destroy its resource
local BUSY = 2   -- sl_pool_state of a borrowed slot
local WAKE_FAILED, WAKE_CLOSED = 3, 4
local R_CLOSED, R_FULL, R_TIMEDOUT = -20, -21, -7

local options = {
  create = true, destroy = true, validate = true, min = true, max = true,
  acquire_timeout = true, create_timeout = true, idle_timeout = true, max_lifetime = true,
  max_uses = true, validate_on_borrow = true, max_waiting = true, destroy_on_error = true,
}

return function(M, I)
  local raise, new_error, describe, raise_cancelled = I.raise, I.new_error, I.describe, I.raise_cancelled
  local check_duration, check_function, blocked = I.check_duration, I.check_function, I.blocked
  local co_yield, co_isyieldable, PARK, pack = I.co_yield, I.co_isyieldable, I.PARK, I.pack

  local Pool = {}
  local methods, getters = {}, {}
  -- pool object -> its private state (weak: a dropped pool is collected)
  local priv = setmetatable({}, { __mode = "k" })
  local counts_buf = ffi.new("sl_pool_counts")

  local function is_cancel(e) return M.is_error(e, "cancelled") end

  local function check_self(pool, fname)
    local P = priv[pool]
    if not P then raise("invalid", fmt("%s: expected a pool (got %s)", fname, type(pool)), 3) end
    return P
  end

  ------------------------------------------------------------ background

  -- Runs fn(P, a) in a task of the pool's own scope.  The last one to
  -- finish closes the scope (P.home_old keeps it referenced until then:
  -- the finishing task still points to it).
  local bg_body

  local function bg_spawn(P, fn, a, what)
    if not P.home then
      P.home = scope_new()
      P.home_old = P.home
    end
    local t = scope_spawn(P.home, bg_body, P, fn, a)
    P.bg[t] = what
    P.nbg = P.nbg + 1
    return t
  end

  function bg_body(P, fn, a)
    fn(P, a)
    P.bg[c_current()] = nil
    P.nbg = P.nbg - 1
    if P.nbg == 0 then
      scope_close(P.home)
      P.home = nil
    end
  end

  local function destroyer(P, res)
    if P.destroy then
      local ok = pcall(P.destroy, res)
      if not ok then P.destroy_failures = P.destroy_failures + 1 end
    end
  end

  -- The resource of slot, which C has just dropped: forgotten here and
  -- destroyed in the background.
  local function drop(P, slot)
    local res = P.res[slot]
    P.res[slot] = nil
    P.slot_of[res] = nil
    bg_spawn(P, destroyer, res, "destroy")
    return res
  end

  local creator

  -- The janitor: a weak timer (it never keeps a finished program alive)
  -- armed for the earliest expiry of an idle resource, so idle_timeout
  -- and max_lifetime act on time even when nobody uses the pool.
  local function rearm(P)
    local j = P.janitor
    if not j then return end
    local at = C.sl_pool_next_expiry(P.c)
    if at >= 1e300 or C.sl_pool_is_closed(P.c) ~= 0 then return j:stop() end
    if j:deadline() ~= at then j:arm(at) end
  end

  -- After any change: start the creations now needed (for waiters, or
  -- to keep min), and wake close() once everything came back.
  local function settle(P)
    local c = P.c
    local slot = C.sl_pool_need_create(c, -1)
    while slot ~= 0 do
      bg_spawn(P, creator, slot, "create")
      slot = C.sl_pool_need_create(c, -1)
    end
    if P.nclosers > 0 and C.sl_pool_size(c) == 0 then
      for t in pairs(P.closers) do c_wake(t) end
    end
    rearm(P)
  end

  local function evict(P)
    local slot = C.sl_pool_evict(P.c, -1)
    if slot == 0 then return end
    repeat
      drop(P, slot)
      slot = C.sl_pool_evict(P.c, -1)
    until slot == 0
    settle(P)
  end

  -- The janitor's task, when the earliest expiry comes.
  local function janitor(P)
    if C.sl_pool_is_closed(P.c) == 0 then evict(P) end
    settle(P)
  end

  local function run_create(P)
    if not P.create_timeout then return pcall(P.create) end
    local r = pack(pcall(M.timeout, P.create_timeout, P.create))
    if not r[1] and M.is_error(r[2], "timeout") and r[2].message:find("^sluice%.timeout: ") then
      return false, new_error("timeout", fmt("pool: create timed out after %s s", describe(P.create_timeout)))
    end
    return unpack(r, 1, r.n)
  end

  -- A creation task: waits out the backoff after failures, creates, and
  -- gives the result (or the error) to C, which passes it on.
  function creator(P, slot)
    local c = P.c
    local delay = C.sl_pool_is_closed(c) == 0 and C.sl_pool_create_delay(c, -1) or 0
    if delay > 0 then
      local me = c_current()
      P.sleeping[me] = true
      local ok = pcall(M.sleep, delay)
      P.sleeping[me] = nil
      if not ok then
        C.sl_pool_create_dropped(c, slot)
        return settle(P)
      end
    end
    if C.sl_pool_is_closed(c) ~= 0 then
      C.sl_pool_create_dropped(c, slot)
      return settle(P)
    end
    local ok, res = run_create(P)
    if ok and res == nil then
      ok, res = false, new_error("invalid", "pool: create returned nil")
    elseif ok and P.slot_of[res] ~= nil then
      ok, res = false, new_error("invalid", "pool: create returned a resource already in the pool")
    end
    if ok then
      P.res[slot], P.slot_of[res] = res, slot
      if C.sl_pool_created(c, slot, -1) == DROP then drop(P, slot) end
    else
      local id = P.next_err
      P.next_err = id + 1
      P.errs[id] = res
      if C.sl_pool_create_failed(c, slot, id, -1) == 0 then P.errs[id] = nil end
    end
    return settle(P)
  end

  ------------------------------------------------------------ acquire

  local function describe_pool(c)
    return fmt("size %d, max %d, active %d, idle %d, waiting %d", C.sl_pool_size(c),
      C.sl_pool_max(c), C.sl_pool_active(c), C.sl_pool_idle(c), C.sl_prim_waiting(C.sl_pool_prim(c)))
  end

  -- A borrowed slot's resource comes back unused (validation cut short).
  local function put_back(P, slot)
    if C.sl_pool_release(P.c, slot, -1) == DROP then drop(P, slot) end
    settle(P)
  end

  -- Is the idle resource of slot fit to hand out?  A cancellation during
  -- validate puts it back and is raised.
  local function valid(P, slot, res)
    local ok, good = pcall(P.validate, res)
    if not ok and is_cancel(good) then
      put_back(P, slot)
      error(good, 0)
    end
    return ok and good ~= false and good ~= nil
  end

  -- Acquires for fname; timeout < 0 for none.  bounded: the caller gave
  -- the timeout (nil, "timeout") rather than acquire_timeout (raises).
  -- r: the answer of the first try (see acquire).
  local function acquire_slow(P, fname, timeout, bounded, r)
    local c = P.c
    local deadline = timeout >= 0 and c_now() + timeout or -1
    while true do
      if r == nil then   -- trying again, after a failed validation
        if deadline >= 0 then
          local now = c_now()
          timeout = deadline > now and deadline - now or 0
        end
        evict(P)
        local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
        r = C.sl_pool_acquire(c, -1, timeout, can_block)
      end
      if r == 0 then
        settle(P)
        r = WOKEN - co_yield(PARK)
      end
      if r > 0 then
        local res = P.res[r]
        if not P.check or valid(P, r, res) then return res end
        C.sl_pool_remove(c, r)
        drop(P, r)
        settle(P)
        r = nil
      elseif r <= WOKEN then
        local code = WOKEN - r
        if code == 0 then
          local slot = C.sl_pool_granted(c)
          if C.sl_ffi_cancel_pending() ~= 0 then
            if C.sl_pool_abandon(c, slot, -1) == DROP then drop(P, slot) end
            settle(P)
            raise_cancelled(4)
          end
          return P.res[slot]
        elseif code == WAKE_FAILED then
          local id = C.sl_pool_granted(c)
          local err = P.errs[id]
          P.errs[id] = nil
          settle(P)
          if C.sl_ffi_cancel_pending() ~= 0 then raise_cancelled(4) end
          error(err, 0)
        elseif code == 1 then
          r = R_TIMEDOUT
        elseif code == 2 then
          raise_cancelled(4)
        elseif code == WAKE_CLOSED then
          raise("closed", fname .. ": the pool is closed", 4)
        else
          fail(I, -100 - code, fname, nil, 4)
        end
      end
      if r == R_TIMEDOUT then
        if bounded then return nil, "timeout" end
        raise("timeout", fmt("%s: timed out after %s s (pool %s)", fname, describe(P.acquire_timeout),
          describe_pool(c)), 4)
      elseif r == R_CLOSED then
        raise("closed", fname .. ": the pool is closed", 4)
      elseif r == R_FULL then
        raise("full", fmt("%s: %d tasks already wait (max_waiting %d)", fname,
          C.sl_prim_waiting(C.sl_pool_prim(c)), P.max_waiting), 4)
      elseif r ~= nil and r < 0 then
        fail(I, r, fname, nil, 4)
      end
    end
  end

  -- The fast path (an idle resource, nothing to validate) has no loop,
  -- so that a caller's loop of acquire and release compiles as one trace.
  local function acquire(P, fname, timeout, bounded)
    evict(P)
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_pool_acquire(P.c, -1, timeout, can_block)
    if r > 0 and not P.check then return P.res[r] end
    return acquire_slow(P, fname, timeout, bounded, r)
  end

  -- pool:acquire([timeout]) -> resource | nil, "timeout"
  function methods.acquire(pool, timeout)
    local P = check_self(pool, "pool:acquire")
    if timeout ~= nil then
      timeout = timeout_arg(I, "pool:acquire", timeout)
      return acquire(P, "pool:acquire", timeout, true)
    end
    return acquire(P, "pool:acquire", P.acquire_timeout or -1, false)
  end

  ------------------------------------------------------------ giving back

  local function borrowed_slot(P, res, fname)
    local slot = P.slot_of[res]
    if slot == nil or C.sl_pool_state(P.c, slot) ~= BUSY then
      if res ~= nil and P.reclaimed[res] then return nil end
      raise("invalid", fname .. ": the resource is not borrowed from this pool", 4)
    end
    return slot
  end

  local function release(P, res, fname)
    local slot = borrowed_slot(P, res, fname)
    if not slot then return end
    if C.sl_pool_release(P.c, slot, -1) == DROP then drop(P, slot) end
    evict(P)
    settle(P)
  end

  local function destroy(P, res, fname)
    local slot = borrowed_slot(P, res, fname)
    if not slot then return end
    C.sl_pool_remove(P.c, slot)
    drop(P, slot)
    settle(P)
  end

  -- pool:release(res): back to the head waiter, or idle (or destroyed if
  -- it reached max_uses or max_lifetime, or the pool is closed).
  function methods.release(pool, res)
    release(check_self(pool, "pool:release"), res, "pool:release")
  end

  -- pool:destroy(res): a borrowed resource found broken: destroyed, and
  -- replaced if waiters or min need it.
  function methods.destroy(pool, res)
    destroy(check_self(pool, "pool:destroy"), res, "pool:destroy")
  end

  local function finish(P, res, ok, ...)
    local gone = P.slot_of[res] == nil or C.sl_pool_state(P.c, P.slot_of[res]) ~= BUSY
    if not gone then
      if ok or is_cancel((...)) or not P.destroy_on_error then
        release(P, res, "pool:with")
      else
        destroy(P, res, "pool:with")
      end
    end
    if not ok then error((...), 0) end
    return ...
  end

  -- pool:with(fn, ...) -> fn(res, ...)'s results; the resource is
  -- released on return and on cancellation, and on error destroyed (or
  -- released with destroy_on_error = false).
  function methods.with(pool, fn, ...)
    local P = check_self(pool, "pool:with")
    check_function("pool:with", "fn", fn)
    local res = acquire(P, "pool:with", P.acquire_timeout or -1, false)
    return finish(P, res, pcall(fn, res, ...))
  end

  ------------------------------------------------------------ close

  -- Waits for the background tasks (only destroys, with what = "destroy").
  local function await_bg(P, what)
    local t, w = next(P.bg)
    while t do
      if what == nil or w == what then
        t:await()
        t, w = next(P.bg)
      else
        t, w = next(P.bg, t)
      end
    end
  end

  -- pool:close([timeout]) -> true | nil, "timeout"
  -- New acquires raise "closed", waiters are woken with "closed", idle
  -- resources are destroyed; then close waits for the borrowed ones to
  -- come back (each destroyed as it does) and for creations in flight.
  -- After timeout, those still borrowed are destroyed (their release is
  -- then accepted and does nothing).  Idempotent.
  function methods.close(pool, timeout)
    local P = check_self(pool, "pool:close")
    timeout = timeout_arg(I, "pool:close", timeout)
    if not co_isyieldable() then blocked("pool:close") end
    local c = P.c
    if C.sl_pool_close(c) ~= 0 then
      for t in pairs(P.sleeping) do c_cancel(t) end
    end
    if P.janitor then P.janitor:stop() end
    local slot = C.sl_pool_drain(c, 0)
    while slot ~= 0 do
      drop(P, slot)
      slot = C.sl_pool_drain(c, 0)
    end
    if C.sl_pool_size(c) > 0 then
      local me = c_current()
      P.closers[me] = true
      P.nclosers = P.nclosers + 1
      local why = c_park("pool:close", "pool:close", timeout >= 0 and timeout or nil)
      P.closers[me] = nil
      P.nclosers = P.nclosers - 1
      if why == 2 then raise_cancelled(2) end
      if why == 1 and C.sl_pool_size(c) > 0 then
        slot = C.sl_pool_drain(c, 1)
        while slot ~= 0 do
          P.reclaimed[drop(P, slot)] = true
          slot = C.sl_pool_drain(c, 1)
        end
        await_bg(P, "destroy")
        return nil, "timeout"
      end
    end
    await_bg(P)
    return true
  end

  ------------------------------------------------------------ fields

  function methods.stats(pool)
    local P = check_self(pool, "pool:stats")
    local c, b = P.c, counts_buf
    C.sl_pool_counts_get(c, b)
    return sffi.stats(C.sl_pool_prim(c), {
      created = b.created, destroyed = b.destroyed, create_failures = b.create_failures,
      evicted = b.evicted, destroy_failures = P.destroy_failures,
      size = C.sl_pool_size(c), idle = C.sl_pool_idle(c), active = C.sl_pool_active(c),
      pending_creates = C.sl_pool_pending(c), max = C.sl_pool_max(c), min = C.sl_pool_min(c),
    })
  end

  getters.size = function(P) return C.sl_pool_size(P.c) end
  getters.idle = function(P) return C.sl_pool_idle(P.c) end
  getters.active = function(P) return C.sl_pool_active(P.c) end
  getters.pending_creates = function(P) return C.sl_pool_pending(P.c) end
  getters.waiting = function(P) return C.sl_prim_waiting(C.sl_pool_prim(P.c)) end
  getters.max = function(P) return C.sl_pool_max(P.c) end
  getters.min = function(P) return C.sl_pool_min(P.c) end
  getters.closed = function(P) return C.sl_pool_is_closed(P.c) ~= 0 end

  Pool.__index = function(pool, k)
    local m = methods[k]
    if m then return m end
    local g = getters[k]
    if g then return g(priv[pool]) end
  end
  Pool.__newindex = function(_, k)
    raise("invalid", fmt("pool: field '%s' is %s", tostring(k), getters[k] and "read-only" or "not settable"), 2)
  end
  Pool.__tostring = function(pool)
    local c = priv[pool].c
    return fmt("pool (%s%s)", describe_pool(c), C.sl_pool_is_closed(c) ~= 0 and ", closed" or "")
  end
  Pool.__metatable = "sluice.pool"

  ------------------------------------------------------------ constructor

  local function bad(msg) raise("invalid", "sluice.pool: " .. msg, 4) end

  local function count_opt(o, name, default, least)
    local v = o[name]
    if v == nil then return default end
    if type(v) ~= "number" or v < least or v ~= floor(v) or v >= 2147483647 then
      bad(fmt("%s must be a %s integer (got %s)", name, least == 0 and "non-negative" or "positive", describe(v)))
    end
    return v
  end

  local function duration_opt(o, name)
    local v = o[name]
    if v ~= nil then check_duration("sluice.pool", name, v) end
    return v
  end

  local function bool_opt(o, name, default)
    local v = o[name]
    if v == nil then return default end
    if type(v) ~= "boolean" then bad(fmt("%s must be a boolean (got %s)", name, describe(v))) end
    return v
  end

  local function fn_opt(o, name, required)
    local v = o[name]
    if v == nil and not required then return nil end
    check_function("sluice.pool", name, v, 3)
    return v
  end

  function M.pool(o)
    if type(o) ~= "table" then
      raise("invalid", "sluice.pool: opts must be a table (got " .. describe(o) .. ")", 2)
    end
    for k in pairs(o) do
      if not options[k] then raise("invalid", fmt("sluice.pool: unknown option %s", describe(k)), 2) end
    end
    local create, destroy_fn, validate = fn_opt(o, "create", true), fn_opt(o, "destroy"), fn_opt(o, "validate")
    local max = count_opt(o, "max", 10, 1)
    local min = count_opt(o, "min", 0, 0)
    if min > max then
      raise("invalid", fmt("sluice.pool: min must be at most max (got min %d, max %d)", min, max), 2)
    end
    local max_uses = count_opt(o, "max_uses", nil, 1)
    local max_waiting = count_opt(o, "max_waiting", nil, 0)
    local acquire_timeout = duration_opt(o, "acquire_timeout")
    local create_timeout = duration_opt(o, "create_timeout")
    local idle_timeout = duration_opt(o, "idle_timeout")
    local max_lifetime = duration_opt(o, "max_lifetime")
    local vob = bool_opt(o, "validate_on_borrow", validate ~= nil)
    local doe = bool_opt(o, "destroy_on_error", true)
    if vob and not validate then
      raise("invalid", "sluice.pool: validate_on_borrow needs a validate function", 2)
    end
    local c = C.sl_pool_new(max, min, max_waiting or -1, idle_timeout or -1, max_lifetime or -1,
      max_uses or -1)
    if c == nil then raise("invalid", "sluice.pool: out of memory", 2) end
    local P = {
      c = ffi.gc(c, C.sl_pool_free),
      create = create, destroy = destroy_fn, validate = validate, check = vob,
      acquire_timeout = acquire_timeout, create_timeout = create_timeout,
      max_waiting = max_waiting, destroy_on_error = doe,
      res = {}, slot_of = {}, errs = {}, next_err = 1,
      bg = {}, nbg = 0, sleeping = {}, closers = {}, nclosers = 0,
      reclaimed = setmetatable({}, { __mode = "k" }), destroy_failures = 0,
    }
    if idle_timeout or max_lifetime then P.janitor = core.weak_timer(janitor, P) end
    local pool = setmetatable({}, Pool)
    priv[pool] = P
    settle(P)   -- min
    return pool
  end
end
