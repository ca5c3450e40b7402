-- A randomized property test of sluice.priority_semaphore: many small
-- seeded random schedules of acquire / try_acquire / with / release /
-- cancel / timeout / resize on the virtual clock, with and without
-- aging, run against a model (grant the waiter with the lowest
-- priority * aging + arrival time, or lowest priority without aging;
-- FIFO among equals; nobody while a permit is not free).  After every
-- step the semaphore's own view (held, waiting, and which task holds,
-- from holders()) must equal the model's, so no permit is lost or
-- duplicated, nothing is granted above the limit, and grants follow the
-- priority order exactly.  At the end nothing may be left held or
-- parked, and the stats must match.
--
-- Timing keeps the model exact: every step happens at a whole second and
-- every timeout at a half second, so at a half second only timeouts and
-- the grants they allow happen; the model applies due timeouts lazily
-- (in their arming order) before each step and each check.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"
local bit = require "bit"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local SCHEDULES, FIRST_SEED = property.SCHEDULES, property.FIRST_SEED
local MAX_CAP = 4
local PRIORITIES = 4
local fmt, ceil, concat = string.format, math.ceil, table.concat

local prng = property.prng

---------------------------------------------------------------- the model

local Model = {}
Model.__index = Model

local function new_model(cap, aging)
  return setmetatable({ cap = cap, aging = aging, held = 0, queue = {}, seq = 0,
    acquired = 0, timeouts = 0, cancelled = 0 }, Model)
end

function Model:grant(rec, w)
  rec.holds = rec.holds + w
  self.held = self.held + w
  self.acquired = self.acquired + 1
end

function Model:remove(e)
  for i, x in ipairs(self.queue) do
    if x == e then table.remove(self.queue, i) return end
  end
  error("not queued")
end

-- The best waiter: lowest key, then earliest arrival.
function Model:best()
  local best
  for _, e in ipairs(self.queue) do
    if not best or e.key < best.key or (e.key == best.key and e.seq < best.seq) then best = e end
  end
  return best
end

-- Free permits go to the best waiters.
function Model:dispatch()
  while self.queue[1] and self.held < self.cap do
    local e = self:best()
    self:remove(e)
    e.rec.entry = nil
    e.rec.pending = true
    self:grant(e.rec, 1)
  end
end

