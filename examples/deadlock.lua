-- examples/deadlock.lua: the seed's nested withPermit deadlock, and how
-- sluice reports it instead of hanging.
--
--   build/sluice examples/deadlock.lua
--
-- 1. A task holding the only permit of a semaphore asks for another one
--    inside it (a helper that takes the same permit): in Node this hangs
--    forever; here the inner acquire raises a `deadlock` error at once,
--    naming the holder and where it acquired the permit.
-- 2. Two tasks each hold one mutex and want the other's: the second
--    acquire closes the cycle and raises, the first goes on.
-- 3. A call through limit(1) that waits for another call through the same
--    limiter: the inner call can never start, and awaiting it raises.
local sluice = require "sluice"

sluice.track_holders(true)   -- record where each holder acquired

local function first_line(msg) return (tostring(msg):match("^[^\n]*")) end

print("1. nested acquire of a semaphore(1)")
local db = sluice.semaphore(1)
local function query(sql)
  return db:with(function() return "rows of " .. sql end)
end
local ok, err = pcall(db.with, db, function()
  return query("SELECT 1")   -- the seed's withPermit inside withPermit
end)
print("   ok:", ok, "kind:", err.kind)
print("   " .. first_line(err.message))
print("   where the holder acquired it:")
for line in err.message:gmatch("\n(\t[^\n]*)") do print("   " .. line) break end

print("2. two mutexes taken in opposite orders")
local a, b = sluice.mutex(), sluice.mutex()
local log = {}
local t1 = sluice.spawn(function()
  a:acquire()
  sluice.sleep(0.01)
  local ok2, e = pcall(b.acquire, b)   -- t2 holds b and waits on a
  log[#log + 1] = ok2 and "t1 got b" or ("t1: " .. first_line(e.message))
  if ok2 then b:release() end
  a:release()
end)
local t2 = sluice.spawn(function()
  b:acquire()
  sluice.sleep(0.02)
  local ok2, e = pcall(a.acquire, a)
  log[#log + 1] = ok2 and "t2 got a" or ("t2: " .. first_line(e.message))
  if ok2 then a:release() end
  b:release()
end)
t1:await(); t2:await()
for _, line in ipairs(log) do print("   " .. line) end

print("3. a limited call awaiting another call of the same limit(1)")
local lim = sluice.limit(1)
local inner
local outer = lim(function()
  inner = lim(function() return "inner" end)
  return inner:await()
end)
ok, err = pcall(outer.await, outer)
print("   ok:", ok, "kind:", err.kind)
print("   " .. first_line(err.message))
print("   the inner call still runs once the place is free:", inner:await())
