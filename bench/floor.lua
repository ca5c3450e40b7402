-- bench/floor.lua: the pure-LuaJIT floor for gated tasks.
--
--   build/sluice bench/floor.lua [n=100000] [permits=100] [reps=5]
--   luajit bench/floor.lua        (same numbers without the runtime)
--
-- A minimal scheduler written in Lua alone: coroutines, a ring-buffer run
-- queue, and a semaphore with a FIFO waiter queue and direct hand-off.
-- N tasks each acquire a permit, hold it across one scheduler turn and
-- release it.  It does no error handling, no cancellation, no timers: it
-- is the lower bound sluice's native semaphore is measured against
-- (bench/gate.lua does the same work through sluice).
local N = tonumber(arg and arg[1]) or 100000
local PERMITS = tonumber(arg and arg[2]) or 100
local REPS = tonumber(arg and arg[3]) or 5
local clock = os.clock
local ok, uv = pcall(require, "luv")
if ok and uv then clock = function() return uv.hrtime() / 1e9 end end
local co_create, co_resume, co_yield, co_running =
      coroutine.create, coroutine.resume, coroutine.yield, coroutine.running

local measure = dofile(((arg and arg[0] or ""):match("^(.*/)") or "") .. "timing.lua")

local function once()
  local runq, head, tail = {}, 1, 0
  local function ready(co) tail = tail + 1; runq[tail] = co end
  local avail, waiters, wh, wt = PERMITS, {}, 1, 0
  local function acquire()
    if avail > 0 and wh > wt then avail = avail - 1; return end
    wt = wt + 1; waiters[wt] = co_running()
    co_yield()
  end
  local function release()
    if wh <= wt then
      local co = waiters[wh]; waiters[wh] = nil; wh = wh + 1
      ready(co)                 -- hand-off: the permit goes with it
    else
      avail = avail + 1
    end
  end
  local done = 0
  local function body()
    acquire()
    ready(co_running()); co_yield()   -- hold across one turn
    release()
    done = done + 1
  end
  local t0 = clock()
  for _ = 1, N do ready(co_create(body)) end
  while head <= tail do
    local co = runq[head]; runq[head] = nil; head = head + 1
    co_resume(co)
  end
  assert(done == N)
  return (clock() - t0) * 1e3
end

local med = measure(once, REPS)
print(string.format("floor: %d gated tasks, %d permits: %.1f ms (%.0f ns/task)",
  N, PERMITS, med, med * 1e6 / N))
