-- A randomized property test of sluice.weighted_semaphore: many small
-- seeded random schedules of acquire / try_acquire / with / release /
-- cancel / timeout / resize on the virtual clock, run against a model of
-- Go's x/sync/semaphore semantics (strict FIFO, a head that does not fit
-- blocks the rest).  After every step the semaphore's own view (held,
-- waiting, and which task holds how much, from holders()) must equal the
-- model's, so no weight is lost or duplicated, nothing is granted above
-- the capacity, and grants follow the FIFO order exactly.  At the end
-- nothing may be left held or parked, and the stats must match.
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
local MAX_CAP = 5
local fmt, ceil, concat = string.format, math.ceil, table.concat

local prng = property.prng

---------------------------------------------------------------- the model

local Model = {}
Model.__index = Model

local function new_model(cap)
  return setmetatable({ cap = cap, held = 0, queue = {}, seq = 0,
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

-- As many head waiters as fit, in order; the first that does not fit
-- stops the rest.
function Model:dispatch()
  local q = self.queue
  while q[1] and self.cap - self.held >= q[1].w do
    local e = table.remove(q, 1)
    e.rec.entry = nil
    e.rec.pending = true
    self:grant(e.rec, e.w)
  end
end

function Model:enqueue(rec, w, timeout, now)
  self.seq = self.seq + 1
  local e = { rec = rec, w = w, seq = self.seq, deadline = timeout and now + timeout }
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
  local i = 1
  while self.queue[i] do
    local e = self.queue[i]
    if e.w > cap then
      table.remove(self.queue, i)
      e.rec.entry = nil
      e.rec.evicted = true
    else
      i = i + 1
    end
  end
  self:dispatch()
end

---------------------------------------------------------------- a schedule

local function run_schedule(seed)
  local rand = prng(seed)
  local problems = {}
  local function bad(...)
    if #problems < 5 then problems[#problems + 1] = fmt(...) end
  end
  local ws = sluice.weighted_semaphore(rand(MAX_CAP))
  local m = new_model(ws.capacity)
  local recs, rec_of = {}, {}

  -- The semaphore agrees with the model (due timeouts applied first).
  local function check(where)
    m:expire(sluice.now())
    if ws.held ~= m.held or ws.waiting ~= #m.queue or ws.capacity ~= m.cap then
      bad("%s: held %d waiting %d capacity %d, model %d %d %d", where, ws.held, ws.waiting, ws.capacity,
        m.held, #m.queue, m.cap)
    end
    local sum, seen = 0, {}
    for _, h in ipairs(ws:holders()) do
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
    if sum ~= ws.held then bad("%s: holders hold %d, held is %d", where, sum, ws.held) end
  end

  local function realign()
    local now = sluice.now()
    if now ~= ceil(now) then sluice.sleep(ceil(now) - now) end
  end

  -- The outcome of an acquire the model expected to queue (or not).
  local function settle_acquire(rec, w, ok, a, b, expect)
    m:expire(sluice.now())
    if ok and a == true then
      if expect == "queued" then
        if not rec.pending then bad("task %d granted %d, the model did not grant it", rec.id, w) end
        rec.pending = false
      elseif expect ~= "granted" then
        bad("task %d granted %d at once, expected %s", rec.id, w, expect)
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
      if rec.pending then m:abandon(rec, w) end
      if rec.entry then bad("task %d cancelled but still queued in the model", rec.id) end
      error(a, 0)
    end
    if sluice.is_error(a, "invalid") and a.message:find("shrank") then
      if not rec.evicted then bad("task %d evicted, not in the model", rec.id) end
      rec.evicted = false
      return false
    end
    bad("task %d: acquire raised %s", rec.id, tostring(a))
    return false
  end

  -- What the model expects of acquire(w, timeout) by rec now.
  local function expect_acquire(rec, w, timeout)
    if w > m.cap then return "invalid" end
    if #m.queue == 0 and m.cap - m.held >= w then
      m:grant(rec, w)
      return "granted"
    end
    if timeout == 0 then return "timeout" end
    if rec.task.cancelled then return "cancelled" end
    m:enqueue(rec, w, timeout, sluice.now())
    return "queued"
  end

  local function op_acquire(rec)
    local w = rand(MAX_CAP)
    local timeout = ({ false, false, 0, 0.5, 1.5, 3.5 })[rand(6)] or nil
    m:expire(sluice.now())
    local expect = expect_acquire(rec, w, timeout)
    local ok, a, b = pcall(ws.acquire, ws, w, timeout)
    if expect == "invalid" or expect == "cancelled" then
      if ok or not sluice.is_error(a, expect) then bad("task %d: acquire(%d) gave %s, expected %s",
        rec.id, w, tostring(a), expect) end
      if not ok and expect == "cancelled" then error(a, 0) end
      return
    end
    local got = settle_acquire(rec, w, ok, a, b, expect)
    check("after acquire")
    realign()
    if got then
      sluice.sleep(rand(3) - 1)
      m:release(rec, w)
      ws:release(w)
      check("after release")
    end
  end

  local function op_with(rec)
    local w = rand(ws.capacity)
    m:expire(sluice.now())
    local expect = expect_acquire(rec, w, nil)
    if expect == "cancelled" then
      local ok, err = pcall(ws.with, ws, w, function() end)
      if ok or not sluice.is_error(err, "cancelled") then bad("task %d: with on cancel gave %s", rec.id, tostring(err)) end
      error(err, 0)
    end
    local inside = false
    local ok, err = pcall(ws.with, ws, w, function()
      settle_acquire(rec, w, true, true, nil, expect)
      inside = true
      check("in with")
      realign()
      sluice.sleep(rand(3) - 1)
    end)
    if inside then m:release(rec, w) end
    if not ok then
      if inside then error(err, 0) end
      settle_acquire(rec, w, false, err, nil, expect)   -- rethrows a cancellation
      realign()
    end
    check("after with")
  end

  local function op_try(rec)
    local w = rand(ws.capacity)
    m:expire(sluice.now())
    local expect = #m.queue == 0 and m.cap - m.held >= w
    if expect then m:grant(rec, w) end
    local got = ws:try_acquire(w)
    if got ~= expect then bad("task %d: try_acquire(%d) gave %s", rec.id, w, tostring(got)) end
    check("after try_acquire")
    if got then
      sluice.sleep(rand(2) - 1)
      m:release(rec, w)
      ws:release(w)
      check("after release")
    end
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
    ws.capacity = cap
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
      local w = rec.holds
      m:release(rec, w)
      ws:release(w)
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
  local st = ws:stats()
  if ws.held ~= 0 or ws.waiting ~= 0 or #ws:holders() ~= 0 then
    bad("left held %d, waiting %d", ws.held, ws.waiting)
  end
  if st.acquired ~= m.acquired or st.timeouts ~= m.timeouts or st.cancelled ~= m.cancelled then
    bad("stats acquired %d timeouts %d cancelled %d, model %d %d %d", st.acquired, st.timeouts,
      st.cancelled, m.acquired, m.timeouts, m.cancelled)
  end
  return problems
end

describe("weighted_semaphore under random schedules", function()
  property.batches(it, "matches the FIFO model for seeds %d..%d", run_schedule)
end)
