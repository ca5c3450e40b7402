-- sluice.handles: the handles of calls that run in runners (sluice.limit's
-- calls, sluice.queue's jobs), written once over the C functions of the
-- primitive.
--
-- A call is a slot from when it is made until it ends: a record in C
-- plus, here, the function (and its one argument, or a packed {fn,
-- args...}), the handle and an owner in arrays indexed by the slot, and
-- the runner task while it runs.  Its outcome is kept by handle, in weak
-- tables: its one result, its results packed, the runner it failed (or
-- was cancelled) in, or the error of a call dropped before it started.
-- The handle is a small cdata that acts as a task: await, cancel,
-- result, status, task, cancelled, id, name.
--
-- call_handles(I, cfg) -> H.  cfg names the handle's ctype, a label for
-- messages, and the C functions: state(slot), await(slot, can_block),
-- drop(slot), of(slot) -> the owner, prim(owner).  H holds the arrays
-- (calls, args, handles, running, owners, result1, results, task_of,
-- dropped), store/forget to fill and empty a slot, run/done for the
-- runners, and cancel_error.
local ffi = require "ffi"
local sffi = require "sluice.ffi"
local core = require "sluice.core"

local fail = sffi.fail
local type, select, error, xpcall, tostring, setmetatable, unpack =
      type, select, error, xpcall, tostring, setmetatable, unpack
local c_current = core.current

local PENDING, RUNNING = 1, 3   -- SL_LPENDING/SL_QPENDING, SL_LRUNNING/SL_QRUNNING
local weak = { __mode = "k" }


local function call_handles(I, cfg)
  local raise, raise_cancelled, new_error = I.raise, I.raise_cancelled, I.new_error
  local co_yield, co_isyieldable, PARK, pack = I.co_yield, I.co_isyieldable, I.PARK, I.pack

  local function cancel_error(reason, level)
    local e = new_error("cancelled", reason ~= nil and "cancelled: " .. tostring(reason) or "cancelled",
      (level or 1) + 1)
    e.reason = reason
    return e
  end

  local calls, args, handles, running, owners = {}, {}, {}, {}, {}
  local result1, results = setmetatable({}, weak), setmetatable({}, weak)
  local task_of, dropped = setmetatable({}, weak), setmetatable({}, weak)
  local state, await, drop, of, prim = cfg.state, cfg.await, cfg.drop, cfg.of, cfg.prim
  local H = { calls = calls, args = args, handles = handles, running = running, owners = owners,
              result1 = result1, results = results, task_of = task_of, dropped = dropped }

  function H.store(slot, h, owner, fn, ...)
    handles[slot], owners[slot] = h, owner
    local n = select("#", ...)
    if n == 0 then
      calls[slot] = fn
    elseif n == 1 and (...) ~= nil then
      calls[slot], args[slot] = fn, ...
    else
      calls[slot] = pack(fn, ...)
    end
  end

  -- The runner me takes the call out of slot and runs it, then passes
  -- xpcall's answer on in a tail call, k(obj, me, slot, h, ok, ...): a
  -- runner's loop is k and this calling each other, which the JIT
  -- compiles.
  local on_error = I.on_error
  function H.run(k, obj, me, slot)
    local c, a, h = calls[slot], args[slot], handles[slot]
    calls[slot], args[slot], handles[slot], owners[slot] = nil, nil, nil, nil
    running[slot] = me
    if type(c) == "function" then
      if a == nil then return k(obj, me, slot, h, xpcall(c, on_error)) end
      return k(obj, me, slot, h, xpcall(c, on_error, a))
    end
    return k(obj, me, slot, h, xpcall(c[1], on_error, unpack(c, 2, c.n)))
  end

  -- The call of h returned these results: kept for its awaiters.
  function H.done(h, ...)
    local v = ...
    if v ~= nil and select("#", ...) == 1 then result1[h] = v else results[h] = pack(...) end
  end

  function H.forget(slot, h, err)
    calls[slot], args[slot], handles[slot], owners[slot] = nil, nil, nil, nil
    dropped[h] = err
  end

  -- What h's call is now: "done", "task" (its runner ended: ask it),
  -- "dropped" (with the error), "pending" or "running" (with the runner).
  local function resolve(h)
    if result1[h] ~= nil or results[h] then return "done" end
    local t = task_of[h]
    if t then return "task", t end
    local e = dropped[h]
    if e then return "dropped", e end
    local slot = h.slot
    local s = state(slot)
    if s == PENDING and handles[slot] == h then return "pending" end
    if s == RUNNING and running[slot] then return "running", running[slot] end
    -- dropped by C (its scope was cancelled) and not reaped yet
    e = cancel_error(nil, 3)
    if handles[slot] == h then
      drop(slot)
      H.forget(slot, h, e)
    end
    return "dropped", e
  end

  local function done_results(h)
    local v = result1[h]
    if v ~= nil then return v end
    local p = results[h]
    return unpack(p, 1, p.n)
  end

  local hmethods = {}

  local function await_slow(h)
    while true do
      local what, x = resolve(h)
      if what == "done" then return done_results(h) end
      if what == "task" then return x:await() end
      if what == "dropped" then error(x, 0) end
      if x == c_current() then
        raise("deadlock", "task:await: deadlock: a " .. cfg.label .. " awaits itself", 3)
      end
      local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
      local r = await(h.slot, can_block)
      if r == 0 then
        if co_yield(PARK) ~= 0 then raise_cancelled(3) end
      elseif r == -4 then
        local owner = of(h.slot)
        I.holding.raise_deadlock("task:await", owner, prim(owner), "place", 3)
      elseif r ~= 1 then
        fail(I, r, "task:await", nil, 2)
      end
    end
  end

  function hmethods.await(h)
    local v = result1[h]
    if v ~= nil then return v end
    return await_slow(h)
  end

  function hmethods.cancel(h, reason)
    local what, x = resolve(h)
    if what == "task" or what == "running" then return x:cancel(reason) end
    if what ~= "pending" then return false end
    local slot = h.slot
    drop(slot)
    H.forget(slot, h, cancel_error(reason, 2))
    return true
  end

  function hmethods.result(h)
    local what, x = resolve(h)
    if what == "done" then return true, done_results(h) end
    if what == "task" then return x:result() end
    if what == "dropped" then return false, x end
  end

  local function is_task(what) return what == "task" or what == "running" end
  local hgetters = {
    status = function(what, x)
      if is_task(what) then return x.status end
      return what == "dropped" and "cancelled" or what
    end,
    task = function(what, x) if is_task(what) then return x end end,
    cancelled = function(what, x)
      if is_task(what) then return x.cancelled end
      return what == "dropped"
    end,
    id = function(what, x) if is_task(what) then return x.id end end,
    name = function(what, x) if is_task(what) then return x.name end end,
  }

  ffi.metatype(cfg.ctype, {
    __index = function(h, k)
      local m = hmethods[k]
      if m then return m end
      local g = hgetters[k]
      if g then return g(resolve(h)) end
    end,
    __tostring = function(h)
      return cfg.label .. " (" .. hgetters.status(resolve(h)) .. ")"
    end,
  })
  H.cancel_error = cancel_error
  return H
end

return call_handles
