-- sluice.redis's distributed limits when Redis goes away and comes back
-- (lua/sluice/redis_link.lua): fail fast, the local fallback share, the
-- events, pools of clients, and batching in the token bucket.  Each spec
-- kills its own redis-server (kill -9) and revives it on the same port,
-- empty, as a restart without persistence would.
--
-- The backoff between reconnection attempts runs on sluice.now(): these
-- specs run on the virtual clock, so a sluice.sleep(1) carries it past.
local sluice = require "sluice"
local servers = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/redis.lua")
local redis = require "sluice.redis"
if not redis.semaphore then require("sluice.redis_limits")(redis, nil) end

local fmt = string.format
local fails = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua").error_of

-- on_change's calls, as "from>to"
local function recorder()
  local seen = {}
  return seen, function(from, to) seen[#seen + 1] = from .. ">" .. to end
end

-- Waits (virtual seconds, each a chance for the probe) until obj.state is want.
local function until_state(obj, want)
  for _ = 1, 50 do
    if obj.state == want then return end
    sluice.sleep(0.5)
  end
  error("state stayed " .. obj.state .. ", wanted " .. want)
end

describe("sluice.redis limits while Redis is unreachable", function()
  local srv, c

  setup(function() srv = servers.start() end)
  teardown(function() servers.stop_all() end)
  before_each(function()
    if not srv:alive() then srv:revive() end
    c = redis.connect { port = srv.port }
    c:call("FLUSHALL")
  end)
  after_each(function() c:close() end)

  -- The message of a call that found the connection lost.  Which of the
  -- two causes it names is the kernel's doing: the EOF of the killed
  -- server, or, when the call wrote before the loop had read that EOF,
  -- the reset its write drew.
  local function assert_lost(fname, message)
    local head = fmt("%s: redis at 127.0.0.1:%d unreachable (redis: connection lost (", fname, srv.port)
    local closed, reset = head .. "server closed the connection))", head .. "connection reset by peer))"
    if message ~= reset then assert.equal(closed, message) end
  end
  local function refused(fname)
    return fmt("%s: redis at 127.0.0.1:%d unreachable (redis.connect: 127.0.0.1:%d: connection refused)",
      fname, srv.port, srv.port)
  end

  describe("by default", function()
    it("fails fast with kind unavailable, then works again once Redis is back", function()
      local seen, on_change = recorder()
      local s = redis.semaphore(c, "ff", 2, { on_change = on_change })
      local l = s:acquire()
      assert.equal(1, l.token)
      srv:kill()
      local e = fails(s.acquire, s)
      assert.equal("unavailable", e.kind)
      assert_lost("semaphore:acquire", e.message)
      assert.equal("down", s.state)
      assert.same({ "shared>down" }, seen)
      -- within the backoff: no attempt, the same error at once
      assert_lost("semaphore:acquire", fails(s.acquire, s, 0).message)
      assert_lost("semaphore:held", fails(s.held, s).message)
      -- after it, an attempt (refused)
      sluice.sleep(0.2)
      assert.equal(refused("semaphore:acquire"), fails(s.acquire, s).message)
      assert.equal("down", s.state)
      -- a held lease cannot be released now: it is left to lapse
      assert.is_false(s:release(l))
      srv:revive()
      sluice.sleep(1)
      local l2 = s:acquire()
      assert.equal("shared", s.state)
      assert.same({ "shared>down", "down>shared" }, seen)
      assert.equal(1, l2.token)             -- a new, empty server
      assert.equal(1, s:held())
      assert.is_true(s:release(l2))
      assert.equal('redis semaphore "ff" (2 permits, shared)', tostring(s))
      s:close()
    end)

    it("fails a waiter queued on the server when Redis goes", function()
      local s = redis.semaphore(c, "fw", 1)
      local l = s:acquire()
      local t = sluice.spawn(function() return s:acquire() end)
      while c:call("ZCARD", "{fw}:queue") < 1 do sluice.yield() end
      srv:kill()
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert.equal("unavailable", e.kind)
      assert.equal(refused("semaphore:acquire"), e.message)
      assert.is_false(s:release(l))
      s:close()
    end)

    it("the token bucket and the lock fail fast too", function()
      local b = redis.token_bucket(c, "fb", { capacity = 2, rate = 1 })
      local lock = redis.lock(c, "fl")
      assert.is_true(b:take())
      srv:kill()
      local e = fails(b.take, b)
      assert.equal("unavailable", e.kind)
      assert_lost("redis.token_bucket:take", e.message)
      assert_lost("redis.token_bucket:try_take", fails(b.try_take, b).message)
      assert.equal("down", b.state)
      e = fails(lock.acquire, lock)
      assert.equal(refused("lock:acquire"), e.message)
      srv:revive()
      sluice.sleep(1)
      assert.is_true(b:take())
      assert.equal("shared", b.state)
      local l = lock:acquire()
      assert.equal(1, l.token)
      lock:release(l)
      b:close()
      lock:close()
    end)
  end)

  describe("with a fallback share", function()
    it("holders keep going, waiters and new callers move to the local share, and back", function()
      local seen, on_change = recorder()
      local s = redis.semaphore(c, "fs", 2, { fallback = { permits = 1 }, on_change = on_change })
      local a, b = s:acquire(), s:acquire()
      local trace = {}
      local t = sluice.spawn(function()
        local l = s:acquire()
        trace[#trace + 1] = "waiter got a " .. (l.fallback and "local" or "shared") .. " lease"
        sluice.sleep(1)
        trace[#trace + 1] = "waiter releases: " .. tostring(s:release(l))
      end)
      while c:call("ZCARD", "{fs}:queue") < 1 do sluice.yield() end
      srv:kill()
      t:await()
      assert.same({ "waiter got a local lease", "waiter releases: true" }, trace)
      assert.equal("fallback", s.state)
      assert.same({ "shared>fallback" }, seen)
      -- the share is one permit: a second caller waits for it, a try fails
      local l1 = s:acquire(0)
      assert.is_true(l1.fallback)
      assert.is_nil(l1.token)
      assert.same({ nil, "timeout" }, { s:acquire(0) })
      local t0 = sluice.now()
      assert.same({ nil, "timeout" }, { s:acquire(0.5) })
      assert.equal(0.5, sluice.now() - t0)
      assert.is_true(s:release(l1))
      assert.is_false(s:release(a))     -- shared leases lapse by themselves
      assert.is_false(s:release(b))
      assert.matches("^redis lease .*:local:%d+ %(local share, released%)$", tostring(l1))
      srv:revive()
      until_state(s, "shared")
      assert.same({ "shared>fallback", "fallback>shared" }, seen)
      local l2 = s:acquire()
      assert.is_false(l2.fallback)
      assert.equal(1, l2.token)
      assert.equal(1, s:held())
      s:release(l2)
      s:close()
    end)

    it("a lock's fallback is a local mutex without fencing tokens", function()
      local lock = redis.lock(c, "fl2", { fallback = {} })
      srv:kill()
      local l = lock:acquire()
      assert.is_true(l.fallback)
      assert.is_nil(l.token)
      assert.same({ nil, "timeout" }, { lock:acquire(0) })
      lock:release(l)
      lock:close()
    end)

    it("the token bucket takes from a local bucket of the fallback rate", function()
      local seen, on_change = recorder()
      local b = redis.token_bucket(c, "fb2", { capacity = 10, rate = 100,
        fallback = { rate = 2, capacity = 1 }, on_change = on_change })
      assert.is_true(b:take())
      srv:kill()
      local t0 = sluice.now()
      assert.is_true(b:take())            -- the local bucket's one token
      assert.is_false(b:try_take())
      assert.is_true(b:take())            -- 1 / 2 s later
      assert.equal(0.5, sluice.now() - t0)
      assert.same({ nil, "timeout" }, { b:take(1, 0.1) })
      local e = fails(b.take, b, 2)
      assert.equal("redis.token_bucket:take: n 2 exceeds the fallback capacity 1", e.message)
      assert.equal("fallback", b.state)
      srv:revive()
      until_state(b, "shared")
      assert.same({ "shared>fallback", "fallback>shared" }, seen)
      assert.is_true(b:take(5))
      c:close()
      c = redis.connect { port = srv.port }  -- the one before went with the server
      assert.equal("5", c:call("HGET", "{fb2}:bucket", "tokens"):match("^%d+"))
      b:close()
    end)
  end)

  describe("connections", function()
    it("a limiter whose client was closed goes on with a connection of its own", function()
      local s = redis.semaphore(c, "own", 1)
      c:close()
      local l = s:acquire()
      assert.equal(1, l.token)
      assert.equal("shared", s.state)
      assert.is_true(s:release(l))
      s:close()
      c = redis.connect { port = srv.port }
    end)

    it("runs on a pool of clients, destroying the ones Redis dropped", function()
      local made = 0
      local pool = sluice.pool {
        create = function() made = made + 1 return redis.connect { port = srv.port } end,
        destroy = function(cl) cl:close() end, max = 2,
      }
      local s = redis.semaphore(pool, "pooled", 2)
      local b = redis.token_bucket(pool, "pooled", { capacity = 1, rate = 1 })
      local l = s:acquire()
      assert.is_true(b:try_take())
      assert.equal(1, made)
      srv:kill()
      assert_lost("semaphore:acquire", fails(s.acquire, s).message)
      srv:revive()
      sluice.sleep(1)
      local l2 = s:acquire()
      assert.equal(1, l2.token)
      assert.equal(2, made)                -- the lost one destroyed, a new one made
      assert.is_true(s:release(l2))
      assert.is_false(s:release(l))
      s:close()
      b:close()
      pool:close()
    end)
  end)

  describe("token bucket batching", function()
    it("takes up to batch tokens per round trip and spends them locally; close gives the rest back", function()
      local function scripts()
        local info = c:call("INFO", "commandstats")
        return tonumber(info:match("cmdstat_evalsha:calls=(%d+)") or 0)
          + tonumber(info:match("cmdstat_eval:calls=(%d+)") or 0)
      end
      local b = redis.token_bucket(c, "bt", { capacity = 10, rate = 0.001, batch = 4 })
      local tokens = function() return math.floor(tonumber(c:call("HGET", "{bt}:bucket", "tokens"))) end
      assert.is_true(b:take())
      local n0 = scripts()
      assert.equal(6, tokens())
      assert.is_true(b:take())
      assert.is_true(b:take(2))
      assert.equal(n0, scripts())           -- no round trip
      assert.is_true(b:try_take(3))         -- the stock is spent: 3 more from the server
      assert.equal(2, tokens())
      assert.equal(1, b.stock)
      b:close()
      assert.equal(3, tokens())             -- the stock of 1 given back
      assert.equal("redis.token_bucket:take: the bucket is closed", fails(b.take, b).message)
    end)
  end)

  describe("arguments", function()
    it("rejects bad fallback, batch and on_change options with exact messages", function()
      local function msg(f, ...) return fails(f, ...).message end
      assert.equal("redis.semaphore: fallback must be a table (got 1)",
        msg(redis.semaphore, c, "s", 1, { fallback = 1 }))
      assert.equal('redis.semaphore: unknown fallback option "rate"',
        msg(redis.semaphore, c, "s", 1, { fallback = { rate = 1 } }))
      assert.equal("redis.semaphore: fallback.permits must be a positive integer (got nil)",
        msg(redis.semaphore, c, "s", 1, { fallback = {} }))
      assert.equal("redis.semaphore: fallback.permits must be a positive integer (got 0)",
        msg(redis.semaphore, c, "s", 1, { fallback = { permits = 0 } }))
      assert.equal("redis.semaphore: fallback.permits must be a positive integer (got 1.5)",
        msg(redis.semaphore, c, "s", 1, { fallback = { permits = 1.5 } }))
      assert.equal("redis.semaphore: on_change must be a function (got 5)",
        msg(redis.semaphore, c, "s", 1, { on_change = 5 }))
      assert.equal("redis.lock: fallback.permits must be 1 (got 2)",
        msg(redis.lock, c, "l", { fallback = { permits = 2 } }))
      assert.equal("redis.token_bucket: fallback.rate must be a finite positive number (got nil)",
        msg(redis.token_bucket, c, "b", { capacity = 1, rate = 1, fallback = {} }))
      assert.equal("redis.token_bucket: fallback.capacity must be a finite positive number (got -1)",
        msg(redis.token_bucket, c, "b", { capacity = 1, rate = 1, fallback = { rate = 1, capacity = -1 } }))
      assert.equal("redis.token_bucket: batch must be a positive integer (got 0)",
        msg(redis.token_bucket, c, "b", { capacity = 1, rate = 1, batch = 0 }))
      assert.equal("redis.token_bucket: batch must be a positive integer (got 1.5)",
        msg(redis.token_bucket, c, "b", { capacity = 1, rate = 1, batch = 1.5 }))
      assert.equal("redis.semaphore: client must be a redis client or a pool of them (got table)",
        msg(redis.semaphore, {}, "s", 1))
      assert.equal(0, c:call("DBSIZE"))     -- nothing was written
    end)
  end)
end)
