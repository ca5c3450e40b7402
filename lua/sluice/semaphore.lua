-- sluice.semaphore(n), sluice.mutex(): the Lua face of lib/sl_sem.c.
--
-- The object is the C struct itself (an FFI cdata with a finaliser), so
-- an uncontended acquire or release is one JIT-compiled call into C.
-- Only when C answers "queued" (it has parked the task) does acquire
-- yield to the scheduler, and the wake code says how the wait ended.
--
-- Where holders acquired: sluice.track_holders(true) makes every
-- acquisition that starts a holding record its traceback, which
-- holders() (field acquired_at) and deadlock errors then show.  It is off
-- by default because a traceback costs microseconds, against some 20 ns
-- for an uncontended acquire and release; without it, a deadlock error
-- shows where each other holder is now.  The switch is global (one call
-- while debugging, no change to the code that creates the primitives) and
-- is shared with the other primitives through I.holding.
--
-- Stats: sem:stats() -> { permits, held, available, waiting, acquired,
-- waited, timeouts, cancelled, wait_total, wait_max, histogram }, times
-- in seconds of the scheduler's clock (virtual under the virtual clock).
-- histogram[1] counts waits under 1 us (zero waits included),
-- histogram[i] for i = 2..31 waits of at least 2^(i-2) and under
-- 2^(i-1) us, histogram[32] waits of 2^30 us (about 18 min) or more.
-- Every wait that ended is counted: granted, timed out or cancelled.
local ffi = require "ffi"
local sffi = require "sluice.ffi"
local core = require "sluice.core"

local C, fail, grant, timeout_arg, WOKEN = sffi.C, sffi.fail, sffi.grant, sffi.timeout_arg, sffi.WOKEN
local type, pcall, error, tostring, tonumber, setmetatable, ipairs, select =
      type, pcall, error, tostring, tonumber, setmetatable, ipairs, select
local floor, huge, fmt, concat = math.floor, math.huge, string.format, table.concat
local traceback = debug.traceback
local istype = ffi.istype
local c_current, prim_holders, task_traceback = core.current, core.prim_holders, core.task_traceback


