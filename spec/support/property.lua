-- Shared by the property specs: how many seeded schedules to run (from
-- the environment, to reproduce a failure), the seeded generator, and the
-- driver that runs the schedules in batches of `it` blocks.
--
--   SLUICE_PROPERTY_SCHEDULES  schedules per spec (default 10000)
--   SLUICE_PROPERTY_SEED       first seed (default 1)
local sluice = require "sluice"

local fmt, concat, min, ceil = string.format, table.concat, math.min, math.ceil

local M = {
  SCHEDULES = tonumber(os.getenv("SLUICE_PROPERTY_SCHEDULES")) or 10000,
  FIRST_SEED = tonumber(os.getenv("SLUICE_PROPERTY_SEED")) or 1,
  BATCHES = 10,
}

-- xorshift32: the same schedule for the same seed on every platform;
-- returns rand(n), an integer in 1..n.
function M.prng(seed)
  local x = bit.tobit((seed * 2654435761 + 12345) % 4294967296)
  if x == 0 then x = 1 end
  return function(n)
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 17))
    x = bit.bxor(x, bit.lshift(x, 5))
    return x % n + 1
  end
end

-- Registers BATCHES `it` blocks (busted's it, which lives in the spec
-- file's environment, is passed in), named by label (a format taking the
-- first and last seed), that run run_schedule(seed) for every seed and
-- fail with the first few seeds whose schedule reported problems or left
-- the scheduler's counts (keys of sluice.stats()) changed.
function M.batches(it, label, run_schedule, keys)
  keys = keys or { "tasks", "ready", "waiting", "timers" }
  local per_batch = ceil(M.SCHEDULES / M.BATCHES)
  for b = 1, M.BATCHES do
    local first = M.FIRST_SEED + (b - 1) * per_batch
    local last = min(M.FIRST_SEED + M.SCHEDULES - 1, first + per_batch - 1)
    it(fmt(label, first, last), function()
      local base = sluice.stats()
      local failures = {}
      for seed = first, last do
        local problems = run_schedule(seed)
        local st = sluice.stats()
        for _, k in ipairs(keys) do
          if st[k] ~= base[k] then
            problems[#problems + 1] = fmt("stats().%s is %d after the schedule, %d before", k, st[k], base[k])
          end
        end
        if #problems > 0 then
          failures[#failures + 1] = fmt("seed %d: %s", seed, concat(problems, "; "))
          if #failures >= 5 then break end
        end
      end
      assert(#failures == 0, concat(failures, "\n"))
    end)
  end
end

return M
