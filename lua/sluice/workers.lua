-- sluice.workers{size=}: a pool of OS threads for CPU-bound Lua, the
-- Lua face of lib/sl_workers.c; and sluice.warn_blocking(seconds).
--
-- w:run(fn, ...) sends fn and its arguments to a worker thread, which
-- runs it in a LuaJIT state of its own, and blocks the calling task (not
-- the loop) until the results come back.  fn is a Lua function without
-- upvalues, sent as bytecode (string.dump, cached per function here and
-- per worker there), or a "module.function" string, which the worker
-- resolves as require("module").function.  Workers use the package.path
-- and package.cpath the creating state had; `sluice` itself is not
-- available in them, and their globals persist from job to job.
--
-- Values are copied, never shared: nil, booleans, numbers, strings and
-- tables of these (no cycles; keys strings, numbers or booleans).  A
-- value that cannot be sent raises an "invalid" error naming its path:
-- "workers:run: args[2].conn: cannot send a userdata".
--
-- A job that raises re-raises in the caller as an error of kind
-- "worker": message is the original message text (tostring of the error
-- value, or its .message field), value the error value itself (copied,
-- or its text if it cannot be), worker_traceback the worker's traceback;
-- traceback holds both the worker's and the caller's.
--
-- Cancellation: a cancelled caller's queued job is dropped; a running
-- one finishes and its result is discarded; the worker goes on.
-- w:close() drains: it refuses new jobs ("closed" error), waits for the
-- queued and running ones (their callers get their results), then joins
-- the threads.  It is idempotent.  A pool that is garbage collected or
-- still open when the state closes drops its queued jobs and joins its
-- threads, which waits for running jobs: a job that never ends would
-- hang the exit.
--
-- Fields: w.size, w.busy (jobs running), w.queued (waiting for a
-- worker), w.closed; w:stats() adds completed (jobs delivered).
--
-- Under the virtual clock a job takes no virtual time: the clock cannot
-- jump while a job is outstanding, so it stands still until it is done.
--
-- sluice.warn_blocking(seconds) reports (through the host's report
-- hook, to stderr for the CLI) each time a task runs that long of real
-- time without yielding, with its id, name and the traceback of where
-- it finally yielded.  Measured around each resume, so it costs one
-- test per resume when off and two clock reads when on; a task that
-- never yields is not caught while it runs.  The companion,
-- sluice.stats().loop_lag, is kept by the scheduler (lib/sl_sched.c):
-- p50, p99 and max of how late the last 512 timers fired, count of all
-- timers measured; real clock only (all 0 under the virtual clock).
local core = require "sluice.workers.core"
local sffi = require "sluice.ffi"

local C = sffi.C
local type, select, setmetatable, getmetatable, tostring, rawget =
      type, select, setmetatable, getmetatable, tostring, rawget
local floor, huge, fmt, concat = math.floor, math.huge, string.format, table.concat
local dump, getupvalue, getinfo = string.dump, debug.getupvalue, debug.getinfo
local traceback = debug.traceback
local c_new, c_submit, c_finish, c_close, c_wait_idle, c_join, c_info, c_cpus, c_warn =
      core.new, core.submit, core.finish, core.close, core.wait_idle, core.join,
      core.info, core.cpus, core.warn_blocking
local package = package

local WAKE_CANCEL = 2
local MAX_SIZE = 1024

