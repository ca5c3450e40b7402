-- bench/imap.lua: sluice.imap over a long source with flat memory.
--
--   build/sluice bench/imap.lua [n=1000000] [concurrency=16] [reps=3]
--
-- An iterator function yields 1..n; imap calls fn (which gives up the
-- CPU once, sluice.yield(), as an I/O call would, and returns x + 1) with
-- `concurrency` calls in flight, and the loop sums the results in order.
-- Bounded look-ahead means the source is never read more than
-- 2 x concurrency items ahead, so the Lua heap stays flat however long
-- the source is: it is printed at the start, in the middle and at the end
-- of the first counted run (after a full collection each time).
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local N = tonumber(arg and arg[1]) or 1000000
local CONC = tonumber(arg and arg[2]) or 16
local REPS = tonumber(arg and arg[3]) or 3

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function heap_kb()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count")
end

local heap, runs = {}, 0

local function fn(x)
  sluice.yield()
  return x + 1
end

local function once()
  collectgarbage()
  runs = runs + 1
  local watch = runs == 2                 -- the first counted run
  local i = 0
  local function source()
    if i < N then
      i = i + 1
      return i
    end
  end
  if watch then heap[1] = heap_kb() end
  local t0, sum, k, paused = hrtime(), 0, 0, 0
  for r in sluice.imap(source, fn, { concurrency = CONC }) do
    sum = sum + r
    k = k + 1
    if watch and k == N / 2 then
      local p = hrtime()
      heap[2] = heap_kb()
      paused = hrtime() - p
    end
  end
  local ms = (hrtime() - t0 - paused) / 1e6
  if watch then heap[3] = heap_kb() end
  assert(sum == N * (N + 1) / 2 + N)
  return ms
end

local med = measure(once, REPS)
print(string.format("imap: %d items, concurrency %d: %.1f ms (%.0f ns/item)", N, CONC, med, med * 1e6 / N))
print(string.format("imap: Lua heap %.0f KB at the start, %.0f KB in the middle, %.0f KB at the end",
  heap[1], heap[2], heap[3]))
