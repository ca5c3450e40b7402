-- A randomized property test of sluice.channel and sluice.select: many
-- seeded random schedules of send and recv (with and without timeouts),
-- try_send, try_recv, select over a case on each of two channels, close,
-- cancellation (of idle and waiting actors, and right after a hand-off)
-- and time passing, run by "actor" tasks on the virtual clock with two
-- channels of capacity 0 to 3.
--
-- Every sent value is unique.  Checked, for every schedule:
--   - nothing lost, nothing duplicated: once the channels are closed and
--     drained, the values received are exactly the values whose send
--     (or select send case) was done, each once, from the channel it was
--     sent on; a send that timed out, was cancelled while waiting or hit
--     a close is never received; a select does exactly one case;
--   - FIFO, per channel: values are received in the order their sends
--     began (receivers served in the order their receives began); this is
--     checked on the schedules that never cancel a receiving actor,
--     since a value handed to a receiver cancelled before it ran goes
--     back to the front and may be overtaken by values already handed on;
--   - a wait that timed out ended exactly at its deadline;
--   - after every step: receivers wait only while nothing is buffered and
--     no sender waits, and (with no receiver cancelled) the buffer never
--     holds more than the capacity;
--   - at the end nothing is left parked, no key of the C side is still in
--     use, and the stats count every value that went through.
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"
local C = require("sluice.ffi").C

local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")
local prng = property.prng
local STEPS = 30
local MAX_ACTORS = 5
local TIMEOUTS = { false, false, false, 0, 0.5, 1, 2 }   -- false: none
local ADVANCES = { 0.25, 0.5, 1, 2 }
local fmt, concat = string.format, table.concat

