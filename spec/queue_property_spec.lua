-- A randomized property test of sluice.queue: seeded random schedules of
-- adds (random priorities, durations and timeouts), cancels (pending and
-- running jobs), pauses and starts, clears, resizes and time passing on
-- the virtual clock, with and without an interval cap.  Checked:
--   * running jobs never exceed the concurrency (after a shrink: what
--     was running then), and the queue's counts agree with the model's;
--   * no more than interval_cap starts in any window of `interval`
--     seconds (start i and start i + cap are at least interval apart);
--   * each job that starts is the best, by (priority, arrival), of the
--     jobs pending at that moment; none starts while the queue is paused;
--   * nothing is lost or duplicated: every job starts once, or ends
--     cancelled having never started; a job times out iff it ran as long
--     as its timeout; and at the end nothing is pending, running or left
--     behind (tasks, timers).
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local fmt, max = string.format, math.max

local DURATIONS = { 0, 0.25, 0.5, 1, 2 }
local ADVANCES = { 0, 0.25, 0.5, 1 }
local INTERVALS = { 0.5, 1, 1.5 }

local function run_schedule(seed)
  local rand = property.prng(seed)
  local problems = {}
  local function bad(...) if #problems < 5 then problems[#problems + 1] = fmt(...) end end
  local opts = { concurrency = rand(3) }
  local cap, interval
  if rand(2) == 1 then
    cap, interval = rand(3), INTERVALS[rand(#INTERVALS)]
    opts.interval, opts.interval_cap = interval, cap
  end
  local qtimeout
  if rand(3) == 1 then qtimeout = rand(2) * 0.5; opts.timeout = qtimeout end
  local q = sluice.queue(opts)
  local max_allowed = opts.concurrency
  local paused = false
  local jobs, pending = {}, {}   -- pending: id -> job, in the model
  local starts, running = {}, 0

  local function body(id)
    local j = jobs[id]
    if j.started then bad("job %d started twice", id) end
    if not pending[id] then bad("job %d started though not pending (cancelled?)", id) end
    if paused then bad("job %d started while paused", id) end
    for oid, o in pairs(pending) do
      if oid ~= id and (o.prio < j.prio or (o.prio == j.prio and oid < id)) then
        bad("job %d (priority %g) started before job %d (priority %g)", id, j.prio, oid, o.prio)
        break
      end
    end
    pending[id] = nil
    j.started, j.t_start = true, sluice.now()
    starts[#starts + 1] = j.t_start
    running = running + 1
    if running > max_allowed then bad("%d running, limit %d", running, max_allowed) end
    local ok, e = pcall(sluice.sleep, j.d)
    running = running - 1
    j.ended = true
    if not ok then error(e, 0) end
    return id
  end

  local function check_counts()
    local n = 0
    for _ in pairs(pending) do n = n + 1 end
    -- a job about to start in this instant counts as running: compare totals
    if q.size + q.pending ~= n + running then
      bad("size %d + pending %d, model %d pending + %d running", q.size, q.pending, n, running)
    end
  end

  local steps = 6 + rand(18)
  for _ = 1, steps do
    local op = rand(20)
    if op <= 9 then
      local id = #jobs + 1
      local j = { prio = rand(3) - 2, d = DURATIONS[rand(#DURATIONS)] }
      local o
      if rand(4) == 1 then j.timeout = rand(3) * 0.5; o = { priority = j.prio, timeout = j.timeout }
      elseif j.prio ~= 0 or rand(2) == 1 then o = { priority = j.prio } end
      j.limit = j.timeout or qtimeout
      jobs[id] = j
      pending[id] = j
      j.h = q:add(body, o, id)
    elseif op <= 11 and #jobs > 0 then
      local id = rand(#jobs)
      local j = jobs[id]
      local was = j.h.status
      if j.h:cancel() and was == "pending" then
        pending[id] = nil
        j.cancelled = true
      end
    elseif op == 12 then
      if paused then q:start() else q:pause() end
      paused = not paused
      if paused ~= q.is_paused then bad("is_paused %s, model %s", tostring(q.is_paused), tostring(paused)) end
    elseif op == 13 and rand(3) == 1 then
      for id in pairs(pending) do jobs[id].cancelled = true end
      pending = {}
      q:clear()
    elseif op == 14 then
      local n = rand(3)
      q.concurrency = n
      max_allowed = max(n, running)
    else
      sluice.sleep(ADVANCES[rand(#ADVANCES)])
      max_allowed = max(q.concurrency, running)
    end
    check_counts()
  end
  if paused then q:start(); paused = false end
  q:on_idle()
  for id, j in ipairs(jobs) do
    local ok, e = pcall(j.h.await, j.h)
    if j.cancelled then
      if ok or j.started then bad("job %d cancelled while pending, yet ran", id) end
    elseif not j.started then
      bad("job %d lost (status %s)", id, j.h.status)
    elseif ok then
      if e ~= id then bad("job %d returned %s", id, tostring(e)) end
      if j.limit and j.d >= j.limit then bad("job %d ran %g s, timeout %g, did not time out", id, j.d, j.limit) end
    elseif e.kind == "timeout" then
      if not (j.limit and j.d >= j.limit) then bad("job %d timed out (ran %g s, timeout %s)", id, j.d, tostring(j.limit)) end
      if e.message ~= "queue: job timed out after " .. j.limit .. " s" then bad("job %d: %s", id, e.message) end
    elseif e.kind ~= "cancelled" then
      bad("job %d failed: %s", id, tostring(e))
    end
  end
  if cap then
    for i = 1, #starts - cap do
      if not (starts[i] + interval <= starts[i + cap]) then
        bad("%d starts from %g to %g, cap %d per %g s", cap + 1, starts[i], starts[i + cap], cap, interval)
        break
      end
    end
  end
  if q.size ~= 0 or q.pending ~= 0 then bad("left: size %d, pending %d", q.size, q.pending) end
  return problems
end

describe("sluice.queue under random schedules", function()
  property.batches(it, "keeps its invariants over seeds %d..%d", run_schedule)
end)
