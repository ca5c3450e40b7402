-- A randomized property test of sluice.token_bucket: many small seeded
-- random schedules of take (with and without timeouts) / try_take /
-- cancel / rate changes / time passing on the virtual clock, run against
-- a model: a discrete-event simulation of the bucket (tokens refilled
-- continuously up to the capacity, one FIFO queue served strictly in
-- order, each waiter granted the instant its tokens are there).  After
-- every step the bucket's tokens and queue length must equal the
-- model's, and tokens stay within [0, capacity]; every take must end as
-- the model says (granted, timed out or cancelled) at exactly the
-- model's time, grants must come in the model's order, and at the end
-- nothing may be left parked and the stats must match.
--
-- Timing keeps the model exact: rates are powers of two, amounts and
-- capacities multiples of 1/2, steps happen on a 1/4 s grid and
-- timeouts fall on odd multiples of 1/8 s, so every number is a short
-- binary fraction and no timeout coincides with a step.  What may
-- coincide follows the bucket's rule: tokens due at an instant are
-- granted before anything else happens at it (a timeout, a step).  The
-- one thing that depends on the order of tasks at an instant is a
-- cancellation hitting a take granted at that very instant, before it
-- ran: the tokens then go back (as if never taken), and the model
-- follows whichever happened.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local fmt, ceil, min, concat = string.format, math.ceil, math.min, table.concat

local prng = property.prng

local CAPS = { 1, 2, 2.5, 4 }
local RATES = { 0.5, 1, 2, 4 }
local TIMEOUTS = { false, false, false, 0, 0.125, 0.375, 0.625, 1.125, 2.375 }
local STEPS = { 0, 0.25, 0.25, 0.5, 1, 1.5 }

---------------------------------------------------------------- the model

local Model = {}
Model.__index = Model

local function new_model(cap, rate, initial, now)
  return setmetatable({ cap = cap, rate = rate, tokens = initial, last = now, clock = now,
    queue = {}, seq = 0, order = {}, acquired = 0, waited = 0, timeouts = 0, cancelled = 0 }, Model)
end

function Model:refill(t)
  if t > self.last then
    self.tokens = min(self.cap, self.tokens + (t - self.last) * self.rate)
    self.last = t
  end
end

-- When n tokens are (were) there.
function Model:due(n)
  if self.tokens >= n then return self.last end
  return self.last + (n - self.tokens) / self.rate
end

