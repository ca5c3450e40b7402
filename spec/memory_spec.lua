-- Memory per waiting task: a regression guard.  A parked task is its
-- userdata plus its coroutine; if the frames on a park path grow past the
-- coroutine's first stack, LuaJIT doubles it and every parked task costs
-- about 40% more (measured: ~740 bytes parked in acquire, ~1200 doubled).
-- A call to a C function needs 20 free slots above it, so the JIT-compiled
-- park paths call co_isyieldable ahead of the call into C; interpreted,
-- the FFI call itself is such a call, and whether a path runs compiled
-- depends on what ran before, so these bounds stay loose.
local sluice = require "sluice"

local N = 2000

-- Bytes of Lua heap per task spawned with body, once they all park.
local function per_task(body)
  collectgarbage()
  collectgarbage()
  local before = collectgarbage("count")
  local tasks = {}
  for i = 1, N do tasks[i] = sluice.spawn(body) end
  sluice.yield()
  collectgarbage()
  collectgarbage()
  local bytes = (collectgarbage("count") - before) * 1024 / N
  for i = 1, N do tasks[i]:cancel() end
  for i = 1, N do pcall(tasks[i].await, tasks[i]) end
  return bytes
end

describe("memory of a waiting task", function()
  it("stays within its first stack when parked in a semaphore's acquire", function()
    local sem = sluice.semaphore(1)
    sem:acquire()
    local bytes = per_task(function() sem:acquire() end)
    sem:release()
    assert(bytes < 1000, ("%.0f bytes per task parked in acquire"):format(bytes))
  end)

  it("stays within its first stack when parked in a weighted or priority acquire", function()
    local ws, ps = sluice.weighted_semaphore(2), sluice.priority_semaphore(1)
    ws:acquire(2)
    ps:acquire(0)
    local wb = per_task(function() ws:acquire(1) end)
    local pb = per_task(function() ps:acquire(5) end)
    ws:release(2)
    ps:release()
    assert(wb < 1000, ("%.0f bytes per task parked in weighted acquire"):format(wb))
    assert(pb < 1000, ("%.0f bytes per task parked in priority acquire"):format(pb))
  end)

  it("stays within its first stack when parked in a channel's send or recv", function()
    local c = sluice.channel()
    local rb = per_task(function() c:recv() end)
    local sb = per_task(function() c:send(1) end)
    c:close()
    assert(rb < 1000, ("%.0f bytes per task parked in recv"):format(rb))
    assert(sb < 1000, ("%.0f bytes per task parked in send"):format(sb))
  end)

  it("stays within its first stack when sleeping", function()
    local bytes = per_task(function() sluice.sleep(3600) end)
    assert(bytes < 1000, ("%.0f bytes per sleeping task"):format(bytes))
  end)

  -- Bytes of Lua heap per task spawned by spawn(i), before any runs;
  -- then lets them all run.
  local function per_unstarted(spawn)
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    local tasks = {}
    for i = 1, N do tasks[i] = spawn(i) end
    collectgarbage()
    collectgarbage()
    local bytes = (collectgarbage("count") - before) * 1024 / N
    for i = 1, N do tasks[i]:await() end
    return bytes
  end

  it("has no coroutine before it first runs", function()
    local ran = 0
    local bytes = per_unstarted(function() return sluice.spawn(function() ran = ran + 1 end) end)
    assert.equal(N, ran)
    -- its userdata (~250 bytes), anchor slot and closure: a coroutine
    -- alone would be ~470 more
    assert(bytes < 400, ("%.0f bytes per task spawned and not yet run"):format(bytes))
  end)

  it("has no coroutine before it first runs when spawned with arguments", function()
    local sum = 0
    local function body(i) sum = sum + i end
    local bytes = per_unstarted(function(i) return sluice.spawn(body, i) end)
    assert.equal(N * (N + 1) / 2, sum)
    -- the same plus a table of the function and its argument (~90 bytes)
    assert(bytes < 450, ("%.0f bytes per task spawned with an argument and not yet run"):format(bytes))
  end)
end)
