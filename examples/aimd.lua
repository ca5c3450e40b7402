-- examples/aimd.lua: sluice.adaptive finding a backend's capacity.
--
--   build/sluice examples/aimd.lua [--mode aimd|gradient] [--seconds N] [plot.svg]
--
-- The simulated backend answers in 50 ms while it serves at most 20
-- requests at once (its knee); beyond that it queues, so latency grows
-- in proportion (50 ms * inflight / 20), and beyond 60 at once it fails
-- fast with "503 overloaded".  200 clients send requests back to back
-- through one adaptive limit that starts at 5, with a target latency of
-- 75 ms: AIMD adds one per window of successes and halves on an error or
-- a request slower than the target, so the limit saws between about 20
-- and 30, around the knee, and throughput stays near the backend's best
-- (20 / 50 ms = 400 requests/s).  --mode gradient runs the gradient
-- limiter instead (no target: it compares the mean latency with the
-- no-load latency, the least it has seen lately): it holds still where
-- the latency is about 1.5 times the no-load one (its tolerance) plus
-- its queue allowance: at 34, with no errors.
--
-- It runs on the virtual clock: a simulated minute takes a fraction of a
-- second and the output is the same on every run.  With a file name it
-- also writes an SVG plot of the limit and the latency over time.
local sluice = require "sluice"

local fmt, floor, max, min = string.format, math.floor, math.max, math.min

---------------------------------------------------------------- options

local opts = { mode = "aimd", seconds = 30, svg = nil }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--mode" and (arg[i + 1] == "aimd" or arg[i + 1] == "gradient") then
      opts.mode, i = arg[i + 1], i + 1
    elseif a == "--seconds" and tonumber(arg[i + 1]) and tonumber(arg[i + 1]) >= 1 then
      opts.seconds, i = floor(tonumber(arg[i + 1])), i + 1
    elseif a:sub(1, 2) ~= "--" and not opts.svg then
      opts.svg = a
    else
      io.stderr:write("usage: sluice examples/aimd.lua [--mode aimd|gradient] [--seconds N] [plot.svg]\n")
      os.exit(1)
    end
    i = i + 1
  end
end

local BASE, KNEE, OVERLOAD = 0.050, 20, 60
local CLIENTS, SAMPLE = 200, 0.25

---------------------------------------------------------------- the backend

local backend = { inflight = 0, served = 0, errors = 0, latency_sum = 0 }

-- A request: its latency is fixed by the load it finds when it arrives.
function backend.request()
  local n = backend.inflight + 1
  if n > OVERLOAD then
    sluice.sleep(0.001)
    backend.errors = backend.errors + 1
    error("503 overloaded", 0)
  end
  backend.inflight = n
  local latency = n <= KNEE and BASE or BASE * n / KNEE
  sluice.sleep(latency)
  backend.inflight = backend.inflight - 1
  backend.served = backend.served + 1
  backend.latency_sum = backend.latency_sum + latency
end

---------------------------------------------------------------- the run

local samples = {}   -- { t, limit, inflight, latency (mean ms), ok/s, errors/s }

sluice.run({ clock = "virtual" }, function()
  local a = sluice.adaptive {
    mode = opts.mode, initial = 5, min = 1, max = 100,
    target = opts.mode == "aimd" and BASE * 1.5 or nil,
  }
  local stop = false
  sluice.scope(function(s)
    for _ = 1, CLIENTS do
      s:spawn(function()
        while not stop do pcall(a.run, a, backend.request) end
      end)
    end
    local served, errors, lat = 0, 0, 0
    for i = 1, opts.seconds / SAMPLE do
      sluice.sleep(SAMPLE)
      local n = backend.served - served
      samples[i] = {
        t = i * SAMPLE, limit = a.limit, inflight = backend.inflight,
        latency = n > 0 and (backend.latency_sum - lat) / n * 1000 or 0,
        ok = n / SAMPLE, errors = (backend.errors - errors) / SAMPLE,
      }
      served, errors, lat = backend.served, backend.errors, backend.latency_sum
    end
    stop = true
  end)
end)

