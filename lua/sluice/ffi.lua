-- sluice.ffi: the C functions of lib/ for the primitives' Lua faces
-- (declared once from lib/sl_ffi.h), and the translation of their
-- negative answers into errors.
local ffi = require "ffi"

ffi.cdef(require "sluice.cdef")

local C = ffi.C
local M = { C = C }

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

return M
