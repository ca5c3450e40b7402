-- sluice.ffi: the C functions of lib/ for the primitives' Lua faces
-- (declared once from lib/sl_ffi.h), and the translation of their
-- negative answers into errors.
local ffi = require "ffi"

ffi.cdef(require "sluice.cdef")

local C = ffi.C
local M = { C = C }
local type, huge = type, math.huge

local reasons = {
  [-1] = { "invalid", "must be called from a task" },
  [-2] = { "cancelled" },
  [-3] = { "invalid", "cannot block here (inside a C call such as a table.sort comparator or a string.gsub callback)" },
  [-4] = { "deadlock" },
  [-5] = { "invalid" },
  [-6] = { "invalid" },
}

-- Raises the error for answer r of fname; detail completes the message
-- for answers whose text depends on the primitive.
function M.fail(I, r, fname, detail, level)
  level = (level or 2) + 1
  if r == -2 then I.raise_cancelled(level) end
  local why = reasons[r] or { "invalid", "failed (" .. tostring(r) .. ")" }
  I.raise(why[1], fname .. ": " .. (detail or why[2]), level)
end

-- The __index of a primitive's metatype: its methods first, then the
-- fields computed by getters[k](obj).
function M.indexer(methods, getters)
  return function(obj, k)
    local m = methods[k]
    if m then return m end
    local g = getters[k]
    if g then return g(obj) end
  end
end

local stats_buf = ffi.new("sl_stats")

-- A primitive's stats() table: what sl_prim records (grants, waits,
-- timeouts, cancellations, wait times and their log2 histogram, whose
-- bucket 1 counts waits under 1 us and bucket i those from 2^(i-2) to
-- 2^(i-1) us) plus the primitive's own fields from extra.
function M.stats(prim, extra)
  local b = stats_buf
  C.sl_prim_stats(prim, b)
  local hist = {}
  for i = 1, 32 do hist[i] = tonumber(b.hist[i - 1]) end
  local t = {
    waiting = C.sl_prim_waiting(prim), acquired = b.acquired, waited = b.waited,
    timeouts = b.timeouts, cancelled = b.cancelled, wait_total = b.wait_total,
    wait_max = b.wait_max, histogram = hist,
  }
  for k, v in pairs(extra) do t[k] = v end
  return t
end

-- The timeout argument of an acquire-like method, -1 for none.
function M.timeout_arg(I, fname, timeout)
  if timeout == nil then return -1 end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 or timeout == huge then
    I.raise("invalid", fname .. ": timeout must be a finite non-negative number of seconds (got " ..
      I.describe(timeout) .. ")", 3)
  end
  return timeout
end

-- Reads an acquire-like call's answer r.  When C parked the task (0),
-- the caller yields itself, r = WOKEN - co_yield(PARK): yielding here,
-- one frame deeper, would make every parked coroutine outgrow its first
-- stack (about 40% more memory per parked task).  Returns true when
-- granted, nil and "timeout", or false and the answer (< 0) or wake code
-- (> 2) for the caller to turn into its own error.  A grant made to a
-- task that was cancelled before it could run is given back with
-- abandon(obj [, arg]) and the cancellation raised.
M.WOKEN = -100

function M.grant(I, r, abandon, obj, arg)
  if r == 1 then return true end
  if r <= M.WOKEN then
    local code = M.WOKEN - r
    if code == 0 then
      if C.sl_ffi_cancel_pending() ~= 0 then
        if arg == nil then abandon(obj) else abandon(obj, arg) end
        I.raise_cancelled(3)
      end
      return true
    end
    if code == 1 then return nil, "timeout" end
    if code == 2 then I.raise_cancelled(3) end
    return false, code
  end
  if r == -7 then return nil, "timeout" end
  return false, r
end

return M
