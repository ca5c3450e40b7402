-- bench/memory.lua: bytes per waiting task and per queued limit() call.
--
--   build/sluice bench/memory.lua [n=100000]
--
-- parked task: n tasks are spawned and each blocks in acquire() on a
-- semaphore(1) this task holds.  Once all n are parked, the memory they
-- added is divided by n.  It is the whole cost of a waiting task: its
-- coroutine with its stack, its task object (the C struct sl_task lives
-- inside the task's userdata, wait node and timer included, so Lua's
-- count holds it) and its registry slots.
--
-- queued call: a limit(1) is kept busy by one call blocked on a
-- semaphore, then n calls are made through it; each is queued, not
-- started.  (Skipped, "n/a", while sluice has no limit.)
--
-- Memory is counted twice over: the Lua heap, collectgarbage("count")
-- after two full collections, and the C heap (malloc), read from glibc's
-- mallinfo2() through the FFI, which is where the C side's own records
-- live.  With LuaJIT's own allocator (the usual build) the two do not
-- overlap; a check at start-up finds out whether Lua allocates through
-- malloc too (then only the part of the malloc growth that Lua's count
-- does not explain is put on the C side).  For limit(), C's own counter
-- of its records (sluice._limit_bytes) is shown as well.
local sluice = require "sluice"
local ffi = require "ffi"

local N = tonumber(arg and arg[1]) or 100000

-- The C heap in use, in bytes, or nil when it cannot be read.
local c_heap
do
  pcall(ffi.cdef, [[
    struct sl_bench_mallinfo2 { size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost; };
    struct sl_bench_mallinfo2 mallinfo2(void);
    struct sl_bench_mallinfo { int arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost; };
    struct sl_bench_mallinfo mallinfo(void);
  ]])
  local function via(name)
    local ok, f = pcall(function() return ffi.C[name] end)
    if not ok then return nil end
    return function()
      local m = f()
      return tonumber(m.uordblks) + tonumber(m.hblkhd)
    end
  end
  c_heap = via("mallinfo2") or via("mallinfo")
end

local function lua_heap()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count") * 1024
end

-- Does the Lua heap live in malloc's heap?  Allocate ~8 MB of Lua
-- strings and see whether malloc's count moves with it.
local lua_in_malloc = false
if c_heap then
  local c0 = c_heap()
  local keep = {}
  for i = 1, 2000 do keep[i] = string.rep(string.char(i % 256), 4000) .. i end
  lua_in_malloc = c_heap() - c0 > 4e6
  keep = nil
end

-- Runs setup() (it makes the n waiters), then returns Lua and C bytes per
-- waiter measured while they wait; teardown() lets them finish.
local function measure(setup, teardown)
  local l0, c0 = lua_heap(), c_heap and c_heap()
  setup()
  local l1, c1 = lua_heap(), c_heap and c_heap()
  teardown()
  local lua_b = (l1 - l0) / N
  local c_b
  if c_heap then
    c_b = (c1 - c0) / N
    if lua_in_malloc then c_b = c_b - lua_b end
  end
  return lua_b, c_b
end

local function fmt_bytes(lua_b, c_b)
  if not c_b then return string.format("%.1f bytes (Lua %.1f + C n/a)", lua_b, lua_b) end
  return string.format("%.1f bytes (Lua %.1f + C %.1f)", lua_b + c_b, lua_b, c_b)
end

------------------------------------------------------------ parked tasks

do
  local sem = sluice.semaphore(1)
  local released = 0
  local function body()
    sem:acquire()
    sem:release()
    released = released + 1
  end
  sluice.scope(function(scope)
    sem:acquire()                 -- the scope's body holds the only permit
    local lua_b, c_b = measure(function()
      for _ = 1, N do scope:spawn(body) end
      sluice.sleep(0)             -- every task runs once and parks
      assert(sem:stats().waiting == N, "not all tasks are parked")
    end, function()
      sem:release()
    end)
    print(string.format("memory: %d tasks parked in semaphore:acquire(): %s per task",
      N, fmt_bytes(lua_b, c_b)))
  end)
  assert(released == N)
end

-- For comparison: what the same n tasks cost before they first run
-- (spawned, on the ready queue), and the pure-LuaJIT floor of
-- bench/floor.lua: a bare coroutine parked in a Lua waiter list.
do
  local function body() end
  sluice.scope(function(scope)
    local lua_b, c_b = measure(function()
      for _ = 1, N do scope:spawn(body) end
    end, function() end)
    print(string.format("  for comparison: %d tasks spawned, not yet run: %s per task", N, fmt_bytes(lua_b, c_b)))
  end)
  sluice.scope(function(scope)
    local lua_b, c_b = measure(function()
      for i = 1, N do scope:spawn(body, i) end
    end, function() end)
    print(string.format("  for comparison: %d tasks spawned with an argument, not yet run: %s per task", N, fmt_bytes(lua_b, c_b)))
  end)
  local waiters, co_yield = {}, coroutine.yield
  local function wait() waiters[#waiters + 1] = coroutine.running(); co_yield() end
  local function fbody() wait() end
  for i = 1, N do waiters[i] = false end
  for i = 1, N do waiters[i] = nil end   -- the list's array part stays
  local lua_b, c_b = measure(function()
    for _ = 1, N do
      local co = coroutine.create(fbody)
      coroutine.resume(co)
    end
  end, function()
    for i = 1, N do coroutine.resume(waiters[i]) end
  end)
  print(string.format("  for comparison: %d bare LuaJIT coroutines parked in a Lua list (bench/floor.lua's kind): %s per coroutine",
    N, fmt_bytes(lua_b, c_b)))
end

------------------------------------------------------------ queued calls

if not sluice.limit then
  print("memory: queued limit() call: n/a (sluice.limit does not exist)")
else
  local lim = sluice.limit(1)
  local gate = sluice.semaphore(1)
  local f = function() end
  local calls = {}
  for i = 1, N do calls[i] = false end   -- the caller's own list, not counted
  local blocker, k0, k1
  gate:acquire()
  blocker = lim(function() gate:acquire() gate:release() end)
  sluice.sleep(0)                        -- the blocker starts and waits
  local counter = sluice._limit_bytes
  local lua_b, c_b = measure(function()
    k0 = counter and counter()
    for i = 1, N do calls[i] = lim(f) end
    k1 = counter and counter()
  end, function()
    gate:release()
    for i = 1, N do calls[i]:await() end
    blocker:await()
  end)
  print(string.format("memory: %d calls queued in limit(1): %s per call; C's own counter: %s",
    N, fmt_bytes(lua_b, c_b),
    counter and string.format("%.1f bytes", (k1 - k0) / N) or "n/a"))
end
print(string.format("  Lua heap: collectgarbage(\"count\"); C heap: %s%s",
  c_heap and "glibc mallinfo" or "n/a (no mallinfo)",
  lua_in_malloc and " (Lua allocates through malloc: its share taken out)" or " (separate from the Lua heap)"))