function Model:grant(rec, t, waited)
  self:refill(t)
  self.tokens = self.tokens - rec.n
  self.acquired = self.acquired + 1
  if waited then self.waited = self.waited + 1 end
  rec.exp, rec.exp_at = "granted", t
  self.order[#self.order + 1] = rec
end

function Model:remove(rec)
  for i, r in ipairs(self.queue) do
    if r == rec then table.remove(self.queue, i) return end
  end
  error("not queued")
end

-- The due timeout that fires first (deadline, then arming order).
function Model:next_timeout()
  local best
  for _, r in ipairs(self.queue) do
    if r.deadline and (not best or r.deadline < best.deadline or
                       (r.deadline == best.deadline and r.seq < best.seq)) then
      best = r
    end
  end
  return best
end

-- Runs the grants and timeouts due up to time `to`, in time order;
-- at one instant, the grants first.
function Model:advance(to)
  while true do
    local head, tr = self.queue[1], nil
    if head then
      self:refill(self.clock)
      tr = self:due(head.n)
      if tr < self.clock then tr = self.clock end
    end
    local te = self:next_timeout()
    local td = te and te.deadline
    if tr and tr <= to and (not td or tr <= td) then
      table.remove(self.queue, 1)
      self.clock = tr
      self:grant(head, tr, true)
    elseif td and td <= to then
      self:remove(te)
      self.clock = td
      self.timeouts = self.timeouts + 1
      te.exp, te.exp_at = "timeout", td
    else
      break
    end
  end
  self.clock = to
  self:refill(to)
end

-- rec calls take(rec.n, rec.timeout) now.
function Model:take(rec, now)
  self:advance(now)
  if #self.queue == 0 and self:due(rec.n) <= now then
    self:grant(rec, now, false)
  elseif rec.timeout == 0 then
    rec.exp, rec.exp_at = "timeout", now
  else
    self.seq = self.seq + 1
    rec.seq = self.seq
    rec.deadline = rec.timeout and now + rec.timeout
    rec.exp = "queued"
    self.queue[#self.queue + 1] = rec
  end
end

function Model:try_take(n, now)
  self:advance(now)
  if #self.queue == 0 and self:due(n) <= now then
    self:refill(now)
    self.tokens = self.tokens - n
    self.acquired = self.acquired + 1
    return true
  end
  return false
end

function Model:cancel(rec, now)
  self:advance(now)
  if rec.exp == "queued" then
    self:remove(rec)
    self.cancelled = self.cancelled + 1
    rec.exp, rec.exp_at = "cancelled", now
    self:advance(now)
  end
end

-- rec, granted at now, was cancelled before it ran: its tokens go back.
function Model:abandon(rec, now)
  self:refill(now)
  self.tokens = min(self.cap, self.tokens + rec.n)
  self.acquired = self.acquired - 1
  self.waited = self.waited - 1
  self.cancelled = self.cancelled + 1
  rec.exp, rec.exp_at = "cancelled", now
  for i, r in ipairs(self.order) do
    if r == rec then table.remove(self.order, i) break end
  end
  self:advance(now)
end

function Model:set_rate(rate, now)
  self:advance(now)
  self.rate = rate
end

---------------------------------------------------------------- a schedule

local function run_schedule(seed)
  local rand = prng(seed)
  local problems = {}
  local function bad(...)
    if #problems < 5 then problems[#problems + 1] = fmt(...) end
  end

  local now = sluice.now()
  if now ~= ceil(now) then sluice.sleep(ceil(now) - now) end
  local t0 = sluice.now()
  local cap, rate = CAPS[rand(#CAPS)], RATES[rand(#RATES)]
  local initial = ({ 0, cap / 2, cap })[rand(3)]
  local b = sluice.token_bucket{ capacity = cap, rate = rate, initial = initial }
  local m = new_model(cap, rate, initial, t0)
  local recs, granted = {}, {}

  local function check(where)
    local t = sluice.now()
    m:advance(t)
    local tokens, waiting = b.tokens, b.waiting
    if tokens ~= m.tokens or waiting ~= #m.queue then
      bad("%s at %s: tokens %s waiting %d, model %s %d", where, t - t0, tokens, waiting, m.tokens, #m.queue)
    end
    if not (tokens >= 0 and tokens <= cap) then bad("%s: tokens %s outside [0, %s]", where, tokens, cap) end
  end

  local function taker(rec)
    m:take(rec, sluice.now())
    local ok, a, why = pcall(b.take, b, rec.n, rec.timeout or nil)
    rec.at = sluice.now()
    if ok and a == true then
      rec.got = "granted"
      granted[#granted + 1] = rec
    elseif ok and a == nil and why == "timeout" then
      rec.got = "timeout"
    elseif not ok and sluice.is_error(a, "cancelled") then
      rec.got = "cancelled"
    else
      rec.got = "odd: " .. tostring(a) .. " " .. tostring(why)
    end
  end

  local function op_take()
    local rec = { id = #recs + 1, n = rand(2 * cap) / 2, timeout = TIMEOUTS[rand(#TIMEOUTS)] }
    recs[#recs + 1] = rec
    rec.task = sluice.spawn(taker, rec)
    sluice.yield()                                -- it calls take now
    check("after take")
  end

  local function op_try()
    local n = rand(2 * cap) / 2
    local expect = m:try_take(n, sluice.now())
    local got = b:try_take(n)
    if got ~= expect then bad("try_take(%s) at %s gave %s", n, sluice.now() - t0, tostring(got)) end
    check("after try_take")
  end

  local function op_cancel()
    if #recs == 0 then return end
    local live = {}                               -- mostly ones still waiting
    for _, r in ipairs(recs) do if r.got == nil then live[#live + 1] = r end end
    local rec = (#live > 0 and rand(4) > 1) and live[rand(#live)] or recs[rand(#recs)]
    local t = sluice.now()
    m:cancel(rec, t)
    local granted_now = rec.exp == "granted" and rec.exp_at == t and rec.got == nil
    rec.task:cancel()
    sluice.yield()                                -- a take granted now, not yet run, gives back
    if granted_now and rec.got == "cancelled" then m:abandon(rec, t) end
    check("after cancel")
  end

  local function op_rate()
    local r = RATES[rand(#RATES)]
    m:set_rate(r, sluice.now())
    b.rate = r
    check("after rate")
  end

  for _ = 1, 2 + rand(8) do
    sluice.sleep(STEPS[rand(#STEPS)])
    local op = rand(20)
    if op <= 9 then op_take()
    elseif op <= 12 then op_try()
    elseif op <= 15 then op_cancel()
    elseif op <= 17 then op_rate()
    else check("after sleep") end
  end
  for _, rec in ipairs(recs) do rec.task:await() end
  check("at the end")

  for _, rec in ipairs(recs) do
    if rec.got ~= rec.exp or rec.at ~= rec.exp_at then
      bad("take #%d (n %s, timeout %s): %s at %s, model %s at %s", rec.id, rec.n, tostring(rec.timeout),
        tostring(rec.got), rec.at and rec.at - t0 or "-", tostring(rec.exp), rec.exp_at and rec.exp_at - t0 or "-")
    end
  end
  local real, model = {}, {}
  for i, rec in ipairs(granted) do real[i] = rec.id end
  for i, rec in ipairs(m.order) do model[i] = rec.id end
  if concat(real, " ") ~= concat(model, " ") then
    bad("grants in the order %s, model %s", concat(real, " "), concat(model, " "))
  end
  local st = b:stats()
  if b.waiting ~= 0 then bad("left %d waiting", b.waiting) end
  if st.acquired ~= m.acquired or st.waited ~= m.waited or st.timeouts ~= m.timeouts or
     st.cancelled ~= m.cancelled then
    bad("stats acquired %d waited %d timeouts %d cancelled %d, model %d %d %d %d", st.acquired, st.waited,
      st.timeouts, st.cancelled, m.acquired, m.waited, m.timeouts, m.cancelled)
  end
  if #problems > 0 then
    problems[#problems + 1] = fmt("(capacity %s, rate %s, initial %s)", cap, rate, initial)
  end
  return problems
end

describe("token_bucket under random schedules", function()
  property.batches(it, "matches the model for seeds %d..%d", run_schedule)
end)
