-- A randomized property test of sluice.pool: many seeded random schedules
-- of acquire (with and without timeouts), release, destroy, cancellation
-- (while waiting, holding or right after a hand-off), failing, slow and
-- timed-out creations, failing validation, expiry and time passing, run
-- by actor tasks on the virtual clock against pools with random options.
--
-- After every step: size never exceeds max and is idle + active +
-- pending creations; no resource is held by two actors at once, nor is a
-- destroyed one ever handed out; the pool's active count is what the
-- actors hold (plus grants not yet returned from acquire).  At the end close() leaves size 0, every actor has settled
-- (none is left waiting), and every resource created was destroyed
-- exactly once.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local prng = property.prng
local fmt = string.format

local STEPS = 20
local TIMEOUTS = { false, false, 0, 0.5, 1 }
local HOLDS = { 0, 0.25, 0.5, 1 }
local ADVANCES = { 0, 0.25, 0.5, 1 }
local EXPECTED = { timeout = true, cancelled = true, closed = true, full = true }

local function run_schedule(seed)
  local rand = prng(seed)
  local problems = {}
  local function bad(...) problems[#problems + 1] = fmt(...) end

  local created, destroyed, n = {}, {}, 0
  local holder = {}          -- resource -> actor holding it
  local nheld, inacq = 0, 0
  local fail_p = ({ 0, 0, 4, 2 })[rand(4)]           -- 1 in fail_p creations fail
  local create_time = ({ 0, 0, 0.25, 1 })[rand(4)]
  local opts = {
    max = rand(3), min = 0,
    create = function()
      n = n + 1
      local id = n
      if create_time > 0 then sluice.sleep(create_time) end
      if fail_p > 0 and rand(fail_p) == 1 then error("create failed", 0) end
      created[id] = sluice.now()
      return { id = id }
    end,
    destroy = function(r)
      if holder[r] then bad("resource %d destroyed while held", r.id) end
      destroyed[r.id] = (destroyed[r.id] or 0) + 1
      r.dead = true
    end,
  }
  if rand(3) == 1 then opts.min = rand(opts.max + 1) - 1 end
  if rand(3) == 1 then opts.validate = function(r) return rand(4) ~= 1 end end
  if rand(4) == 1 then opts.max_uses = rand(3) end
  if rand(4) == 1 then opts.max_lifetime = rand(3) end
  if rand(4) == 1 then opts.idle_timeout = rand(2) * 0.5 end
  if rand(4) == 1 then opts.create_timeout = 0.5 end
  if rand(5) == 1 then opts.max_waiting = rand(3) - 1 end
  if rand(5) == 1 then opts.acquire_timeout = 1.5 end
  local pool = sluice.pool(opts)

  local function check(where)
    local size = pool.size
    if size > opts.max then bad("%s: size %d > max %d", where, size, opts.max) end
    if size ~= pool.idle + pool.active + pool.pending_creates then
      bad("%s: size %d is not idle %d + active %d + pending %d", where, size, pool.idle, pool.active,
        pool.pending_creates)
    end
    -- granted or validating but not yet returned from acquire: inacq
    if pool.active < nheld or pool.active > nheld + inacq then
      bad("%s: active %d but actors hold %d (%d in acquire)", where, pool.active, nheld, inacq)
    end
  end

  local actors = {}
  local function actor(i, timeout, hold, how)
    local ok, r
    inacq = inacq + 1
    if timeout then ok, r = pcall(pool.acquire, pool, timeout)
    else ok, r = pcall(pool.acquire, pool) end
    inacq = inacq - 1
    if not ok then
      -- only the errors a pool may raise here
      if r ~= "create failed" and not (sluice.is_error(r) and EXPECTED[r.kind]) then
        bad("actor %d: acquire raised %s", i, tostring(r))
      end
      return
    end
    if r == nil then return end
    if holder[r] then bad("resource %d handed to actor %d while actor %d holds it", r.id, i, holder[r]) end
    if r.dead then bad("destroyed resource %d handed to actor %d", r.id, i) end
    holder[r] = i
    nheld = nheld + 1
    local function give_back()
      holder[r] = nil
      nheld = nheld - 1
      if how == 1 then pool:destroy(r) else pool:release(r) end
    end
    local slept = pcall(sluice.sleep, hold)
    give_back()
    if not slept then error("cancelled while holding", 0) end
  end

  for step = 1, STEPS do
    local op = rand(10)
    if op <= 5 then
      local i = #actors + 1
      actors[i] = sluice.spawn(actor, i, TIMEOUTS[rand(#TIMEOUTS)], HOLDS[rand(#HOLDS)], rand(5))
    elseif op <= 7 and #actors > 0 then
      actors[rand(#actors)]:cancel()
    else
      sluice.sleep(ADVANCES[rand(#ADVANCES)])
    end
    if rand(2) == 1 then sluice.yield() end
    check("step " .. step)
  end
  sluice.sleep(rand(3))
  check("before close")
  -- every actor settles: the ones that wait get their resource, time out,
  -- or are rejected by close
  local closer = sluice.spawn(function() return pool:close() end)
  for i, t in ipairs(actors) do
    pcall(t.await, t)
    if t.status ~= "done" and t.status ~= "failed" and t.status ~= "cancelled" then
      bad("actor %d did not settle (%s)", i, t.status)
    end
  end
  local ok, err = pcall(closer.await, closer)
  if not ok then bad("close raised %s", tostring(err)) end
  if pool.size ~= 0 then bad("size %d after close", pool.size) end
  for id in pairs(created) do
    if destroyed[id] ~= 1 then bad("resource %d destroyed %d times", id, destroyed[id] or 0) end
  end
  for id in pairs(destroyed) do
    if not created[id] then bad("resource %d destroyed but never created", id) end
  end
  return problems
end

describe("sluice.pool (property)", function()
  property.batches(it, "random schedules %d..%d keep the pool's invariants", run_schedule)
end)
