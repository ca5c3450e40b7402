-- A randomized property test of sluice.limit: seeded random schedules of
-- calls, completions, cancels (queued and running), clear_queue and
-- resizes on the virtual clock, checking that active never exceeds the
-- limit (except right after a shrink, until calls finish), that no call
-- is lost or started twice, that calls start in FIFO order, and that
-- nothing is left pending at the end.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"
local bit = require "bit"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local SCHEDULES, FIRST_SEED = property.SCHEDULES, property.FIRST_SEED
local fmt = string.format

local prng = property.prng

local function run_schedule(seed)
  local rand = prng(seed)
  local problems = {}
  local function bad(...) problems[#problems + 1] = fmt(...) end
  local lim = sluice.limit(rand(3))
  local running, started, ended = 0, {}, {}
  local order, handles, cancelled = {}, {}, {}
  local max_allowed = lim.concurrency
  local function body(id, d)
    if started[id] then bad("call %d started twice", id) end
    started[id] = true
    order[#order + 1] = id
    running = running + 1
    -- active counts started calls whose body has not run yet, too
    if lim.active_count > max_allowed then bad("%d active, limit %d", lim.active_count, max_allowed) end
    if running > lim.active_count then bad("active_count %d, running %d", lim.active_count, running) end
    local ok, e = pcall(sluice.sleep, d)
    running = running - 1
    ended[id] = true
    if not ok then error(e, 0) end
    return id
  end
  local ops = 5 + rand(20)
  for _ = 1, ops do
    local op = rand(10)
    if op <= 5 then
      local id = #handles + 1
      handles[id] = lim(body, id, (rand(4) - 1) * 0.5)
    elseif op == 6 and #handles > 0 then
      local id = rand(#handles)
      local was = handles[id].status
      if handles[id]:cancel() and was == "pending" then cancelled[id] = true end
    elseif op == 7 then
      local n = rand(4)
      lim.concurrency = n
      -- running calls above a smaller limit may finish; none may start
      max_allowed = math.max(n, lim.active_count)
    elseif op == 8 and rand(4) == 1 then
      for id = 1, #handles do
        if handles[id].status == "pending" then cancelled[id] = true end
      end
      lim:clear_queue()
    else
      sluice.sleep((rand(3) - 1) * 0.25)
      max_allowed = math.max(lim.concurrency, lim.active_count)
    end
  end
  for id = 1, #handles do
    local ok = pcall(handles[id].await, handles[id])
    if cancelled[id] then
      if ok or started[id] then bad("call %d cancelled while queued, yet ran", id) end
    elseif not started[id] and handles[id].status ~= "cancelled" then
      bad("call %d lost (status %s)", id, handles[id].status)
    end
  end
  if lim.pending_count ~= 0 or lim.active_count ~= 0 then
    bad("left: %d pending, %d active", lim.pending_count, lim.active_count)
  end
  for i = 2, #order do
    if order[i] < order[i - 1] then bad("FIFO broken: %d started after %d", order[i], order[i - 1]) end
  end
  return problems
end

describe("sluice.limit under random schedules", function()
  it(fmt("keeps its invariants over %d seeded schedules", SCHEDULES), function()
    local failures = {}
    for seed = FIRST_SEED, FIRST_SEED + SCHEDULES - 1 do
      local p = run_schedule(seed)
      if #p > 0 then
        failures[#failures + 1] = fmt("seed %d: %s", seed, table.concat(p, "; "))
        if #failures >= 5 then break end
      end
    end
    assert.same({}, failures)
  end)
end)
