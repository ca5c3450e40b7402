-- sluice: the public module.  Tasks, scopes and combinators over the
-- native scheduler in lib/ (reached through "sluice.core").
--
-- Blocking functions call into C, which parks the running task and
-- yields core.PARK; they resume with a wake code (0 ok, 1 timeout,
-- 2 cancelled) that is turned into results or errors here.

local core = require "sluice.core"

local type, select, error, pcall, tostring, setmetatable, rawequal =
      type, select, error, pcall, tostring, setmetatable, rawequal
local unpack = unpack
local floor, huge = math.floor, math.huge
local fmt = string.format
local co_create, co_resume, co_yield, co_status, co_isyieldable, co_running =
      coroutine.create, coroutine.resume, coroutine.yield, coroutine.status,
      coroutine.isyieldable, coroutine.running
local xpcall = xpcall
local traceback = debug.traceback

local c_spawn, c_current, c_sleep, c_yield, c_await, c_result =
      core.spawn, core.current, core.sleep, core.yield, core.await, core.result
local c_cancel, c_park, c_wake, c_shield, c_now, c_reason, c_at_top =
      core.cancel, core.park, core.wake, core.shield, core.now, core.reason,
      core.at_top
local scope_new, scope_spawn, scope_wait, scope_cancel, scope_arm, scope_close =
      core.scope_new, core.scope_spawn, core.scope_wait, core.scope_cancel,
      core.scope_arm, core.scope_close
local PARK = core.PARK
local WAKE_CANCEL = 2

local M = { _VERSION = "sluice 0.1.0" }
local task_methods = core.task_methods
local scope_methods = core.scope_methods

---------------------------------------------------------------- errors

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end

-- Builds a runtime error {kind=, message=, traceback=}; level counts
-- from the caller of new_error, as in error().
local function new_error(kind, message, level)
  local e = setmetatable({ kind = kind, message = message }, Error)
  e.traceback = traceback(message, (level or 1) + 1)
  return e
end

local function raise(kind, message, level)
  error(new_error(kind, message, (level or 1) + 1), 0)
end

debug.getregistry()["sluice.errfn"] = function(kind, message, level)
  return new_error(kind, message, (level or 1) + 1)
end

