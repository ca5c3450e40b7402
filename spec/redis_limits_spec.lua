-- sluice.redis's distributed limits (lua/sluice/redis_limits.lua) against
-- real redis-server processes, and across real sluice processes
-- (spec/support/redis_worker.lua).
--
-- Lease and queue timing is on the server's clock, which is real; real
-- I/O holds the virtual clock still.  So the timing specs measure real
-- time (uv.hrtime) with wide margins, and the multi-process ones run the
-- children on the real clock.
local sluice = require "sluice"
local servers = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/redis.lua")
local uv = sluice.uv
-- require, not sluice.redis: the runner reloads modules between spec files,
-- and spec/redis_spec.lua checks that the lazy field and require agree
local redis = require "sluice.redis"
if not redis.semaphore then require("sluice.redis_limits")(redis, nil) end

local BIN = os.getenv("SLUICE_BIN") or "build/sluice"
local WORKER = (debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/redis_worker.lua"

local function real() return uv.hrtime() / 1e9 end

local fails = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua").error_of
local read = servers.read

describe("sluice.redis distributed limits", function()
  local srv, c

  setup(function() srv = servers.start() end)
  teardown(function() servers.stop_all() end)
  before_each(function()
    c = redis.connect { port = srv.port }
    c:call("FLUSHALL")
  end)
  after_each(function() c:close() end)

  describe("semaphore", function()
    it("rejects bad arguments with exact messages", function()
      local function msg(...) return fails(redis.semaphore, ...).message end
      assert.equal("redis.semaphore: permits must be a positive integer (got 0)", msg(c, "s", 0))
      assert.equal("redis.semaphore: permits must be a positive integer (got -1)", msg(c, "s", -1))
      assert.equal("redis.semaphore: permits must be a positive integer (got 1.5)", msg(c, "s", 1.5))
      assert.equal("redis.semaphore: permits must be a positive integer (got nan)", msg(c, "s", 0 / 0))
      assert.equal("redis.semaphore: permits must be a positive integer (got inf)", msg(c, "s", math.huge))
      assert.equal('redis.semaphore: permits must be a positive integer (got "3")', msg(c, "s", "3"))
      assert.equal("redis.semaphore: permits must be a positive integer (got nil)", msg(c, "s"))
      assert.equal("redis.semaphore: client must be a redis client or a pool of them (got nil)", msg(nil, "s", 1))
      assert.equal("redis.semaphore: client must be a redis client or a pool of them (got 1)", msg(1, "s", 1))
      assert.equal('redis.semaphore: name must be a non-empty string (got "")', msg(c, "", 1))
      assert.equal("redis.semaphore: name must be a non-empty string (got 5)", msg(c, 5, 1))
      assert.equal("redis.semaphore: lease must be a finite positive number (got 0)",
        msg(c, "s", 1, { lease = 0 }))
      assert.equal("redis.semaphore: lease must be a finite positive number (got inf)",
        msg(c, "s", 1, { lease = math.huge }))
      assert.equal("redis.semaphore: unknown option \"leese\"", msg(c, "s", 1, { leese = 1 }))
      assert.equal("redis.semaphore: opts must be a table (got 5)", msg(c, "s", 1, 5))
      assert.equal("invalid", fails(redis.semaphore, c, "s", 0).kind)
      local s = redis.semaphore(c, "s", 1)
      assert.equal("semaphore:acquire: timeout must be a non-negative number or nil (got -1)",
        fails(s.acquire, s, -1).message)
      assert.equal("semaphore:acquire: timeout must be a non-negative number or nil (got nan)",
        fails(s.acquire, s, 0 / 0).message)
      assert.equal("semaphore:release: lease must be a lease of this semaphore (got nil)",
        fails(s.release, s).message)
      assert.equal("semaphore:with: fn must be a function (got nil)", fails(s.with, s).message)
      assert.equal(0, s:held())   -- unchanged
      s:close()
    end)

    it("acquires up to permits, fails a try at once, releases, and hands out increasing tokens", function()
      local s = redis.semaphore(c, "s", 2, { lease = 5 })
      local a, b = s:acquire(), s:acquire()
      assert.equal(1, a.token)
      assert.equal(2, b.token)
      assert.equal(2, s:held())
      assert.same({ nil, "timeout" }, { s:acquire(0) })
      assert.is_true(s:release(a))
      assert.equal(1, s:held())
      local e = s:acquire(0)
      assert.equal(3, e.token)
      assert.is_true(s:release(b))
      assert.is_true(s:release(e))
      assert.equal("semaphore:release: lease " .. e.id .. " already released", fails(s.release, s, e).message)
      assert.equal(0, s:held())
      assert.equal('redis semaphore "s" (2 permits, shared)', tostring(s))
      s:close()
    end)

    it("with releases the permit however fn ends, and returns fn's results", function()
      local s = redis.semaphore(c, "w", 1)
      assert.same({ 1, 2 }, { s:with(function(x) return x, 2 end, 1) })
      local err = fails(s.with, s, function() error("boom", 0) end)
      assert.equal("boom", err)
      assert.equal(0, s:held())
      s:close()
    end)

    it("wakes waiters in arrival order as permits free, without polling", function()
      local s = redis.semaphore(c, "fair", 1, { lease = 5 })
      local first = s:acquire()
      local order = {}
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = sluice.spawn(function()
          local l = s:acquire()
          order[#order + 1] = i
          s:release(l)
        end)
        sluice.yield()
        -- each has queued before the next starts
        while c:call("ZCARD", "{fair}:queue") < i do sluice.yield() end
      end
      local t0 = real()
      s:release(first)
      for i = 1, 3 do tasks[i]:await() end
      assert.same({ 1, 2, 3 }, order)
      assert.is_true(real() - t0 < 0.5, "woken promptly")
      assert.equal(0, c:call("ZCARD", "{fair}:queue"))
      s:close()
    end)

    it("times out on the server's clock, leaving the queue as if never queued", function()
      local s = redis.semaphore(c, "to", 1)
      local l = s:acquire()
      local t0 = real()
      assert.same({ nil, "timeout" }, { s:acquire(0.2) })
      local took = real() - t0
      assert.is_true(took >= 0.19 and took < 0.8, "took " .. took)
      assert.equal(0, c:call("ZCARD", "{to}:queue"))
      s:release(l)
      s:close()
    end)

    it("a cancelled waiter leaves the queue; the next waiter gets the permit", function()
      local s = redis.semaphore(c, "cx", 1)
      local l = s:acquire()
      local t1 = sluice.spawn(function() return s:acquire() end)
      while c:call("ZCARD", "{cx}:queue") < 1 do sluice.yield() end
      local got
      local t2 = sluice.spawn(function() got = s:acquire() s:release(got) end)
      while c:call("ZCARD", "{cx}:queue") < 2 do sluice.yield() end
      t1:cancel()
      local ok, e = pcall(t1.await, t1)
      assert.is_false(ok)
      assert.equal("cancelled", e.kind)
      assert.equal(1, c:call("ZCARD", "{cx}:queue"))
      s:release(l)
      t2:await()
      assert.is_truthy(got)
      assert.equal(0, s:held())
      s:close()
    end)

    it("a lease not renewed expires; a waiter takes the permit; tokens keep increasing", function()
      local dead = redis.semaphore(c, "exp", 1, { lease = 0.3, renew = false })
      local s = redis.semaphore(c, "exp", 1, { lease = 5 })
      local old = dead:acquire()
      local t0 = real()
      local l = s:acquire(3)
      local took = real() - t0
      assert.is_true(took > 0.2 and took < 1.5, "took " .. took)
      assert.is_true(l.token > old.token)
      assert.is_false(dead:release(old))   -- it had expired
      assert.is_true(s:release(l))
      dead:close()
      s:close()
    end)

    it("renews a held lease while its holder holds it", function()
      local s = redis.semaphore(c, "ren", 1, { lease = 0.3 })
      local l = s:acquire()
      local other = redis.semaphore(c, "ren", 1, { lease = 0.3 })
      -- a real second, more than three lease periods; the renewals run
      -- on the (virtual) clock of this process, so move it along too
      local t0 = real()
      while real() - t0 < 1 do
        os.execute("sleep 0.05")
        sluice.sleep(0.1)
        assert.same({ nil, "timeout" }, { other:acquire(0) })
      end
      assert.is_true(s:release(l))
      local l2 = other:acquire(0)
      assert.is_truthy(l2)
      other:release(l2)
      s:close()
      other:close()
    end)

    it("runs its scripts again after SCRIPT FLUSH (NOSCRIPT falls back to EVAL and reloads)", function()
      local s = redis.semaphore(c, "fl", 1)
      s:release(s:acquire())
      c:call("SCRIPT", "FLUSH")
      c:call("CONFIG", "RESETSTAT")
      local l = s:acquire()
      assert.equal(2, l.token)
      local function calls(cmd)
        return tonumber(c:call("INFO", "commandstats"):match("cmdstat_" .. cmd .. ":calls=(%d+)") or 0)
      end
      local evals, shas = calls("eval"), calls("evalsha")
      assert.is_true(evals >= 1)
      assert.same({ nil, "timeout" }, { s:acquire(0) })   -- loaded again: EVALSHA, no EVAL
      assert.equal(evals, calls("eval"))
      assert.equal(shas + 1, calls("evalsha"))
      s:release(l)
      s:close()
    end)

    it("fails closed calls after close", function()
      local s = redis.semaphore(c, "cl", 1)
      s:close()
      assert.equal("semaphore:acquire: the limiter is closed", fails(s.acquire, s).message)
      s:close()
    end)
  end)

  describe("lock", function()
    it("is a mutex whose grants carry strictly increasing fencing tokens across an expiry", function()
      assert.equal("redis.lock: ttl must be a finite positive number (got -1)",
        fails(redis.lock, c, "l", { ttl = -1 }).message)
      local a = redis.lock(c, "L", { ttl = 0.3, renew = false })
      local b = redis.lock(c, "L", { ttl = 5 })
      local l1 = a:acquire()
      assert.same({ nil, "timeout" }, { b:acquire(0) })
      local l2 = b:acquire(3)          -- after l1 lapses
      assert.is_true(l2.token > l1.token)
      assert.is_false(a:release(l1))
      assert.is_true(b:release(l2))
      local l3 = a:acquire(0)
      assert.is_true(l3.token > l2.token)
      a:release(l3)
      a:close()
      b:close()
    end)
  end)

  describe("token_bucket", function()
    it("rejects bad arguments with exact messages", function()
      local function msg(...) return fails(redis.token_bucket, ...).message end
      assert.equal("redis.token_bucket: opts must be a table (got nil)", msg(c, "b"))
      assert.equal("redis.token_bucket: capacity must be a finite positive number (got 0)",
        msg(c, "b", { capacity = 0, rate = 1 }))
      assert.equal("redis.token_bucket: rate must be a finite positive number (got nan)",
        msg(c, "b", { capacity = 1, rate = 0 / 0 }))
      local b = redis.token_bucket(c, "b", { capacity = 2, rate = 1 })
      assert.equal("redis.token_bucket:take: n 3 exceeds the capacity 2", fails(b.take, b, 3).message)
      assert.equal("redis.token_bucket:try_take: n must be a finite positive number (got 0)",
        fails(b.try_take, b, 0).message)
    end)

    it("grants the capacity at once, then paces takers by the rate without polling", function()
      local b = redis.token_bucket(c, "b", { capacity = 3, rate = 10 })
      local t0 = sluice.now()
      for _ = 1, 3 do assert.is_true(b:take()) end
      assert.is_false(b:try_take())
      assert.same({ nil, "timeout" }, { b:take(1, 0.01) })
      assert.is_true(b:take(2))            -- sleeps about 0.2 s
      local waited = sluice.now() - t0
      assert.is_true(waited > 0.15 and waited <= 0.21, "waited " .. waited)
    end)
  end)

  describe("across processes", function()
    it("4 processes x 50 tasks never hold more than 10 permits, and all finish", function()
      local cmd = {}
      for _ = 1, 4 do
        cmd[#cmd + 1] = string.format("%s %s sem %d mp 10 50 0.03 &", BIN, WORKER, srv.port)
      end
      local t0 = real()
      local out = read("(" .. table.concat(cmd, " ") .. " wait) 2>&1")
      assert.equal("ok\nok\nok\nok\n", out)
      assert.is_true(real() - t0 < 15)
      assert.equal("10", c:call("GET", "mp:max"))
      assert.equal("200", c:call("GET", "mp:done"))
      assert.equal("0", c:call("GET", "mp:cur"))
    end)

    it("permits held by a process killed with SIGKILL come back within a lease period", function()
      local log = os.tmpname()
      local pid = tonumber(read(string.format("%s %s hold %d crash 3 3 1 > %s 2>&1 & echo $!",
        BIN, WORKER, srv.port, log)))
      for _ = 1, 250 do
        local f = io.open(log)
        local s = f and f:read("*a")
        if f then f:close() end
        if s and s:find("held") then break end
        os.execute("sleep 0.02")
      end
      local s = redis.semaphore(c, "crash", 3)
      assert.same({ nil, "timeout" }, { s:acquire(0) })
      os.execute("kill -9 " .. pid)
      local t0 = real()
      local got = {}
      for i = 1, 3 do got[i] = s:acquire(3) end
      local took = real() - t0
      assert.is_true(took < 1 + 1.2, "took " .. took)
      for i = 1, 3 do s:release(got[i]) end
      s:close()
      os.remove(log)
    end)

    -- Redis killed 1 s into a 3 s run of 2 processes, back 0.8 s later.
    local function restart_run(fallback)
      local log = os.tmpname()
      local cmd = {}
      for _ = 1, 2 do
        cmd[#cmd + 1] = string.format("%s %s restart %d rr 3 3 %d &", BIN, WORKER, srv.port, fallback)
      end
      local p = io.popen("(" .. table.concat(cmd, " ") .. " wait) > " .. log .. " 2>&1", "w")
      os.execute("sleep 1")
      srv:kill()
      os.execute("sleep 0.8")
      srv:revive()
      p:close()
      local out = read("cat " .. log)
      os.remove(log)
      c:close()
      c = redis.connect { port = srv.port }     -- the one before went with the server
      -- each process's report (spec/support/redis_worker.lua, restart)
      local reports = {}
      for shared, loc, failed, events, after in
          out:gmatch("shared=(%d+) local=(%d+) failed=(%d+) events=(%S+) after=(%a+)\nok\n") do
        reports[#reports + 1] = { shared = tonumber(shared), ["local"] = tonumber(loc),
          failed = tonumber(failed), events = events, after = after }
      end
      assert.equal(2, #reports, out)
      return reports, out
    end

    it("a Redis restart mid-run: callers fail fast meanwhile, then go on", function()
      local reports, out = restart_run(0)
      for _, r in ipairs(reports) do
        assert.is_true(r.shared > 20 and r["local"] == 0 and r.failed > 0, out)
        assert.equal("shared>down,down>shared", r.events)
        assert.equal("shared", r.after)
      end
    end)

    it("a Redis restart mid-run: with a fallback share, callers go on locally, then shared again", function()
      local reports, out = restart_run(1)
      for _, r in ipairs(reports) do
        assert.is_true(r.shared > 20 and r["local"] > 5 and r.failed == 0, out)
        assert.equal("shared>fallback,fallback>shared", r.events)
        assert.equal("shared", r.after)
      end
    end)

    -- The bound checked on the server's times of the grants: in any span
    -- [t1, t2], at most capacity + rate * (t2 - t1) grants.  A time is
    -- stamped just after its grant, late by up to a round trip, so one
    -- grant per process of slack; with batch = k, a process may spend up
    -- to k - 1 tokens it took earlier, so k per process.
    local function check_bucket_run(key, slack, cap, rate, secs)
      local times = c:call("LRANGE", key .. ":times", 0, -1)
      for i = 1, #times do times[i] = tonumber(times[i]) end
      table.sort(times)
      local n = #times
      assert.equal(n, tonumber(c:call("GET", key .. ":taken")))
      -- a full bucket, then secs at the rate; each process may take one
      -- more reservation that ends after its last second
      local expected = cap + rate * secs
      assert.is_true(math.abs(n - expected) <= expected * 0.05, "taken " .. n .. ", expected " .. expected)
      local worst = -math.huge
      for i = 1, n do
        for j = i, n do
          worst = math.max(worst, (j - i + 1) - (cap + rate * (times[j] - times[i])))
        end
      end
      assert.is_true(worst <= slack, "a span held " .. worst .. " grants over capacity + rate * t")
    end

    it("4 processes share a bucket's rate within 5% over 10 s, never above capacity + rate * t", function()
      local cmd = {}
      for _ = 1, 4 do
        cmd[#cmd + 1] = string.format("%s %s bucket %d rb 5 100 10 &", BIN, WORKER, srv.port)
      end
      local out = read("(" .. table.concat(cmd, " ") .. " wait) 2>&1")
      assert.equal("ok\nok\nok\nok\n", out)
      check_bucket_run("rb", 4, 5, 100, 10)
    end)

    it("with batch = 8 the same bounds hold across 4 processes", function()
      local cmd = {}
      for _ = 1, 4 do
        cmd[#cmd + 1] = string.format("%s %s bucket %d bb 5 100 3 8 &", BIN, WORKER, srv.port)
      end
      local out = read("(" .. table.concat(cmd, " ") .. " wait) 2>&1")
      assert.equal("ok\nok\nok\nok\n", out)
      check_bucket_run("bb", 4 * 8, 5, 100, 3)
    end)
  end)
end)