return function(M, I)
  local raise, describe, new_error = I.raise, I.describe, I.new_error
  local co_isyieldable, co_yield, PARK, blocked = I.co_isyieldable, I.co_yield, I.PARK, I.blocked
  local raise_cancelled = I.raise_cancelled

  local Workers = {}
  local methods = {}

  -- fn -> its bytecode; weak keys, so a cached function can still go.
  local dumps = setmetatable({}, { __mode = "k" })

  local function check_self(self, fn)
    if getmetatable(self) ~= Workers then
      raise("invalid", fmt("%s: self must be a worker pool (got %s)", fn, describe(self)), 3)
    end
    return rawget(self, "_ud")
  end

  -- The kind ("b" bytecode, "m" module name) and text of a job's fn.
  local function job_code(fn)
    local code = dumps[fn]
    if code then return "b", code end
    if type(fn) == "string" then
      if not fn:find("^[%w_.%-]+%.[%a_][%w_]*$") then
        raise("invalid", fmt('workers:run: fn must be a function or a "module.function" string (got %s)',
          describe(fn)), 3)
      end
      return "m", fn
    end
    if type(fn) ~= "function" then
      raise("invalid", fmt('workers:run: fn must be a function or a "module.function" string (got %s)',
        describe(fn)), 3)
    end
    if getinfo(fn, "S").what == "C" then
      raise("invalid", "workers:run: fn must be a Lua function (got a C function)", 3)
    end
    local names, i = {}, 1
    while true do
      local name = getupvalue(fn, i)
      if name == nil then break end
      names[i] = name
      i = i + 1
    end
    if #names > 0 then
      raise("invalid", fmt("workers:run: fn must not have upvalues (it has %d: %s)", #names,
        concat(names, ", ")), 3)
    end
    code = dump(fn)
    dumps[fn] = code
    return "b", code
  end

  local function error_text(v)
    if type(v) == "table" and type(v.message) == "string" then return v.message end
    return tostring(v)
  end

  -- The job's answer as results, or the error it raised.
  local function fail(status, a, b)
    if status == "invalid" then raise("invalid", a, 4) end
    local e = new_error("worker", error_text(a), 3)
    e.value = a
    e.worker_traceback = b
    e.traceback = error_text(a) .. "\nin the worker: " .. b .. "\nin the caller: " .. e.traceback
    error(e, 0)
  end

  local function settle(status, ...)
    if status == "ok" then return ... end
    fail(status, ...)
  end

  function methods.run(self, fn, ...)
    local ud = check_self(self, "workers:run")
    local kind, code = job_code(fn)
    if not co_isyieldable() then blocked("workers:run") end
    local job = c_submit(ud, kind, code, ...)
    if job == nil then raise_cancelled(2) end
    if co_yield(PARK) == WAKE_CANCEL then raise_cancelled(2) end
    if C.sl_ffi_cancel_pending() ~= 0 then
      c_finish(job)   -- done, but the caller is cancelled: results dropped
      raise_cancelled(2)
    end
    return settle(c_finish(job))
  end

  function methods.close(self)
    local ud = check_self(self, "workers:close")
    if c_close(ud) > 0 then
      if not co_isyieldable() then blocked("workers:close") end
      c_wait_idle(ud)
      if co_yield(PARK) == WAKE_CANCEL then raise_cancelled(2) end
    end
    c_join(ud)
  end

  function methods.stats(self)
    local size, busy, queued, closed, completed = c_info(check_self(self, "workers:stats"))
    return { size = size, busy = busy, queued = queued, closed = closed, completed = completed }
  end

  local fields = {
    size = function(ud) return (c_info(ud)) end,
    busy = function(ud) return (select(2, c_info(ud))) end,
    queued = function(ud) return (select(3, c_info(ud))) end,
    closed = function(ud) return (select(4, c_info(ud))) end,
  }

  Workers.__index = function(self, k)
    local f = fields[k]
    if f then return f(rawget(self, "_ud")) end
    return methods[k]
  end
  Workers.__newindex = function(_, k)
    raise("invalid", fmt("workers: field '%s' is read-only", tostring(k)), 2)
  end
  Workers.__tostring = function(self)
    local size, busy, queued = c_info(rawget(self, "_ud"))
    return fmt("workers(size=%d, busy=%d, queued=%d)", size, busy, queued)
  end

  function M.workers(opts)
    if opts ~= nil and type(opts) ~= "table" then
      raise("invalid", fmt("sluice.workers: options must be a table (got %s)", describe(opts)), 2)
    end
    local size = opts and opts.size
    if size == nil then
      size = c_cpus()
    elseif type(size) ~= "number" or size ~= floor(size) or size < 1 or size > MAX_SIZE then
      raise("invalid", fmt("sluice.workers: size must be a positive integer up to %d (got %s)",
        MAX_SIZE, describe(size)), 2)
    end
    return setmetatable({ _ud = c_new(size, package.path, package.cpath) }, Workers)
  end

  -- sluice.warn_blocking(seconds | false | nil) -> the previous setting
  -- (seconds, or false when off).
  function M.warn_blocking(s)
    local v = 0
    if s ~= nil and s ~= false then
      if type(s) ~= "number" or s ~= s or s <= 0 or s == huge then
        raise("invalid", fmt("sluice.warn_blocking: seconds must be a finite positive number, " ..
          "false or nil (got %s)", describe(s)), 2)
      end
      v = s
    end
    local prev = c_warn(v)
    if prev == 0 then return false end
    return prev
  end
end
