-- A randomized property test of sluice.semaphore and sluice.mutex: many
-- seeded random schedules of acquire (with and without timeouts),
-- try_acquire, release, cancellation (while idle, queued, or right after
-- a hand-off), time passing and resizing, run by "actor" tasks on the
-- virtual clock and replayed on a reference model of the semaphore.
--
-- After every step: the events (who got a permit, timed out, was
-- cancelled, hit a deadlock, in which order) are exactly the model's (so
-- FIFO hand-off and no barging hold); the holders, counts and stats are
-- the model's; the holders never hold more than the limit (or, after a
-- shrink, never more than they held then); no permit is lost or
-- duplicated.  At the end every actor is cancelled and nothing may be
-- left held or parked.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000 per primitive)
-- and SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"
local bit = require "bit"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local SCHEDULES, FIRST_SEED, BATCHES = property.SCHEDULES, property.FIRST_SEED, property.BATCHES
local STEPS = 24
local MAX_ACTORS = 5
local TIMEOUTS = { false, false, false, 0, 0.5, 1, 2 }   -- false: none
local ADVANCES = { 0.25, 0.5, 1, 2 }
local fmt, frexp, min, max = string.format, math.frexp, math.min, math.max

local prng = property.prng

---------------------------------------------------------------- the model

-- The reference semaphore: a FIFO queue, counts per holder, and the
-- runs the scheduler will make (in order) with the events they log.
local function new_model(limit, now)
  return { limit = limit, held = 0, queue = {}, holds = {}, order = {}, runs = {}, log = {},
           now = now, seq = 0, acquired = 0, waited = 0, timeouts = 0, cancelled = 0,
           wait_total = 0, wait_max = 0, hist = {} }
end

