-- bench/trypair.lua: an uncontended try_acquire() + release() pair.
--
--   build/sluice bench/trypair.lua [pairs=10000000] [reps=5]
--
-- One task takes and gives back the only permit of a semaphore(1) `pairs`
-- times in a loop (nobody else wants it, so neither call waits nor wakes
-- anyone).  Prints the median over `reps` repetitions, after a warm-up
-- that lets LuaJIT compile the loop, of the time per pair, loop included.
local sluice = require "sluice"
local hrtime = sluice.uv.hrtime

local PAIRS = tonumber(arg and arg[1]) or 10000000
local REPS = tonumber(arg and arg[2]) or 5

local sem = sluice.semaphore(1)

local function once(n)
  local t0 = hrtime()
  for _ = 1, n do
    if not sem:try_acquire() then error("try_acquire failed uncontended") end
    sem:release()
  end
  return (hrtime() - t0) / n
end

once(PAIRS)   -- warm-up
local ns = {}
for r = 1, REPS do ns[r] = once(PAIRS) end
table.sort(ns)
local med = ns[math.floor((REPS + 1) / 2)]
assert(sem.available == 1)
print(string.format("trypair: %d uncontended try_acquire()+release() pairs, semaphore(1): %.1f ms (%.1f ns/pair)",
  PAIRS, med * PAIRS / 1e6, med))
print(string.format("  median of %d runs, min %.1f ns, max %.1f ns", REPS, ns[1], ns[#ns]))