return function(M, I)
  local raise, new_error, describe = I.raise, I.new_error, I.describe
  local co_isyieldable, co_yield, PARK = I.co_isyieldable, I.co_yield, I.PARK
  local check_function = I.check_function

  ------------------------------------------------------------ holders

  local tracking, ever_tracked = false, false
  -- primitive object -> { [task] = traceback of where it began holding }
  local sites = setmetatable({}, { __mode = "k" })

  -- A traceback as reports show it: without the frames of sluice's own
  -- Lua code on top, nor the runtime's frames below the task body.
  local function trim(tb)
    local out, top = { "stack traceback:" }, true
    for line in tb:gmatch("\n(\t[^\n]*)") do
      if line:find("^\t%[C%]: in function 'xpcall'") or line:find("^\t%[sluice%]:%d+: in main chunk") then break end
      if not (top and (line:find("^\t%[C%]") or line:find("^\tlua/sluice/"))) then
        top = false
        out[#out + 1] = line
      end
    end
    return concat(out, "\n")
  end

  -- The running task now holds obj: record where, if it just began to.
  local function note_holder(obj)
    local by = sites[obj]
    if not by then
      by = setmetatable({}, { __mode = "k" })
      sites[obj] = by
    end
    local t = c_current()
    if by[t] == nil then by[t] = trim(traceback("", 2)) end
  end

  -- The running task released obj: forget the site once it holds none.
  -- Nothing to forget unless tracking was ever on: every release of
  -- every primitive comes through here.
  local function forget_holder(obj, prim)
    if not ever_tracked then return end
    local by = sites[obj]
    if by and C.sl_prim_held_by_me(prim) == 0 then by[c_current()] = nil end
  end

  local function holders(obj, prim)
    local list, by = prim_holders(prim), sites[obj]
    if by then
      for _, h in ipairs(list) do h.acquired_at = by[h.task] end
    end
    return list
  end

  local function label(t, me)
    local n = t.name
    if t == me then return n and fmt("task #%d (%s, this task)", t.id, n) or fmt("task #%d (this task)", t.id) end
    return n and fmt("task #%d (%s)", t.id, n) or fmt("task #%d", t.id)
  end

  -- Raises the deadlock error of fname on obj: unit names what the
  -- holders hold ("permit", "weight"; nil for a mutex).  The message
  -- names the holders, then where each of them acquired it (tracked) or
  -- is now; the error's traceback is where this task would block.
  local function raise_deadlock(fname, obj, prim, unit, level)
    local me, list = c_current(), holders(obj, prim)
    local who, where, unknown = {}, {}, false
    for i, h in ipairs(list) do
      local name = label(h.task, me)
      who[i] = unit and fmt("%s holds %s", name, describe(h.count)) or name
      if h.acquired_at then
        where[#where + 1] = fmt("%s acquired it at:\n%s", name, h.acquired_at)
      elseif h.task ~= me then
        where[#where + 1] = fmt("%s is now at:\n%s", name, trim(task_traceback(h.task) or ""))
        unknown = true
      else
        unknown = true
      end
    end
    if unknown then
      where[#where + 1] = "(sluice.track_holders(true) records where each holder acquired it)"
    end
    local what
    if unit then
      what = fmt("every %s is held by this task or by tasks waiting on it: %s", unit, concat(who, ", "))
    elseif list[1] and list[1].task == me then
      what = "the mutex is already held by this task, " .. who[1]
    else
      what = fmt("the mutex is held by %s, which waits on this task", concat(who, ", "))
    end
    local e = new_error("deadlock", fmt("%s: deadlock: %s\n%s", fname, what, concat(where, "\n")), level + 1)
    e.holders = list
    error(e, 0)
  end

  -- What the other primitives' faces share with this one.
  I.holding = {
    tracking = function() return tracking end,
    note = note_holder, forget = forget_holder, list = holders,
    raise_deadlock = raise_deadlock, trim = trim,
  }

  -- sluice.track_holders(on) -> previous setting
  function M.track_holders(on)
    if type(on) ~= "boolean" then
      raise("invalid", "sluice.track_holders: on must be a boolean (got " .. describe(on) .. ")", 2)
    end
    local prev = tracking
    tracking = on
    ever_tracked = ever_tracked or on
    return prev
  end

  ------------------------------------------------------------ methods

  local sem_ptr = ffi.typeof("sl_sem *")

  local function check_permits(v, level)
    if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
      raise("invalid", "semaphore: permits must be a positive integer (got " .. describe(v) .. ")", level + 1)
    end
  end

  -- The methods of one kind ("semaphore" or "mutex"): the same code,
  -- with the kind's name in error messages.
  local function make_methods(kind)
    local m = {}
    local f_acquire, f_try, f_release, f_with = kind .. ":acquire", kind .. ":try_acquire",
      kind .. ":release", kind .. ":with"
    local not_held = kind == "mutex" and "the task does not hold the mutex" or "the task does not hold a permit"
    local unit = kind ~= "mutex" and "permit" or nil

    local function check_self(s, fname)
      if not istype(sem_ptr, s) then
        raise("invalid", fmt("%s: expected a %s (got %s)", fname, kind, type(s)), 3)
      end
    end

    -- Acquires for fname; errors are raised at level 3 (the caller of
    -- the method that called this).
    -- The answer r of sl_sem_acquire (after the yield, when C parked the
    -- task) as the result of fname.  The callers call C and yield in their
    -- own frame: a parked coroutine then needs no deeper stack than its
    -- first one (a frame more makes LuaJIT double it).
    local function settle(s, r, fname)
      local ok, why = grant(I, r, C.sl_sem_abandon, s)
      if ok then
        if tracking then note_holder(s) end
        return true
      end
      if ok == nil then return nil, why end
      if why == -4 then raise_deadlock(fname, s, C.sl_sem_prim(s), unit, 3) end
      fail(I, why, fname, nil, 3)
    end

    -- s:acquire([timeout]) -> true | nil, "timeout"
    -- Why can_block is computed first: co_isyieldable is a C function, and
    -- LuaJIT calls one only with 20 free stack slots above it, doubling
    -- the coroutine's stack (47 slots at first) when they are missing.
    -- Called into a local of its own rather than as the last argument of
    -- the FFI call (4 slots higher), it fits in a task's first stack, so
    -- a task parked here stays small.  This is what compiled code does;
    -- interpreted, the FFI call is itself a C call and may still grow it.
    function m.acquire(s, timeout)
      check_self(s, f_acquire)
      timeout = timeout_arg(I, f_acquire, timeout)
      local can_block = co_isyieldable() and 1 or 0
      local r = C.sl_sem_acquire(s, timeout, can_block)
      if r == 0 then r = WOKEN - co_yield(PARK) end
      local ok, why = settle(s, r, f_acquire)
      if ok then return true end   -- exactly one value when granted
      return nil, why
    end

    -- s:try_acquire() -> true | false, never waits
    function m.try_acquire(s)
      check_self(s, f_try)
      local r = C.sl_sem_try_acquire(s)
      if r == 1 then
        if tracking then note_holder(s) end
        return true
      end
      if r == 0 then return false end
      fail(I, r, f_try)
    end

    function m.release(s)
      check_self(s, f_release)
      local r = C.sl_sem_release(s)
      if r == 1 then
        if ever_tracked then forget_holder(s, C.sl_sem_prim(s)) end
        return
      end
      fail(I, r, f_release, r == -5 and not_held or nil)
    end

    local function finish(s, ok, ...)
      local r = C.sl_sem_release(s)
      if r == 1 then forget_holder(s, C.sl_sem_prim(s)) end
      if not ok then error((...), 0) end
      if r ~= 1 then
        raise("invalid", f_with .. ": fn released what with acquired (" .. not_held .. " any more)", 3)
      end
      return ...
    end

    -- s:with(fn, ...) -> fn(...)'s results, holding a permit meanwhile;
    -- released on return, error and cancellation.
    function m.with(s, fn, ...)
      check_self(s, f_with)
      check_function(f_with, "fn", fn)
      local can_block = co_isyieldable() and 1 or 0   -- see acquire
      local r = C.sl_sem_acquire(s, -1, can_block)
      if r == 0 then r = WOKEN - co_yield(PARK) end
      settle(s, r, f_with)
      return finish(s, pcall(fn, ...))
    end

    -- s:holders() -> { {task =, count =, acquired_at = traceback or nil}, ... }
    function m.holders(s)
      check_self(s, kind .. ":holders")
      return holders(s, C.sl_sem_prim(s))
    end

    function m.stats(s)
      check_self(s, kind .. ":stats")
      return sffi.stats(C.sl_sem_prim(s), {
        permits = C.sl_sem_limit(s), held = C.sl_sem_held(s), available = C.sl_sem_available(s),
      })
    end
    return m
  end

  local methods = { semaphore = make_methods("semaphore"), mutex = make_methods("mutex") }

  local getters = {
    available = function(s) return C.sl_sem_available(s) end,
    waiting = function(s) return C.sl_prim_waiting(C.sl_sem_prim(s)) end,
    permits = function(s) return C.sl_sem_limit(s) end,
  }

  -- Which kind an object is, without a call into C on every method
  -- lookup: the mutexes, by identity (each object is one cdata).
  local mutexes = setmetatable({}, { __mode = "k" })
  local function kind_of(s) return mutexes[s] and "mutex" or "semaphore" end

  ffi.metatype("sl_sem", {
    __index = function(s, k)
      local m = methods[kind_of(s)][k]
      if m then return m end
      local g = getters[k]
      if g then return g(s) end
    end,
    -- permits (semaphores only): growing grants waiters at once;
    -- shrinking never blocks, holders above the new limit finish and
    -- nothing is granted until fewer than the limit are held.
    __newindex = function(s, k, v)
      local kind = kind_of(s)
      if k ~= "permits" or kind == "mutex" then
        raise("invalid", fmt("%s: field '%s' is %s", kind, tostring(k),
          getters[k] and "read-only" or "not settable"), 2)
      end
      check_permits(v, 2)
      C.sl_sem_set_limit(s, v)
    end,
    __tostring = function(s)
      return fmt("%s (%d/%d held, %d waiting)", kind_of(s), C.sl_sem_held(s), C.sl_sem_limit(s),
        C.sl_prim_waiting(C.sl_sem_prim(s)))
    end,
  })

  function M.semaphore(permits)
    check_permits(permits, 2)
    local s = C.sl_sem_new(permits, 0)
    if s == nil then raise("invalid", "semaphore: out of memory", 2) end
    return ffi.gc(s, C.sl_sem_free)
  end

  function M.mutex(...)
    if select("#", ...) > 0 then
      raise("invalid", "mutex: takes no arguments (got " .. describe((...)) .. ")", 2)
    end
    local s = C.sl_sem_new(1, 1)
    if s == nil then raise("invalid", "mutex: out of memory", 2) end
    s = ffi.gc(s, C.sl_sem_free)
    mutexes[s] = true
    return s
  end
end
