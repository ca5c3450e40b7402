-- A randomized property test of the scheduler: many small seeded random
-- schedules of spawn / sleep / yield / cancel / await / scope / timeout /
-- shield operations on the virtual clock, each checked against invariants.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"
local bit = require "bit"

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local SCHEDULES, FIRST_SEED = property.SCHEDULES, property.FIRST_SEED
local MAX_TASKS = 10
local fmt = string.format

local prng = property.prng

local function pack(...) return { n = select("#", ...), ... } end

local function is_cancel(e) return sluice.is_error(e, "cancelled") end

local function show(v)
  if type(v) == "table" and v.message then return fmt("%s(%s)", tostring(v.kind), v.message) end
  if type(v) == "table" and v.own then return "own error of task " .. v.own end
  return tostring(v)
end

-- Runs one schedule; returns a list of broken invariants (empty if none).
local function run_schedule(seed)
  local rand = prng(seed)
  local recs, scopes, problems = {}, {}, {}
  local function bad(...) problems[#problems + 1] = fmt(...) end

  local function new_rec(scope_id)
    local rec = { id = #recs + 1, scope_id = scope_id, cleanups = 0, children = {}, awaits = {} }
    recs[#recs + 1] = rec
    return rec
  end

  local body

  local function spawn_child(rec, depth, scope_id, spawner)
    if #recs >= MAX_TASKS then return end
    local c = new_rec(scope_id)
    c.task = spawner(body, c, depth + 1)
    rec.children[#rec.children + 1] = c
  end

  local function op_sleep()
    local d = ({ 0, 0.25, 0.5, 1, 2 })[rand(5)]
    local t0 = sluice.now()
    sluice.sleep(d)
    if sluice.now() ~= t0 + d then bad("sleep(%g) returned after %.17g s", d, sluice.now() - t0) end
  end

  local function op_await(rec)
    if #rec.children == 0 then return end
    local c = rec.children[rand(#rec.children)]
    local r = pack(pcall(c.task.await, c.task))
    local me = sluice.current()
    rec.awaits[#rec.awaits + 1] = { child = c, r = r, self_cancelled = me.cancelled }
    if not r[1] then
      if is_cancel(r[2]) and me.cancelled then error(r[2], 0) end
      if rand(2) == 1 then error(r[2], 0) end   -- else swallow the child's failure
    end
  end

  local function op_scope(rec, depth)
    if depth >= 3 or #recs >= MAX_TASKS then return end
    local id = #scopes + 1
    local opts = rand(3) == 1 and { timeout = ({ 0.5, 1, 3 })[rand(3)] } or {}
    scopes[id] = { id = id, timeout = opts.timeout }
    local t0 = sluice.now()
    local r = pack(pcall(sluice.scope, opts, function(s)
      for _ = 1, rand(3) do
        spawn_child(rec, depth, id, function(...) return s:spawn(...) end)
      end
      if rand(2) == 1 then sluice.sleep(({ 0.25, 1 })[rand(2)]) end
    end))
    scopes[id].r, scopes[id].elapsed = r, sluice.now() - t0
    scopes[id].owner_cancelled = sluice.current().cancelled
    if not r[1] and (is_cancel(r[2]) or rand(2) == 1) then error(r[2], 0) end
  end

  local function op_timeout()
    local limit, need = ({ 0.5, 1, 2 })[rand(3)], ({ 0.25, 1, 3 })[rand(3)]
    local t0 = sluice.now()
    local ok, err = pcall(sluice.timeout, limit, sluice.sleep, need)
    if not ok and not sluice.is_error(err, "timeout") then error(err, 0) end
    -- equal deadlines: the timeout was armed first, so it wins
    local expect_timeout = need >= limit
    if ok == expect_timeout then
      bad("timeout(%g) of sleep(%g): %s", limit, need, ok and "returned" or show(err))
    elseif sluice.now() ~= t0 + (ok and need or limit) then
      bad("timeout(%g) of sleep(%g) took %.17g s", limit, need, sluice.now() - t0)
    end
  end

  function body(rec, depth)
    if rec.cancelled_unstarted then bad("task %d started though cancelled before it ran", rec.id) end
    rec.started = true
    if sluice.current() ~= rec.task then bad("task %d: sluice.current() is not its task", rec.id) end
    local ok, err = pcall(function()
      for step = 1, 1 + rand(6) do
        -- spawn more at first, await more later
        local op = step <= 2 and rand(2) == 1 and 5 or rand(13)
        if op <= 3 then op_sleep()
        elseif op == 4 then sluice.yield()
        elseif op <= 6 then spawn_child(rec, depth, rec.scope_id, sluice.spawn)
        elseif op <= 8 then op_await(rec)
        elseif op == 9 then
          local victim = recs[rand(#recs)]
          if not victim.started and victim.task.status == "ready" then victim.cancelled_unstarted = true end
          victim.task:cancel("by " .. rec.id)
        elseif op == 10 then op_scope(rec, depth)
        elseif op == 11 then op_timeout()
        elseif op == 12 then
          if rand(3) == 1 then
            rec.own = { own = rec.id }
            error(rec.own)
          end
        else
          sluice.shield(function() sluice.sleep(0.25) end)
        end
      end
    end)
    rec.cleanups = rec.cleanups + 1
    if not ok then
      rec.raised = err
      error(err, 0)
    end
    rec.returned = true
    return "ret", rec.id
  end

  local root = new_rec(0)
  scopes[0] = { id = 0 }
  scopes[0].r = pack(pcall(sluice.scope, function()
    root.task = sluice.current()
    return body(root, 0)
  end))

  -- Every task ended in exactly one of done / failed / cancelled, and its
  -- outcome agrees with what its body did.
  for _, rec in ipairs(recs) do
    local t, st = rec.task, rec.task.status
    local res = pack(t:result())
    if st ~= "done" and st ~= "failed" and st ~= "cancelled" then
      bad("task %d left %s", rec.id, st)
    elseif not rec.started then
      if st ~= "cancelled" or rec.cleanups ~= 0 then
        bad("task %d never started but is %s (cleanups %d)", rec.id, st, rec.cleanups)
      end
    elseif rec.cleanups ~= 1 then
      bad("task %d: cleanup ran %d times", rec.id, rec.cleanups)
    elseif st == "done" then
      if not rec.returned or res.n ~= 3 or res[2] ~= "ret" or res[3] ~= rec.id then
        bad("task %d done but its results are %s, %s", rec.id, show(res[2]), show(res[3]))
      end
    elseif st == "failed" then
      if rec.returned or res[1] ~= false or not rawequal(res[2], rec.raised) then
        bad("task %d failed with %s but raised %s", rec.id, show(res[2]), show(rec.raised))
      elseif t.cancelled and is_cancel(rec.raised) then
        bad("task %d was cancelled and unwound with a cancellation but is 'failed'", rec.id)
      end
    else   -- cancelled
      if not t.cancelled then bad("task %d is 'cancelled' but was never cancelled", rec.id) end
      if rec.returned or not is_cancel(rec.raised) or not rawequal(res[2], rec.raised) then
        bad("task %d cancelled: result %s, raised %s", rec.id, show(res[2]), show(rec.raised))
      end
    end
    -- awaiters got the awaited task's outcome (or their own cancellation)
    for _, a in ipairs(rec.awaits) do
      local c, r = a.child, a.r
      if r[1] then
        if c.task.status ~= "done" or r.n ~= 3 or r[2] ~= "ret" or r[3] ~= c.id then
          bad("task %d awaited task %d (%s) and got %s, %s", rec.id, c.id, c.task.status, show(r[2]), show(r[3]))
        end
      elseif not (is_cancel(r[2]) and a.self_cancelled) then
        local cres = pack(c.task:result())
        if c.task.status == "done" or not rawequal(cres[2], r[2]) then
          bad("task %d awaited task %d (%s: %s) and got error %s", rec.id, c.id, c.task.status,
            show(cres[2]), show(r[2]))
        end
      end
    end
  end

  -- A scope returns normally only if none of its children failed; else it
  -- raises a child's failure, its timeout, or its owner's cancellation.
  for id, sc in pairs(scopes) do
    if sc.r then
      local failed = {}
      for _, rec in ipairs(recs) do
        if rec.scope_id == id and rec.task.status == "failed" then failed[rec.raised] = true end
      end
      if sc.r[1] then
        if next(failed) then bad("scope %d returned normally though a child failed", id) end
      else
        local e = sc.r[2]
        -- (a shielded child may hold the scope past its deadline)
        local ok = failed[e] or (sc.timeout and sluice.is_error(e, "timeout") and sc.elapsed >= sc.timeout)
          or (is_cancel(e) and sc.owner_cancelled)
        if not ok then bad("scope %d raised %s", id, show(e)) end
      end
    end
  end
  return problems
end

describe("the scheduler under random schedules", function()
  property.batches(it, "keeps its invariants for seeds %d..%d", run_schedule, { "tasks", "ready", "waiting", "timers", "root_tasks" })
end)