-- A value as error messages show it: numbers as numbers, others by type.
local function describe(v)
  if type(v) == "number" then
    if v ~= v then return "nan" end
    if v == huge then return "inf" elseif v == -huge then return "-inf" end
    return fmt("%.14g", v)
  elseif type(v) == "string" then
    return fmt("%q", #v > 20 and v:sub(1, 20) .. "..." or v)
  end
  return type(v)
end
debug.getregistry()["sluice.describe"] = describe

local function check_duration(fn, name, v, allow_zero)
  if type(v) ~= "number" or v ~= v or v == huge or v < 0 or (v == 0 and not allow_zero) then
    raise("invalid", fmt("%s: %s must be a %s number (got %s)", fn, name,
      allow_zero and "finite non-negative" or "finite positive", describe(v)), 3)
  end
end

local function check_function(fn, name, v, level)
  if type(v) ~= "function" then
    raise("invalid", fmt("%s: %s must be a function (got %s)", fn, name, describe(v)), (level or 2) + 1)
  end
end

-- Raises unless the caller can block: inside a task and yieldable.  The
-- common case costs one builtin call; C rechecks that a task is running.
local function blocked(fn)
  if c_current() then
    raise("invalid", fn .. ": cannot block here (inside a C call such as a " ..
      "table.sort comparator or a string.gsub callback)", 4)
  end
  raise("invalid", fn .. ": must be called from a task", 4)
end

local function check_block(fn)
  if not co_isyieldable() then blocked(fn) end
end

-- The error a cancelled task raises: kind "cancelled", with the reason
-- given to task:cancel, if any.
local function cancelled_error(t, level)
  local reason = t and c_reason(t)
  local e = new_error("cancelled", reason ~= nil and "cancelled: " .. tostring(reason) or "cancelled",
    (level or 1) + 1)
  e.reason = reason
  return e
end
debug.getregistry()["sluice.cancelfn"] = cancelled_error

local function raise_cancelled(level)
  error(cancelled_error(c_current(), (level or 1) + 1), 0)
end

local function is_cancel(err)
  return type(err) == "table" and getmetatable(err) == Error and err.kind == "cancelled"
end

M.error = function(kind, message)
  if type(kind) ~= "string" then raise("invalid", "sluice.error: kind must be a string (got " .. describe(kind) .. ")", 2) end
  -- not a tail call: the traceback must keep the caller's frame
  local e = new_error(kind, message == nil and kind or tostring(message), 2)
  return e
end
M.is_error = function(v, kind)
  return type(v) == "table" and getmetatable(v) == Error and (kind == nil or v.kind == kind)
end
M.Error = Error

---------------------------------------------------------------- tasks

-- Every task body runs under xpcall with on_error as its handler, which
-- takes the traceback while the failing frames still exist (a dead
-- coroutine has lost its line numbers); the error itself is unchanged.
local tracebacks = setmetatable({}, { __mode = "k" })
debug.getregistry()["sluice.tracebacks"] = tracebacks

-- A coroutine whose traceback was taken where the error happened, about
-- to re-raise that error from a frame of sluice's own (weak keys).
local kept = setmetatable({}, { __mode = "k" })

local function on_error(e)
  local co = co_running()
  if kept[co] then
    kept[co] = nil
    return e
  end
  if not is_cancel(e) then
    -- (a nil message would be returned as is: traceback("") starts "\n")
    local tb = traceback("", 2):sub(2)
    -- the runtime's own frames below the task body are noise
    tb = tb:gsub("\n\t%[builtin#%d+%]: at 0x%x+$", ""):gsub("\n\t%[sluice%]:%d+: in main chunk", "")
    tracebacks[co] = tb
  end
  return e
end

-- The running task re-raises an error caught with xpcall(f, on_error):
-- keep the traceback taken where it happened.
local function keep_traceback() kept[co_running()] = true end

-- The scheduler runs each body as xpcall(fn, on_error, ...).
debug.getregistry()["sluice.entry"] = on_error
debug.getregistry()["sluice.xpcall"] = xpcall

-- Which task's error a task re-raised (weak): the report follows it to
-- the traceback of where the error really happened.
local origin = setmetatable({}, { __mode = "k" })

local function settle(t, ok, ...)
  if ok then return ... end
  local err = ...
  local cur = c_current()
  if cur then origin[cur] = t end
  error(err, 0)
end

function M.spawn(fn, ...)
  return c_spawn(fn, ...)
end

M.current = c_current
M.now = c_now
-- sluice.stats(): scheduler counts {tasks=, ready=, waiting=, timers=, ...}
M.stats = core.stats

function M.sleep(s)
  check_duration("sluice.sleep", "seconds", s, true)
  check_block("sluice.sleep")
  if c_sleep(s) == WAKE_CANCEL then raise_cancelled(2) end
end

function M.yield()
  check_block("sluice.yield")
  if c_yield() == WAKE_CANCEL then raise_cancelled(2) end
end

function task_methods.await(t)
  check_block("task:await")
  if c_await(t) == WAKE_CANCEL then raise_cancelled(2) end
  return settle(t, c_result(t))
end

function task_methods.cancel(t, reason)
  return c_cancel(t, reason)
end

-- task:result() -> true, results... | false, err | nil while unfinished;
-- never raises and never blocks.
task_methods.result = c_result

-- The report printed for a task that failed with nobody awaiting it (or
-- for a failed main chunk, which reads like lua.c's: message, traceback).
-- Follows re-raised errors back to the task where they were raised.
function M._report(t, is_main)
  local err, tb = core.error(t)
  local msg = tostring(err)
  if type(err) == "table" and getmetatable(err) ~= Error and not getmetatable(err) then
    msg = "(error object is a table value)"
  end
  local name = t.name and fmt("task #%d (%s)", t.id, t.name) or fmt("task #%d", t.id)
  local out = { is_main and msg or name .. " failed: " .. msg }
  if tb then out[#out + 1] = tb end
  local seen = { [t] = true }
  local o = origin[t]
  while o and not seen[o] do
    seen[o] = true
    local oerr, otb = core.error(o)
    if not rawequal(oerr, err) then break end
    local oname = o.name and fmt("task #%d (%s)", o.id, o.name) or fmt("task #%d", o.id)
    out[#out + 1] = "raised in " .. oname .. ":"
    if otb then out[#out + 1] = otb end
    o = origin[o]
  end
  return table.concat(out, "\n")
end

---------------------------------------------------------------- scopes

-- Runs spawner(s) to start children in a fresh scope, waits for all of
-- them, and settles: the first failure is re-raised, a cancelled owner
-- raises cancelled.  Returns the scope's outcome for the caller to read.
local function run_scope(fn_name, timeout, spawner, a, b)
  local s = scope_new()
  if timeout then scope_arm(s, timeout) end
  local ok, perr = pcall(spawner, s, a, b)
  if not ok then scope_cancel(s) end
  scope_wait(s)
  local failed, timed_out = scope_close(s)
  if failed then settle(failed, c_result(failed)) end
  if not ok then error(perr, 0) end
  if c_shield(0) then raise_cancelled(3) end
  return timed_out
end

scope_methods.spawn = scope_spawn

function scope_methods.cancel(s)
  scope_cancel(s)
end

-- Methods first, in Lua: the JIT compiles scope:spawn's lookup into the
-- caller's trace.  Fields (cancelled, closed, count) are read in C.
do
  local scope_field = core.scope_field
  core.scope_mt.__index = function(s, k)
    local m = scope_methods[k]
    if m ~= nil then return m end
    return scope_field(s, k)
  end
end

local function pack(...) return { n = select("#", ...), ... } end

-- sluice.scope([opts,] fn): runs fn(scope) as the first child of a new
-- scope and returns its results once every child has finished.
function M.scope(opts, fn)
  if fn == nil and type(opts) == "function" then opts, fn = nil, opts end
  if opts ~= nil and type(opts) ~= "table" then
    raise("invalid", "sluice.scope: opts must be a table (got " .. describe(opts) .. ")", 2)
  end
  check_function("sluice.scope", "fn", fn)
  local timeout = opts and opts.timeout
  if timeout ~= nil then check_duration("sluice.scope", "timeout", timeout) end
  check_block("sluice.scope")
  local body
  local timed_out = run_scope("sluice.scope", timeout, function(s)
    body = scope_spawn(s, fn, s)
  end)
  -- A deadline that fired interrupted something (a child or the body):
  -- the scope did not finish its work in time, so it raises.
  if timed_out then raise("timeout", "sluice.scope: timed out after " .. describe(timeout) .. " s", 2) end
  if body.status == "cancelled" then return end
  return select(2, c_result(body))
end

-- sluice.timeout(seconds, fn, ...): fn(...) with a deadline; on expiry fn
-- is cancelled (its cleanups run) and a timeout error is raised.
function M.timeout(seconds, fn, ...)
  check_duration("sluice.timeout", "seconds", seconds)
  check_function("sluice.timeout", "fn", fn)
  check_block("sluice.timeout")
  local args, body = pack(...)
  local timed_out = run_scope("sluice.timeout", seconds, function(s)
    body = scope_spawn(s, fn, unpack(args, 1, args.n))
  end)
  if timed_out then raise("timeout", "sluice.timeout: timed out after " .. describe(seconds) .. " s", 2) end
  if body.status == "cancelled" then raise_cancelled(2) end
  return select(2, c_result(body))
end

-- sluice.shield(fn, ...): fn runs to the end even if the task is
-- cancelled meanwhile; the cancellation takes effect at the next
-- blocking call after it.
function M.shield(fn, ...)
  check_function("sluice.shield", "fn", fn)
  c_shield(1)
  local r = pack(pcall(fn, ...))
  c_shield(-1)
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

---------------------------------------------------------------- combinators

-- A task, or an object standing for one (a call queued in a limit):
-- anything with await and cancel methods.
local function is_tasklike(v)
  local t = type(v)
  if t ~= "userdata" and t ~= "cdata" and t ~= "table" then return false end
  local ok, a, c = pcall(function() return v.await, v.cancel end)
  return ok and type(a) == "function" and type(c) == "function"
end

local function check_list(fn, list)
  if type(list) ~= "table" then
    raise("invalid", fn .. ": list must be a table (got " .. describe(list) .. ")", 3)
  end
  local n = #list
  for i = 1, n do
    local v = list[i]
    if type(v) ~= "function" and not is_tasklike(v) then
      raise("invalid", fmt("%s: list[%d] must be a function or a task (got %s)", fn, i, describe(v)), 3)
    end
  end
  return n
end

-- Runs one list item in a child task: calls a function, or awaits a task
-- (cancelling that task if the child is cancelled while waiting).
local function run_item(item)
  if type(item) == "function" then return item() end
  local r = pack(pcall(item.await, item))
  if not r[1] then
    if is_cancel(r[2]) and c_shield(0) then item:cancel() end
    error(r[2], 0)
  end
  return unpack(r, 2, r.n)
end

-- sluice.all(list): every item's first result, in order; the first
-- failure cancels the rest and is raised.
function M.all(list)
  local n = check_list("sluice.all", list)
  check_block("sluice.all")
  local results = {}
  run_scope("sluice.all", nil, function(s)
    for i = 1, n do
      scope_spawn(s, function() results[i] = (run_item(list[i])) end)
    end
  end)
  return results
end

function M.all_settled(list)
  local n = check_list("sluice.all_settled", list)
  check_block("sluice.all_settled")
  local results = {}
  run_scope("sluice.all_settled", nil, function(s)
    for i = 1, n do
      scope_spawn(s, function()
        local ok, v = pcall(run_item, list[i])
        if ok then results[i] = { ok = true, value = v }
        else results[i] = { ok = false, err = v } end
      end)
    end
  end)
  return results
end

-- sluice.race(list): the first item to settle wins (its results, or its
-- error raised); the others are cancelled.
function M.race(list)
  local n = check_list("sluice.race", list)
  if n == 0 then raise("invalid", "sluice.race: list is empty", 2) end
  check_block("sluice.race")
  local winner
  run_scope("sluice.race", nil, function(s)
    for i = 1, n do
      scope_spawn(s, function()
        local r = pack(pcall(run_item, list[i]))
        if winner then
          if not r[1] and is_cancel(r[2]) then error(r[2], 0) end   -- a loser: cancelled
          return
        end
        winner = r
        if not r[1] then error(r[2], 0) end
        scope_cancel(s)
      end)
    end
  end)
  return unpack(winner, 2, winner.n)
end

-- sluice.any(list): the first success wins and the rest are cancelled;
-- if every item fails, raises an "aggregate" error listing them.
function M.any(list)
  local n = check_list("sluice.any", list)
  if n == 0 then raise("invalid", "sluice.any: list is empty", 2) end
  check_block("sluice.any")
  local winner, errors = nil, {}
  run_scope("sluice.any", nil, function(s)
    for i = 1, n do
      scope_spawn(s, function()
        local r = pack(pcall(run_item, list[i]))
        if winner then
          if not r[1] and is_cancel(r[2]) then error(r[2], 0) end   -- a loser: cancelled
          return
        end
        if r[1] then winner = r; scope_cancel(s) else errors[i] = r[2] end
      end)
    end
  end)
  if winner then return unpack(winner, 2, winner.n) end
  local e = new_error("aggregate", fmt("sluice.any: all %d failed (first: %s)", n, tostring(errors[1])), 2)
  e.errors = errors
  error(e, 0)
end

---------------------------------------------------------------- simulation

-- sluice.run([opts,] fn, ...): runs fn(...) as the root task of a nested
-- scheduler and returns its results once everything it started is done.
-- opts.clock = "virtual" runs it on a virtual clock starting at 0, for
-- simulating a system: time jumps to the next timer whenever nothing is
-- runnable.  The calling task (and the rest of the program) waits
-- meanwhile; real I/O does not progress inside the block.
function M.run(opts, fn, ...)
  local args
  if type(opts) == "function" then
    args = pack(fn, ...)
    opts, fn = {}, opts
  else
    args = pack(...)
  end
  if type(opts) ~= "table" then
    raise("invalid", "sluice.run: opts must be a table (got " .. describe(opts) .. ")", 2)
  end
  local clock = opts.clock == nil and "real" or opts.clock
  if clock ~= "real" and clock ~= "virtual" then
    raise("invalid", "sluice.run: clock must be \"real\" or \"virtual\" (got " .. describe(clock) .. ")", 2)
  end
  check_function("sluice.run", "fn", fn)
  local stuck, t = core.run(clock == "virtual", fn, unpack(args, 1, args.n))
  if stuck > 0 then
    raise("deadlock", fmt("sluice.run: deadlock: %d task%s waiting and nothing could wake %s",
      stuck, stuck == 1 and " was" or "s were", stuck == 1 and "it" or "them"), 2)
  end
  return settle(t, c_result(t))
end

---------------------------------------------------------------- callbacks

-- sluice.await(f, ...): calls f(..., callback) and blocks until the
-- callback runs; returns the callback's arguments unchanged.  A call that
-- fails synchronously (luv returns nil, err) returns err at once.
function M.await(f, ...)
  check_function("sluice.await", "f", f)
  check_block("sluice.await")
  local t, res, done = c_current(), nil, false
  local n = select("#", ...)
  local args = { ... }
  args[n + 1] = function(...)
    if done then return end
    done, res = true, pack(...)
    c_wake(t)
  end
  local r1, r2 = f(unpack(args, 1, n + 1))
  if not done and r1 == nil and r2 ~= nil then
    done = true
    return r2
  end
  if not done and c_park("callback") == WAKE_CANCEL then
    done = true
    raise_cancelled(2)
  end
  return unpack(res, 1, res.n)
end

---------------------------------------------------------------- coroutines

-- A user's own coroutine inside a task may block: its park yields are
-- passed up to the scheduler and the wake value passed back down.
local function pass_through(co, ok, ...)
  if ok and (...) == PARK and co_status(co) == "suspended" then
    return pass_through(co, co_resume(co, co_yield(PARK)))
  end
  return ok, ...
end

local function resume(co, ...)
  return pass_through(co, co_resume(co, ...))
end

local function wrap_result(ok, ...)
  if ok then return ... end
  error((...), 0)
end

coroutine.resume = resume
coroutine.wrap = function(f)
  local co = co_create(f)
  return function(...) return wrap_result(resume(co, ...)) end
end
coroutine.yield = function(...)
  if c_at_top() then
    error("coroutine.yield: attempt to yield from outside a coroutine (use sluice.yield in a task)", 2)
  end
  return co_yield(...)
end

M.Error = Error

-- What the primitive modules (lua/sluice/*.lua) share with this one.
local internal = {
  raise = raise, new_error = new_error, describe = describe,
  raise_cancelled = raise_cancelled, check_duration = check_duration,
  check_function = check_function, blocked = blocked, PARK = PARK,
  co_yield = co_yield, co_isyieldable = co_isyieldable, pack = pack,
  deadline = core.deadline, on_error = on_error, keep_traceback = keep_traceback,
}
require("sluice.semaphore")(M, internal)
require("sluice.weighted")(M, internal)
require("sluice.priority")(M, internal)
require("sluice.limit")(M, internal)
require("sluice.bucket")(M, internal)
require("sluice.channel")(M, internal)
require("sluice.resilience")(M, internal)
require("sluice.plan")(M, internal)
require("sluice.cache")(M, internal)
require("sluice.adaptive")(M, internal)
require("sluice.queue")(M, internal)
require("sluice.pool")(M, internal)
require("sluice.workers")(M, internal)

-- Submodules for I/O load on first use: sluice.redis, ...
local submodules = { redis = "sluice.redis", http = "sluice.http" }
setmetatable(M, {
  __index = function(t, k)
    local name = submodules[k]
    if name == nil then return nil end
    local m = require(name)
    if type(m) == "function" then m = m(M, internal) end
    rawset(t, k, m)
    return m
  end,
})

return M