local function run_schedule(seed)
  local rand = prng(seed)
  local problems = {}
  local function bad(...) problems[#problems + 1] = fmt(...) end
  local fifo = seed % 2 == 0             -- never cancel a receiving actor
  local chans = { sluice.channel(rand(4) - 1), sluice.channel(rand(4) - 1) }
  local actors, nactors, next_value = {}, 0, 0
  local seq = 0                           -- the order operations began in
  local accepted, failed = {}, {}         -- value -> { chan, order } / true
  local got = {}                          -- { chan =, order =, value = } of receives
  local seen = {}

  local function note_recv(c, order, v, how)
    if v == nil then return end
    if seen[v] then bad("value %s received twice (%s)", tostring(v), how) end
    seen[v] = c
    got[#got + 1] = { chan = c, order = order, value = v }
  end

  local function timed(what, t0, timeout)
    local waited = sluice.now() - t0
    if waited ~= timeout then bad("%s timed out after %.17g s, not %.17g", what, waited, timeout) end
  end

  local function sent(c, v, order, ok)
    if ok then accepted[v] = { c, order } else failed[v] = true end
  end

  -- cases: { {c, "recv"} or {c, "send", v}, ... }
  local function do_select(a, cases, timeout)
    seq = seq + 1
    local order = seq
    local list = { timeout = timeout or nil }
    for i, k in ipairs(cases) do list[i] = { chans[k[1]], k[2], k[3] } end
    a.op = "select"
    local t0 = sluice.now()
    local ok, i, v, why = pcall(sluice.select, list)
    a.op = nil
    if not ok and i.kind ~= "closed" and i.kind ~= "cancelled" then bad("select raised %s", tostring(i)) end
    if ok and i == nil then timed("select", t0, timeout) end
    for j, k in ipairs(cases) do
      if k[2] == "send" then sent(k[1], k[3], order, ok and i == j) end
    end
    if ok and i and cases[i][2] == "recv" then
      if v == nil and why ~= "closed" then bad("select gave recv case %d nil, %s", i, tostring(why)) end
      note_recv(cases[i][1], order, v, "select")
    end
    return ok or i.kind ~= "cancelled"
  end

  local function actor_body(a)
    while true do
      local ok, cmd, c, arg, timeout = pcall(sluice.await, function(cb) a.wake = cb end)
      a.wake = nil
      if not ok then break end
      local ch, t0 = chans[c], sluice.now()
      seq = seq + 1
      local order = seq
      if cmd == "send" then
        a.op = "send"
        local ok2, r1 = pcall(ch.send, ch, arg, timeout or nil)
        a.op = nil
        sent(c, arg, order, ok2 and r1 == true)
        if ok2 and r1 ~= true then timed("send", t0, timeout) end
        if not ok2 and r1.kind ~= "closed" and r1.kind ~= "cancelled" then bad("send raised %s", tostring(r1)) end
        if not ok2 and r1.kind == "cancelled" then break end
      elseif cmd == "recv" then
        a.op = "recv"
        local ok2, v, why = pcall(ch.recv, ch, timeout or nil)
        a.op = nil
        if not ok2 then
          if v.kind ~= "cancelled" then bad("recv raised %s", tostring(v)) end
          break
        end
        if v == nil and why == "timeout" then timed("recv", t0, timeout) end
        note_recv(c, order, v, "recv")
      elseif cmd == "try_send" then
        local ok2, r = pcall(ch.try_send, ch, arg)
        sent(c, arg, order, ok2 and r)
      elseif cmd == "try_recv" then
        note_recv(c, order, (ch:try_recv()), "try_recv")
      elseif cmd == "select" then
        if not do_select(a, arg, timeout) then break end
      else
        ch:close()
      end
      a.busy = false
    end
    a.dead = true
  end

  local function spawn_actor()
    nactors = nactors + 1
    local a = { name = "a" .. nactors, busy = false }
    a.task = sluice.spawn(actor_body, a)
    actors[#actors + 1] = a
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
    bad("the actors never settled")
  end

  local function pick(pred)
    local list = {}
    for _, a in ipairs(actors) do
      if not a.dead and pred(a) then list[#list + 1] = a end
    end
    return #list > 0 and list[rand(#list)] or nil
  end

  local function idle(a) return not a.busy and a.wake ~= nil end

  local function value()
    next_value = next_value + 1
    return next_value
  end

  local function command(cmd, c, arg, timeout)
    local a = pick(idle)
    if not a then return end
    a.busy = true
    a.wake(cmd, c, arg, timeout)
  end

  local function random_case(c)
    if rand(2) == 1 then return { c, "recv" } end
    return { c, "send", value() }
  end

  for _ = 1, 1 + rand(MAX_ACTORS - 1) do spawn_actor() end
  settle()
  for step = 1, STEPS do
    local op, c = rand(100), (rand(5) == 1) and 2 or 1
    if op <= 26 then
      command("send", c, value(), TIMEOUTS[rand(#TIMEOUTS)])
    elseif op <= 52 then
      command("recv", c, nil, TIMEOUTS[rand(#TIMEOUTS)])
    elseif op <= 57 then
      command("try_send", c, value())
    elseif op <= 62 then
      command("try_recv", c)
    elseif op <= 72 then
      local cases = { random_case(1), random_case(2) }
      if rand(2) == 1 then cases[1], cases[2] = cases[2], cases[1] end
      command("select", 1, cases, TIMEOUTS[rand(#TIMEOUTS)])
    elseif op <= 74 then
      command("close", c)
    elseif op <= 84 then
      local a = pick(function(x) return not (fifo and (x.op == "recv" or x.op == "select")) end)
      if a then
        a.task:cancel()
        spawn_actor()
      end
    elseif op <= 92 then
      sluice.sleep(ADVANCES[rand(#ADVANCES)])
    end
    -- one turn, sometimes several: woken tasks may or may not have run
    -- before the next step (so cancellations land right after hand-offs)
    if rand(3) > 1 then settle() else sluice.yield() end
    for k, ch in ipairs(chans) do
      local n, ws, wr = ch.count, ch.waiting_senders, ch.waiting_receivers
      if wr > 0 and (n > 0 or ws > 0) then
        bad("step %d: channel %d: %d receivers wait while %d are buffered and %d senders wait", step, k, wr, n, ws)
      end
      if fifo and n > ch.capacity then bad("step %d: channel %d: %d buffered over the capacity", step, k, n) end
    end
    if #problems > 0 then break end
  end

  -- the end: everything runs, the channels close, the rest is drained
  settle()
  for _, ch in ipairs(chans) do ch:close() end
  settle()
  for _, a in ipairs(actors) do a.task:cancel() end
  settle()
  for _, a in ipairs(actors) do pcall(a.task.await, a.task) end
  for k, ch in ipairs(chans) do
    while true do
      local v, why = ch:try_recv()
      if v == nil then
        if why ~= "closed" then bad("try_recv after close gave %s", tostring(why)) end
        break
      end
      seq = seq + 1
      note_recv(k, seq, v, "drain")
    end
  end

  local nacc = { 0, 0 }
  for v, a in pairs(accepted) do
    nacc[a[1]] = nacc[a[1]] + 1
    if not seen[v] then bad("value %d was sent but never received", v)
    elseif seen[v] ~= a[1] then bad("value %d was sent on channel %d, received on %d", v, a[1], seen[v]) end
  end
  for v in pairs(seen) do
    if failed[v] then bad("value %d was received though its send failed", v) end
    if not accepted[v] and not failed[v] then bad("value %s was never sent", tostring(v)) end
  end
  if fifo then
    table.sort(got, function(x, y) return x.order < y.order end)
    local prev = { 0, 0 }
    for _, g in ipairs(got) do
      local a = accepted[g.value]
      if a and a[2] < prev[g.chan] then
        bad("FIFO: value %d (op #%d) received after a value of op #%d", g.value, a[2], prev[g.chan])
        break
      end
      if a then prev[g.chan] = a[2] end
    end
  end
  local nrecv = { 0, 0 }
  for _, g in ipairs(got) do nrecv[g.chan] = nrecv[g.chan] + 1 end
  for k, ch in ipairs(chans) do
    if ch.waiting_senders ~= 0 or ch.waiting_receivers ~= 0 or ch.count ~= 0 then
      bad("channel %d left behind: %d senders, %d receivers waiting, %d buffered", k, ch.waiting_senders,
        ch.waiting_receivers, ch.count)
    end
    local keys = C.sl_chan_keys_used(ch._c)
    if keys ~= 0 then bad("channel %d: %d keys still in use", k, keys) end
    local st = ch:stats()
    if st.send.acquired ~= nacc[k] then bad("channel %d: stats: %d sent, %d sends done", k, st.send.acquired, nacc[k]) end
    if st.recv.acquired ~= nrecv[k] then bad("channel %d: stats: %d received, %d seen", k, st.recv.acquired, nrecv[k]) end
  end
  return problems
end

describe("sluice.channel (property)", function()
  property.batches(it, "keeps every value exactly once, in order (seeds %d-%d)", run_schedule)
end)