local function m_log(M, a, ev) M.log[#M.log + 1] = a.name .. " " .. ev end

local function m_record_wait(M, w)
  M.wait_total = M.wait_total + w
  if w > M.wait_max then M.wait_max = w end
  local b = 1
  if w * 1e6 >= 1 then
    local _, e = frexp(w * 1e6)
    b = min(e, 31) + 1
  end
  M.hist[b] = (M.hist[b] or 0) + 1
end

local function m_hold(M, a)
  if (M.holds[a] or 0) == 0 then M.order[#M.order + 1] = a end
  M.holds[a] = (M.holds[a] or 0) + 1
  M.held = M.held + 1
end

local function m_unhold(M, a)
  M.holds[a] = M.holds[a] - 1
  M.held = M.held - 1
  if M.holds[a] == 0 then
    for i, h in ipairs(M.order) do
      if h == a then table.remove(M.order, i) break end
    end
  end
end

local m_retire

local function m_granted_run(M, a)
  if a.cancel_pending then        -- cancelled after the hand-off
    M.acquired, M.waited, M.cancelled = M.acquired - 1, M.waited - 1, M.cancelled + 1
    m_unhold(M, a)
    M.dispatch(M)
    m_log(M, a, "cancelled")
    m_retire(M, a)
  else
    a.phase = "idle"
    m_log(M, a, "acquired")
  end
end

local function m_dispatch(M)
  while M.held < M.limit and #M.queue > 0 do
    local e = table.remove(M.queue, 1)
    m_hold(M, e.a)
    M.acquired, M.waited = M.acquired + 1, M.waited + 1
    m_record_wait(M, M.now - e.since)
    e.a.phase = "granted"
    M.runs[#M.runs + 1] = function() m_granted_run(M, e.a) end
  end
end

function m_retire(M, a)
  local n = M.holds[a] or 0
  for _ = 1, n do
    m_unhold(M, a)
    m_dispatch(M)
  end
  a.phase = "dead"
  m_log(M, a, "retired " .. n)
end

local function m_drain(M, limit)
  local done = 0
  while #M.runs > 0 and done ~= limit do
    table.remove(M.runs, 1)()
    done = done + 1
  end
end

-- Would a wait by a never end?  Every holder is a itself or waits on
-- this semaphore without a timeout.
local function m_deadlock(M, a)
  if #M.order == 0 then return false end
  for _, h in ipairs(M.order) do
    if h ~= a and not (h.phase == "queued" and h.entry.deadline == nil) then return false end
  end
  return true
end

local function m_acquire(M, a, timeout)
  if M.held < M.limit and #M.queue == 0 then
    m_hold(M, a)
    M.acquired = M.acquired + 1
    m_log(M, a, "acquired")
  elseif timeout == 0 then
    m_log(M, a, "timeout " .. M.rel(M.now))
  elseif m_deadlock(M, a) then
    m_log(M, a, "deadlock")
  else
    M.seq = M.seq + 1
    a.entry = { a = a, since = M.now, deadline = timeout and M.now + timeout or nil, seq = M.seq }
    a.phase = "queued"
    M.queue[#M.queue + 1] = a.entry
  end
end

local function m_command(M, a, cmd, timeout)
  M.runs[#M.runs + 1] = function()
    if cmd == "acquire" then
      m_acquire(M, a, timeout)
    elseif cmd == "try" then
      if M.held < M.limit and #M.queue == 0 then
        m_hold(M, a)
        M.acquired = M.acquired + 1
        m_log(M, a, "try ok")
      else
        m_log(M, a, "try no")
      end
    elseif (M.holds[a] or 0) > 0 then   -- release
      m_unhold(M, a)
      m_dispatch(M)
      m_log(M, a, "released")
    else
      m_log(M, a, "release refused")
    end
  end
end

local function m_unqueue(M, a)
  for i, e in ipairs(M.queue) do
    if e.a == a then table.remove(M.queue, i) return end
  end
end

local function m_cancel(M, a)
  if a.phase == "granted" then
    a.cancel_pending = true
    return
  end
  if a.phase == "queued" then
    m_unqueue(M, a)
    M.cancelled = M.cancelled + 1
    m_record_wait(M, M.now - a.entry.since)
  end
  if a.phase == "idle" or a.phase == "queued" then
    a.phase = "cancelling"
    M.runs[#M.runs + 1] = function() m_log(M, a, "cancelled") m_retire(M, a) end
  end
end

local function m_advance(M, d)
  local target, due = M.now + d, {}
  for _, e in ipairs(M.queue) do
    if e.deadline and e.deadline <= target then due[#due + 1] = e end
  end
  table.sort(due, function(x, y) return x.deadline < y.deadline or (x.deadline == y.deadline and x.seq < y.seq) end)
  for _, e in ipairs(due) do
    m_unqueue(M, e.a)
    M.timeouts = M.timeouts + 1
    m_record_wait(M, e.deadline - e.since)
    e.a.phase = "idle"
    m_log(M, e.a, "timeout " .. M.rel(e.deadline))
  end
  M.now = target
end

---------------------------------------------------------------- one schedule

local function run_schedule(seed, kind)
  local rand = prng(seed)
  local problems = {}
  local function bad(...) problems[#problems + 1] = fmt(...) end
  local limit = kind == "mutex" and 1 or rand(3)
  local s = kind == "mutex" and sluice.mutex() or sluice.semaphore(limit)
  local base_waiting = sluice.stats().waiting
  local T0 = sluice.now()
  local M = new_model(limit, T0)
  M.dispatch = m_dispatch
  M.rel = function(t) return fmt("%.17g", t - T0) end
  local real = {}
  local actors, nactors = {}, 0

  local function rlog(a, ev) real[#real + 1] = a.name .. " " .. ev end

  local function actor_body(a)
    while true do
      local ok, cmd, timeout = pcall(sluice.await, function(cb) a.wake = cb end)
      a.wake = nil
      if not ok then rlog(a, "cancelled") break end
      if cmd == "acquire" then
        local ok2, r1, r2 = pcall(s.acquire, s, timeout or nil)
        if ok2 then
          rlog(a, r1 and "acquired" or (r2 .. " " .. M.rel(sluice.now())))
        elseif r1.kind == "deadlock" then
          rlog(a, "deadlock")
        else
          rlog(a, r1.kind)
          if r1.kind == "cancelled" then break end
        end
      elseif cmd == "try" then
        rlog(a, s:try_acquire() and "try ok" or "try no")
      else
        rlog(a, pcall(s.release, s) and "released" or "release refused")
      end
    end
    local n = 0
    while pcall(s.release, s) do n = n + 1 end
    rlog(a, "retired " .. n)
  end

  local function spawn_actor()
    nactors = nactors + 1
    local a = { name = "a" .. nactors, phase = "idle" }
    a.task = sluice.spawn(actor_body, a)
    actors[#actors + 1] = a
    return a
  end

  local function settle()
    for _ = 1, 1000 do
      local busy = false
      for _, a in ipairs(actors) do
        local st = a.task.status
        if st == "ready" or st == "running" then busy = true break end
      end
      if not busy then return end
      sluice.yield()
    end
    bad("seed %d: the actors never settled", seed)
  end

  local function pick(phase)
    local list = {}
    for _, a in ipairs(actors) do
      if a.phase == phase or (phase == "live" and (a.phase == "idle" or a.phase == "queued")) then
        list[#list + 1] = a
      end
    end
    return #list > 0 and list[rand(#list)] or nil
  end

  local checked, prev_held = 0, 0
  local function check(step)
    for i = checked + 1, max(#real, #M.log) do
      if real[i] ~= M.log[i] then
        bad("seed %d step %d: event %d is %s, the model says %s", seed, step, i, tostring(real[i]), tostring(M.log[i]))
        return false
      end
    end
    checked = #real
    local list, sum = s:holders(), 0
    if #list ~= #M.order then bad("seed %d step %d: %d holders, the model has %d", seed, step, #list, #M.order) end
    for i, h in ipairs(list) do
      local a = M.order[i]
      if not a or h.task ~= a.task or h.count ~= M.holds[a] then
        bad("seed %d step %d: holder %d is task #%d x%d, the model has %s x%s", seed, step, i, h.task.id, h.count,
          a and a.name or "none", a and tostring(M.holds[a]) or "-")
      end
      sum = sum + h.count
    end
    local st = s:stats()
    if st.held ~= M.held or sum ~= M.held then
      bad("seed %d step %d: %d held (holders say %d), the model has %d", seed, step, st.held, sum, M.held)
    end
    -- grants only under the limit: more than the limit only when it shrank
    -- below what was held, and then never more than before
    local bound = max(s.permits, prev_held)
    if st.held > bound then bad("seed %d step %d: %d held over the limit %d", seed, step, st.held, bound) end
    prev_held = st.held
    if s.available ~= max(0, M.limit - M.held) or s.waiting ~= #M.queue or s.permits ~= M.limit then
      bad("seed %d step %d: available %d waiting %d permits %d; the model: held %d waiting %d limit %d",
        seed, step, s.available, s.waiting, s.permits, M.held, #M.queue, M.limit)
    end
    for _, f in ipairs { "acquired", "waited", "timeouts", "cancelled", "wait_total", "wait_max" } do
      if st[f] ~= M[f] then bad("seed %d step %d: stats.%s is %.17g, the model has %.17g", seed, step, f, st[f], M[f]) end
    end
    for i = 1, 32 do
      if st.histogram[i] ~= (M.hist[i] or 0) then
        bad("seed %d step %d: histogram[%d] is %d, the model has %d", seed, step, i, st.histogram[i], M.hist[i] or 0)
      end
    end
    return #problems == 0
  end

  for _ = 1, 1 + rand(MAX_ACTORS - 1) do spawn_actor() end
  settle()
  for step = 1, STEPS do
    local op, a = rand(100), nil
    if op <= 35 then
      a = pick("idle")
      if a then
        local timeout = TIMEOUTS[rand(#TIMEOUTS)]
        m_command(M, a, "acquire", timeout)
        a.wake("acquire", timeout)
      end
    elseif op <= 45 then
      a = pick("idle")
      if a then m_command(M, a, "try") a.wake("try") end
    elseif op <= 70 then
      -- release, mostly by a holder, sometimes by a task holding nothing;
      -- after some, cancel the task the permit was just handed to
      local holders = {}
      for _, h in ipairs(M.order) do if h.phase == "idle" then holders[#holders + 1] = h end end
      a = (#holders > 0 and rand(8) > 1) and holders[rand(#holders)] or pick("idle")
      if a then
        m_command(M, a, "release")
        a.wake("release")
        if op > 62 then
          sluice.yield()             -- a has run: the grantee has not
          m_drain(M, 1)
          local g
          for _, x in ipairs(actors) do
            if x.phase == "granted" then g = g or x end
          end
          if g then m_cancel(M, g) g.task:cancel() end
        end
      end
    elseif op <= 78 then
      a = pick("live")
      if a then m_cancel(M, a) a.task:cancel() end
    elseif op <= 90 then
      local d = ADVANCES[rand(#ADVANCES)]
      m_advance(M, d)
      sluice.sleep(d)
    elseif op <= 96 then
      if kind ~= "mutex" then
        local n = rand(4)
        M.limit = n
        m_dispatch(M)
        s.permits = n
      end
    elseif #actors < 2 * MAX_ACTORS then
      spawn_actor()
    end
    m_drain(M)
    settle()
    if M.now ~= sluice.now() then bad("seed %d step %d: the clock is at %s, the model's at %s", seed, step,
      M.rel(sluice.now()), M.rel(M.now)) end
    if not check(step) then break end
  end
  -- the end: every actor cancelled, nothing held, nothing parked
  for _, a in ipairs(actors) do
    if a.phase ~= "dead" then m_cancel(M, a) a.task:cancel() end
  end
  m_drain(M)
  settle()
  if #problems == 0 then check(STEPS + 1) end
  for _, a in ipairs(actors) do
    local st = a.task.status
    if st ~= "done" then bad("seed %d: actor %s ended %s", seed, a.name, st) end
    a.task:result()
  end
  if #s:holders() ~= 0 or s.available ~= s.permits or s.waiting ~= 0 or sluice.stats().waiting ~= base_waiting then
    bad("seed %d: left behind: %d holders, %d available of %d, %d waiting, %d tasks parked", seed, #s:holders(),
      s.available, s.permits, s.waiting, sluice.stats().waiting - base_waiting)
  end
  return problems
end

for _, kind in ipairs { "semaphore", "mutex" } do
  describe(kind .. " under random schedules", function()
    local per = math.ceil(SCHEDULES / BATCHES)
    for b = 1, BATCHES do
      local first = FIRST_SEED + (b - 1) * per
      it(fmt("keeps its invariants (seeds %d-%d)", first, first + per - 1), function()
        local all = {}
        for seed = first, first + per - 1 do
          local p = run_schedule(seed, kind)
          for _, msg in ipairs(p) do all[#all + 1] = msg end
          if #all >= 10 then break end
        end
        assert(#all == 0, table.concat(all, "\n"))
      end)
    end
  end)
end
