-- spec/support/util.lua: the small helpers the specs share.
--
--   local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
--
-- (busted's assert lives in each spec file's environment, not here, so
-- these fail with plain errors, which fail the test just as well.)
local M = {}

-- A trace list and the function that appends to it.
function M.tracer()
  local list = {}
  return list, function(ev) list[#list + 1] = ev end
end

-- The error fn(...) raises (it must raise).
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error, but the call returned", 2) end
  return err
end

-- The message of the `invalid` error f(...) raises (it must raise one).
function M.msg_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then error("expected an invalid error, but the call returned", 2) end
  if type(err) ~= "table" or err.kind ~= "invalid" then
    error("expected an invalid error, got " .. tostring(err), 2)
  end
  return err.message
end

return M