---------------------------------------------------------------- the report

print(fmt("sluice.adaptive (%s) against a backend with its knee at %d concurrent requests", opts.mode, KNEE))
print(fmt("(latency %d ms up to %d at once, growing linearly beyond; 503 beyond %d), %d clients",
  BASE * 1000, KNEE, OVERLOAD, CLIENTS))
print()
print("  time  limit (low-high)  latency  served/s  errors/s")
local per_second = 1 / SAMPLE
for i = per_second, #samples, per_second do
  -- one row per second: the limit at its end and its range over the
  -- second's samples, the means of the rest
  local lat, ok, err, lo, hi = 0, 0, 0, math.huge, 0
  for j = i - per_second + 1, i do
    local s = samples[j]
    lat, ok, err = lat + s.latency, ok + s.ok, err + s.errors
    lo, hi = min(lo, s.limit), max(hi, s.limit)
  end
  print(fmt("%5.0fs  %5d  (%3d-%3d)  %5.0f ms  %8.0f  %8.0f", samples[i].t, samples[i].limit, lo, hi,
    lat / per_second, ok / per_second, err / per_second))
end

-- The limit every SAMPLE seconds as a sparkline, 0 to max seen.
local bars = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" }
local top = 0
for _, s in ipairs(samples) do top = max(top, s.limit) end
local line = {}
for i, s in ipairs(samples) do line[i] = bars[min(8, floor(s.limit / top * 8 + 0.5) + (s.limit > 0 and 0 or 1))] or bars[1] end
print()
print(fmt("limit every %g s (▁ = 0, █ = %d):", SAMPLE, top))
for i = 1, #line, 60 do print(table.concat(line, "", i, min(#line, i + 59))) end

-- Where it settled: the mean limit over the second half of the run.
local sum, n = 0, 0
for i = floor(#samples / 2) + 1, #samples do sum, n = sum + samples[i].limit, n + 1 end
print()
print(fmt("mean limit over the last %g s: %.1f (knee %d); served %d, %d errors (503)",
  n * SAMPLE, sum / n, KNEE, backend.served, backend.errors))

---------------------------------------------------------------- the plot

if opts.svg then
  local W, H, PAD = 800, 300, 40
  local maxlat = 0
  for _, s in ipairs(samples) do maxlat = max(maxlat, s.latency) end
  local function x(t) return PAD + (W - 2 * PAD) * t / opts.seconds end
  local function y(v, vmax) return H - PAD - (H - 2 * PAD) * v / vmax end
  local limit_pts, lat_pts = {}, {}
  for i, s in ipairs(samples) do
    limit_pts[i] = fmt("%.1f,%.1f", x(s.t), y(s.limit, top))
    lat_pts[i] = fmt("%.1f,%.1f", x(s.t), y(s.latency, maxlat))
  end
  local f = assert(io.open(opts.svg, "w"))
  f:write(fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">\n', W, H))
  f:write(fmt('<rect width="%d" height="%d" fill="white"/>\n', W, H))
  f:write(fmt('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>\n', PAD, H - PAD, W - PAD, H - PAD))
  f:write(fmt('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999" stroke-dasharray="4"/>\n',
    PAD, floor(y(KNEE, top)), W - PAD, floor(y(KNEE, top))))
  f:write(fmt('<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>\n', table.concat(limit_pts, " ")))
  f:write(fmt('<polyline fill="none" stroke="#d62728" stroke-width="1" points="%s"/>\n', table.concat(lat_pts, " ")))
  f:write(fmt('<text x="%d" y="20" fill="#1f77b4">limit (max %d; dashed: knee %d)</text>\n', PAD, top, KNEE))
  f:write(fmt('<text x="%d" y="20" fill="#d62728">mean latency (max %.0f ms)</text>\n', W / 2, maxlat))
  f:write(fmt('<text x="%d" y="%d">%d s (%s)</text>\n', W - PAD - 80, H - 10, opts.seconds, opts.mode))
  f:write("</svg>\n")
  f:close()
  print("plot written to " .. opts.svg)
end
