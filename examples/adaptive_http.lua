-- examples/adaptive_http.lua: sluice.adaptive (AIMD) finding a server's
-- capacity over real HTTP, without being told it.
--
--   build/sluice examples/adaptive_http.lua [--seconds 6] [--clients 100] [--knee 20]
--
-- A local server (127.0.0.1, random port) answers in 10 ms while it has
-- at most --knee requests in hand; past the knee every request is slower
-- in proportion to the overload, and past 1.5 x knee it sheds load with
-- 503 at once.  --clients tasks call it back to back through one
-- sluice.adaptive limiter that starts at 1: each success adds 1/limit,
-- each 503 or answer slower than 25 ms halves it (once per window).  The
-- limit climbs, overshoots the knee, backs off, and saw-tooths around it;
-- the table shows it every half second, with the range it moved in.
local sluice = require "sluice"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local report = require "support.report"
local http = sluice.http

local o = report.options("adaptive_http", { seconds = 6, clients = 100, knee = 20 },
  "[--seconds 6] [--clients 100] [--knee 20]")
local KNEE, BASE, TARGET = o.knee, 0.010, 0.025

local active, served, shed = 0, 0, 0
local srv = http.serve { port = 0, handler = function()
  if active >= KNEE * 1.5 then
    shed = shed + 1
    return { status = 503, body = "overloaded" }
  end
  active = active + 1
  local load = math.max(1, active / KNEE)
  sluice.sleep(BASE * load * load)
  active = active - 1
  served = served + 1
  return "ok"
end }
local url = "http://127.0.0.1:" .. srv.port .. "/work"

local lo, hi = math.huge, 0      -- the limit's range since the last row
local a = sluice.adaptive { initial = 1, max = 200, target = TARGET,
  on_change = function(_, new) lo, hi = math.min(lo, new), math.max(hi, new) end }

local function call()
  local res = http.get(url)
  if res.status ~= 200 then error("status " .. res.status) end
end

print(string.format("adaptive_http: %d clients against a server whose knee is %d requests at once",
  o.clients, KNEE))
print(string.format("(10 ms up to the knee, slower past it, 503 past %d; AIMD, target %d ms)",
  math.floor(KNEE * 1.5), TARGET * 1000))
print()
print("  time   limit  (range)   ok/s  fail/s   limit")
local samples, stop, ok_n, err_n = {}, false, 0, 0
local t0 = sluice.now()
sluice.scope(function(s)
  for _ = 1, o.clients do
    s:spawn(function()
      while not stop do
        local ok = pcall(a.run, a, call)
        if ok then ok_n = ok_n + 1 else err_n = err_n + 1 end
      end
    end)
  end
  local last_ok, last_err = 0, 0
  for k = 1, o.seconds * 2 do
    sluice.sleep(0.5)
    local lim = a.limit
    samples[k] = lim
    lo, hi = math.min(lo, lim), math.max(hi, lim)
    print(string.format("  %4.1f s %5d  %3d-%-3d  %6.0f  %5.0f   %s", k / 2, lim, lo, hi,
      (ok_n - last_ok) * 2, (err_n - last_err) * 2,
      string.rep(" ", math.min(lo, 60) - 1) .. string.rep("#", math.min(hi, 60) - math.min(lo, 60) + 1)))
    last_ok, last_err, lo, hi = ok_n, err_n, lim, lim
  end
  stop = true
end)
local elapsed = sluice.now() - t0

local sum, n = 0, 0
for k = math.floor(#samples / 2) + 1, #samples do sum, n = sum + samples[k], n + 1 end
local mean = sum / n
print()
print(string.format("  %d calls succeeded, %d failed (503 or slower than %d ms) in %.1f s; the server shed %d",
  ok_n, err_n, TARGET * 1000, elapsed, shed))
print(string.format("  mean limit over the second half: %.1f (knee %d); %d decreases", mean, KNEE, a:stats().decreases))
local near = mean >= KNEE * 0.5 and mean <= KNEE * 1.5
print(near and "  converged near the knee" or "  did NOT converge near the knee")
srv:close()
os.exit(near and 0 or 1)
