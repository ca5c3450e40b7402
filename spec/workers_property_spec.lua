-- A randomized property test of sluice.workers' job queue: seeded random
-- schedules of callers submitting jobs to a pool of 1 or 2 threads, some
-- cancelled before they submit, while queued or while running, others
-- not.  After each schedule: every caller that was not cancelled got its
-- own job's exact result; a cancelled one either raised `cancelled` or
-- (cancelled after its result came) got the exact result; nothing is
-- left busy or queued; and the pool still runs a job correctly.  One pool
-- per batch, so the pool goes on across many schedules' cancellations.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local prng, fmt = property.prng, string.format

-- The job: CPU work whose answer depends on both arguments.
local function job(i, k)
  local s = 0
  for j = 1, k do s = s + (i * j) % 7 end
  return i, s
end

local function expected(i, k)
  local s = 0
  for j = 1, k do s = s + (i * j) % 7 end
  return s
end

local pools = {}

local function run_schedule(seed)
  local rand = prng(seed)
  local problems = {}
  local function bad(...) problems[#problems + 1] = fmt(...) end
  local size = rand(2)
  local w = pools[size]
  if not w or w.closed then
    w = sluice.workers{ size = size }
    pools[size] = w
  end
  local n = 1 + rand(6)
  local callers, ks, cancel_at = {}, {}, {}
  for i = 1, n do
    ks[i] = rand(4) == 1 and 20000 + rand(50000) or rand(100)
    cancel_at[i] = rand(3) == 1 and rand(3) - 1 or nil   -- turns to wait before cancelling
    callers[i] = sluice.spawn(function() return w:run(job, i, ks[i]) end)
  end
  for turn = 0, 2 do
    for i = 1, n do
      if cancel_at[i] == turn then callers[i]:cancel() end
    end
    sluice.yield()
  end
  for i = 1, n do
    local ok, got_i, s = pcall(callers[i].await, callers[i])
    if ok then
      if got_i ~= i or s ~= expected(i, ks[i]) then
        bad("caller %d got %s, %s (expected %d, %d)", i, tostring(got_i), tostring(s), i, expected(i, ks[i]))
      end
    elseif not cancel_at[i] then
      bad("caller %d, never cancelled, failed: %s", i, tostring(got_i))
    elseif type(got_i) ~= "table" or got_i.kind ~= "cancelled" then
      bad("caller %d failed with %s, not cancelled", i, tostring(got_i))
    end
  end
  -- results of jobs whose callers left are discarded: let them drain
  for _ = 1, 100000 do
    if w.busy == 0 and w.queued == 0 then break end
    sluice.yield()
  end
  if w.busy ~= 0 or w.queued ~= 0 then bad("left busy %d, queued %d", w.busy, w.queued) end
  local i, s = w:run(job, 3, 10)
  if i ~= 3 or s ~= expected(3, 10) then bad("the pool no longer runs jobs right") end
  return problems
end

describe("sluice.workers (property)", function()
  property.batches(it, "random schedules %d..%d: every caller gets its own result or its cancellation", run_schedule)

  it("closes the pools the schedules used", function()
    for _, w in pairs(pools) do w:close() end
    for _, w in pairs(pools) do assert.is_true(w.closed) end
  end)
end)