function Model:enqueue(rec, p, timeout, now)
  self.seq = self.seq + 1
  local key = self.aging and p * self.aging + now or p
  local e = { rec = rec, key = key, seq = self.seq, deadline = timeout and now + timeout }
  rec.entry = e
  self.queue[#self.queue + 1] = e
end

-- Applies the timeouts due by now, in the order their timers fire.
function Model:expire(now)
  while true do
    local due
    for _, e in ipairs(self.queue) do
      if e.deadline and e.deadline <= now and
         (not due or e.deadline < due.deadline or (e.deadline == due.deadline and e.seq < due.seq)) then
        due = e
      end
    end
    if not due then return end
    self:remove(due)
    due.rec.entry = nil
    due.rec.timed_out = true
    self.timeouts = self.timeouts + 1
    self:dispatch()
  end
end

function Model:cancel_waiter(rec)
  self:remove(rec.entry)
  rec.entry = nil
  self.cancelled = self.cancelled + 1
  self:dispatch()
end

function Model:release(rec, w)
  rec.holds = rec.holds - w
  self.held = self.held - w
  self:dispatch()
end

-- A grant handed to a task cancelled before it ran goes on.
function Model:abandon(rec, w)
  rec.pending = false
  self.acquired = self.acquired - 1
  self.cancelled = self.cancelled + 1
  self:release(rec, w)
end

function Model:resize(cap)
  self.cap = cap
  self:dispatch()
end

---------------------------------------------------------------- a schedule

local function run_schedule(seed)
  local rand = prng(seed)
  local problems = {}
  local function bad(...)
    if #problems < 5 then problems[#problems + 1] = fmt(...) end
  end
  local aging = ({ false, false, 1, 2.5 })[rand(4)] or nil
  local ps = sluice.priority_semaphore(rand(MAX_CAP), { aging = aging })
  local m = new_model(ps.permits, aging)
  local recs, rec_of = {}, {}

  -- The semaphore agrees with the model (due timeouts applied first).
  local function check(where)
    m:expire(sluice.now())
    if ps.held ~= m.held or ps.waiting ~= #m.queue or ps.permits ~= m.cap then
      bad("%s: held %d waiting %d permits %d, model %d %d %d", where, ps.held, ps.waiting, ps.permits,
        m.held, #m.queue, m.cap)
    end
    local sum, seen = 0, {}
    for _, h in ipairs(ps:holders()) do
      local rec = rec_of[h.task]
      sum = sum + h.count
      if rec then seen[rec] = true end
      if not rec or rec.holds ~= h.count then
        bad("%s: task %s holds %d, model %s", where, rec and rec.id or "?", h.count, rec and rec.holds or "-")
      end
    end
    for _, rec in ipairs(recs) do
      if rec.holds > 0 and not seen[rec] then bad("%s: task %d holds %d in the model only", where, rec.id, rec.holds) end
    end
    if sum ~= ps.held then bad("%s: holders hold %d, held is %d", where, sum, ps.held) end
  end

  local function realign()
    local now = sluice.now()
    if now ~= ceil(now) then sluice.sleep(ceil(now) - now) end
  end

  -- The outcome of an acquire the model expected to queue (or not).
  local function settle_acquire(rec, ok, a, b, expect)
    m:expire(sluice.now())
    if ok and a == true then
      if expect == "queued" then
        if not rec.pending then bad("task %d granted, the model did not grant it", rec.id) end
        rec.pending = false
      elseif expect ~= "granted" then
        bad("task %d granted at once, expected %s", rec.id, expect)
      end
      return true
    elseif ok then
      if b ~= "timeout" then bad("task %d: acquire gave %s, %s", rec.id, tostring(a), tostring(b)) end
      if expect == "queued" and not rec.timed_out then bad("task %d timed out, not in the model", rec.id) end
      if expect ~= "queued" and expect ~= "timeout" then bad("task %d timed out, expected %s", rec.id, expect) end
      rec.timed_out = false
      return false
    end
    -- a = the error
    if sluice.is_error(a, "cancelled") then
      if rec.pending then m:abandon(rec, 1) end
      if rec.entry then bad("task %d cancelled but still queued in the model", rec.id) end
      error(a, 0)
    end
    bad("task %d: acquire raised %s", rec.id, tostring(a))
    return false
  end

  -- What the model expects of acquire(p, timeout) by rec now.
  local function expect_acquire(rec, p, timeout)
    if #m.queue == 0 and m.held < m.cap then
      m:grant(rec, 1)
      return "granted"
    end
    if timeout == 0 then return "timeout" end
    if rec.task.cancelled then return "cancelled" end
    m:enqueue(rec, p, timeout, sluice.now())
    return "queued"
  end

  local function hold_and_release(rec, max)
    sluice.sleep(rand(max) - 1)
    m:release(rec, 1)
    ps:release()
    check("after release")
  end

  local function op_acquire(rec)
    local p = rand(PRIORITIES) - 1
    local timeout = ({ false, false, 0, 0.5, 1.5, 3.5 })[rand(6)] or nil
    m:expire(sluice.now())
    local expect = expect_acquire(rec, p, timeout)
    local ok, a, b = pcall(ps.acquire, ps, p, timeout)
    if expect == "cancelled" then
      if ok or not sluice.is_error(a, expect) then bad("task %d: acquire gave %s, expected %s",
        rec.id, tostring(a), expect) end
      if not ok then error(a, 0) end
      return
    end
    local got = settle_acquire(rec, ok, a, b, expect)
    check("after acquire")
    realign()
    if got then hold_and_release(rec, 3) end
  end

  local function op_with(rec)
    local p = rand(PRIORITIES) - 1
    m:expire(sluice.now())
    local expect = expect_acquire(rec, p, nil)
    if expect == "cancelled" then
      local ok, err = pcall(ps.with, ps, p, function() end)
      if ok or not sluice.is_error(err, "cancelled") then bad("task %d: with on cancel gave %s", rec.id, tostring(err)) end
      error(err, 0)
    end
    local inside = false
    local ok, err = pcall(ps.with, ps, p, function()
      settle_acquire(rec, true, true, nil, expect)
      inside = true
      check("in with")
      realign()
      sluice.sleep(rand(3) - 1)
    end)
    if inside then m:release(rec, 1) end
    if not ok then
      if not inside then settle_acquire(rec, false, err, nil, expect) end
      error(err, 0)
    end
    check("after with")
  end

  local function op_try(rec)
    m:expire(sluice.now())
    local expect = #m.queue == 0 and m.held < m.cap
    if expect then m:grant(rec, 1) end
    local got = ps:try_acquire()
    if got ~= expect then bad("task %d: try_acquire gave %s", rec.id, tostring(got)) end
    check("after try_acquire")
    if got then hold_and_release(rec, 2) end
  end

  local function op_cancel(rec)
    local victim = recs[rand(#recs)]
    if victim == rec then return end
    m:expire(sluice.now())
    if victim.entry then m:cancel_waiter(victim) end
    victim.task:cancel()
    check("after cancel")
  end

  local function op_resize()
    local cap = rand(MAX_CAP)
    m:expire(sluice.now())
    m:resize(cap)
    ps.permits = cap
    check("after resize")
  end

  local function body(rec)
    local ok, err = pcall(function()
      for _ = 1, rand(6) do
        local op = rand(20)
        if op <= 7 then op_acquire(rec)
        elseif op <= 10 then op_with(rec)
        elseif op <= 12 then op_try(rec)
        elseif op <= 14 then op_cancel(rec)
        elseif op <= 16 then op_resize()
        else sluice.sleep(rand(2)) end
      end
    end)
    -- cancelled while holding (in a hold sleep): give it back
    if rec.holds > 0 then
      m:release(rec, 1)
      ps:release()
      check("after cleanup")
    end
    if not ok then error(err, 0) end
  end

  for i = 1, 1 + rand(5) do
    local rec = { id = i, holds = 0 }
    recs[i] = rec
    rec.task = sluice.spawn(body, rec)
    rec_of[rec.task] = rec
  end
  for _, rec in ipairs(recs) do
    local ok, err = pcall(rec.task.await, rec.task)
    if not ok and not sluice.is_error(err, "cancelled") then bad("task %d failed: %s", rec.id, tostring(err)) end
  end
  check("at the end")
  local st = ps:stats()
  if ps.held ~= 0 or ps.waiting ~= 0 or #ps:holders() ~= 0 then
    bad("left held %d, waiting %d", ps.held, ps.waiting)
  end
  if st.acquired ~= m.acquired or st.timeouts ~= m.timeouts or st.cancelled ~= m.cancelled then
    bad("stats acquired %d timeouts %d cancelled %d, model %d %d %d", st.acquired, st.timeouts,
      st.cancelled, m.acquired, m.timeouts, m.cancelled)
  end
  return problems
end

describe("priority_semaphore under random schedules", function()
  property.batches(it, "matches the priority model for seeds %d..%d", run_schedule)
end)
