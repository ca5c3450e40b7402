-- examples/support/report.lua: small helpers shared by the HTTP examples:
-- option parsing, percentiles, counting open file descriptors, a ticker
-- task that samples them, and a progress line.
--
--   package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
--   local report = require "support.report"
--
-- Open descriptors are counted from /proc/self/fd (Linux); elsewhere the
-- count is nil and the examples print "n/a".
local sluice = require "sluice"
local uv = sluice.uv

local R = {}

-- R.options(name, defaults, usage): parses "--key value" pairs (and bare
-- "--flag" for boolean defaults) from arg; numbers must be positive
-- integers.  Exits with status 1 and a message on stderr otherwise.
function R.options(name, defaults, usage)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  local i = 1
  while arg and arg[i] do
    local key = arg[i]:match("^%-%-([%w_]+)$")
    if key and type(defaults[key]) == "boolean" then
      o[key] = true
    elseif key and type(defaults[key]) == "number" then
      local v = tonumber(arg[i + 1])
      if not v or v < 1 or v % 1 ~= 0 then
        io.stderr:write(name, ": --", key, " needs a positive integer\n")
        os.exit(1)
      end
      o[key], i = v, i + 1
    else
      io.stderr:write("usage: sluice examples/", name, ".lua ", usage, "\n")
      os.exit(1)
    end
    i = i + 1
  end
  return o
end

-- R.percentile(sorted, p): the p-th percentile (nearest rank) of a sorted list.
function R.percentile(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(p / 100 * #sorted))]
end

-- R.latency(list): "p50 … p90 … p99 … max …" in milliseconds.
function R.latency(list)
  local s = {}
  for i = 1, #list do s[i] = list[i] end
  table.sort(s)
  return string.format("p50 %6.1f ms   p90 %6.1f ms   p99 %6.1f ms   max %6.1f ms",
    R.percentile(s, 50) * 1000, R.percentile(s, 90) * 1000,
    R.percentile(s, 99) * 1000, (s[#s] or 0) * 1000), s
end

-- R.open_fds(): the number of open file descriptors, or nil where
-- /proc/self/fd does not exist.  The scan's own descriptor is not counted.
function R.open_fds()
  local h = uv.fs_scandir("/proc/self/fd")
  if not h then return nil end
  local n = 0
  while uv.fs_scandir_next(h) do n = n + 1 end
  return n - 1
end

function R.fmt_fds(n) return n and tostring(n) or "n/a" end

R.tty = uv.guess_handle(2) == "tty"

-- R.ticker(scope, every, fn): spawns a task in scope calling fn() every
-- `every` seconds until the scope is cancelled or t:cancel() is called.
function R.ticker(scope, every, fn)
  return scope:spawn(function()
    while true do
      sluice.sleep(every)
      fn()
    end
  end)
end

-- R.sampler(): tracks the peak of open descriptors; s:sample() reads it
-- now, s.peak is the highest seen.
function R.sampler()
  local s = { peak = R.open_fds() or 0, base = R.open_fds() }
  function s.sample()
    local n = R.open_fds()
    if n and n > s.peak then s.peak = n end
    return n
  end
  return s
end

-- R.progress(text): redraws the progress line on a terminal; elsewhere
-- prints it as a plain line when `plain` is true (a few periodic lines).
function R.progress(text, plain)
  if R.tty then
    io.stderr:write("\r", text, "\27[K")
  elseif plain then
    io.stderr:write(text, "\n")
  end
end

-- R.progress_done(): ends a progress line on a terminal.
function R.progress_done(text)
  if R.tty then io.stderr:write("\r", text or "", "\27[K\n") end
end

-- R.bar(done, total, width): a text bar such as [#####.....].
function R.bar(done, total, width)
  width = width or 24
  local full = total > 0 and math.floor(done / total * width + 0.5) or width
  return "[" .. string.rep("#", full) .. string.rep(".", width - full) .. "]"
end

return R
