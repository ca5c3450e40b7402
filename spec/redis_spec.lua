-- sluice.redis against real redis-server processes (spec/support/redis.lua
-- starts one for this file, and more for the AUTH and crash cases).
--
-- The specs run on the virtual clock, and real I/O does not move it: while
-- a reply is outstanding the client counts as loop activity, so virtual
-- time stands still, and the client's own timeouts run on the real clock.
-- Hence the timeout specs check that sluice.now() did not move, and use
-- real delays with wide margins (DEBUG SLEEP 0.2 against a 0.05 s bound).
local sluice = require "sluice"
local servers = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/redis.lua")
local uv = sluice.uv

local BIN = os.getenv("SLUICE_BIN") or "build/sluice"

local function count_refs()
  local n = 0
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "number" and k >= 1 and type(v) ~= "number" then n = n + 1 end
  end
  return n
end

-- pcall that returns the error object (asserting it failed).
local function fails(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return e
end

describe("sluice.redis", function()
  local redis = sluice.redis
  local srv

  setup(function() srv = servers.start() end)
  teardown(function() servers.stop_all() end)

  local function connect(opts)
    opts = opts or {}
    opts.port = opts.port or srv.port
    return redis.connect(opts)
  end

  it("is the module require returns, loaded on first use", function()
    assert.equal(require "sluice.redis", redis)
    assert.equal("userdata", type(redis.null))
    assert.equal("function", type(redis.connect))
  end)

  it("connects, answers each reply type, and closes", function()
    local c = connect()
    finally(function() c:close() end)
    assert.is_true(c.connected)
    assert.equal(0, c.pending)
    assert.equal("127.0.0.1", c.host)
    assert.equal(srv.port, c.port)
    assert.equal("redis client 127.0.0.1:" .. srv.port .. " (connected, 0 pending)", tostring(c))
    assert.equal("PONG", c:call("PING"))
    assert.equal("OK", c:call("SET", "k", "v"))
    assert.equal("v", c:call("GET", "k"))
    assert.is_nil(c:call("GET", "missing"))
    assert.equal(1, c:call("INCR", "n"))
    assert.equal(2, c:call("INCR", "n"))
    assert.equal(2, c:call("DEL", "k", "n", "missing"))
    assert.equal(3, c:call("LPUSH", "list", "a", "b", "c"))
    assert.same({ "c", "b", "a" }, c:call("LRANGE", "list", 0, -1))
    assert.same({}, c:call("LRANGE", "missing", 0, -1))
    c:call("SET", "k1", "one")
    assert.same({ "one", redis.null, "one" }, c:call("MGET", "k1", "missing", "k1"))
    assert.equal(2, c:call("HSET", "h", "f1", "v1", "f2", "v2"))
    assert.same({ "f1", "v1", "f2", "v2" }, c:call("HGETALL", "h"))
    -- numbers are sent as Redis reads them: integers without ".0"
    c:call("SET", "num", 42)
    assert.equal("42", c:call("GET", "num"))
    c:call("SET", "num", 2 ^ 53)
    assert.equal("9007199254740992", c:call("GET", "num"))
    c:call("SET", "num", 1.5)
    assert.equal("1.5", c:call("GET", "num"))
    c:call("SET", "num", 0.1)
    assert.equal("0.1", c:call("GET", "num"))
    c:call("SET", "num", -7)
    assert.equal("-7", c:call("GET", "num"))
    assert.equal("", c:call("ECHO", ""))
    assert.equal("a\0b", c:call("ECHO", "a\0b"))
    -- nested arrays; nil inside an array is redis.null
    assert.same({ 1, { 2, "x", redis.null } }, c:call("EVAL", "return {1, {2, 'x', false}}", 0))
    c:call("DEL", "list", "k1", "h", "num")
    c:close()
    assert.is_false(c.connected)
  end)

  it("turns an error element of an array into an error object", function()
    local c = connect()
    finally(function() c:close() end)
    assert.equal("OK", c:call("MULTI"))
    assert.equal("QUEUED", c:call("SET", "s", "text"))
    assert.equal("QUEUED", c:call("INCR", "s"))
    local r = c:call("EXEC")
    assert.equal("OK", r[1])
    assert.is_true(sluice.is_error(r[2], "redis"))
    assert.equal("ERR value is not an integer or out of range", r[2].message)
    c:call("DEL", "s")
  end)

  it("raises an error reply with kind redis and the server's message", function()
    local c = connect()
    finally(function() c:close() end)
    c:call("SET", "str", "text")
    local e = fails(c.call, c, "INCR", "str")
    assert.equal("redis", e.kind)
    assert.equal("ERR value is not an integer or out of range", e.message)
    e = fails(c.call, c, "NOSUCHCOMMAND")
    assert.equal("redis", e.kind)
    assert.matches("^ERR unknown command 'NOSUCHCOMMAND'", e.message)
    -- the connection goes on
    assert.equal("text", c:call("GET", "str"))
    assert.equal(0, c.pending)
    c:call("DEL", "str")
  end)

  it("pipelines 100 concurrent tasks on one connection, each reply to its caller", function()
    local c = connect()
    finally(function() c:close() end)
    c:call("DEL", "counter")
    local tasks, ids = {}, {}
    for i = 1, 100 do
      tasks[i] = sluice.spawn(function()
        local n = c:call("INCR", "counter")
        ids[i] = c:call("CLIENT", "ID")
        return n
      end)
    end
    sluice.yield()   -- every task has sent its INCR and waits
    assert.equal(100, c.pending)
    for i = 1, 100 do assert.equal(i, tasks[i]:await()) end
    local mine = c:call("CLIENT", "ID")
    for i = 1, 100 do assert.equal(mine, ids[i]) end
    assert.equal(0, c.pending)
    assert.equal("100", c:call("GET", "counter"))
    c:call("DEL", "counter")
  end)

  it("serves 500 tasks through a pool of 5 clients under load, no client shared at once", function()
    local made, closed = 0, 0
    local pool = sluice.pool{
      create = function() made = made + 1 return connect() end,
      destroy = function(c) closed = closed + 1 c:close() end,
      max = 5, acquire_timeout = 30,
    }
    local c0 = connect()
    finally(function() c0:close() end)
    c0:call("DEL", "pooled")
    local inside, peak = {}, 0
    sluice.scope(function(s)
      for i = 1, 500 do
        s:spawn(function()
          pool:with(function(c)
            assert.is_nil(inside[c])   -- a client is lent to one task at a time
            inside[c] = true
            c:call("INCR", "pooled")
            c:call("SET", "pooled:" .. i, i)
            inside[c] = nil
          end)
          if pool.active > peak then peak = pool.active end
        end)
      end
    end)
    assert.equal("500", c0:call("GET", "pooled"))
    assert.equal("500", c0:call("GET", "pooled:500"))
    assert.is_true(peak <= 5)
    assert.equal(5, made)
    assert.is_true(pool:close())
    assert.equal(5, closed)
    assert.equal(0, pool.size)
  end)

  it("selects the db given", function()
    local c1, c0 = connect { db = 1 }, connect()
    finally(function() c1:close(); c0:close() end)
    c1:call("SET", "in1", "x")
    assert.equal("x", c1:call("GET", "in1"))
    assert.is_nil(c0:call("GET", "in1"))
    c1:call("DEL", "in1")
    local e = fails(connect, { db = 100 })
    assert.equal("redis", e.kind)
    assert.equal("redis.connect: 127.0.0.1:" .. srv.port .. ": ERR DB index is out of range", e.message)
  end)

  describe("with a password", function()
    local locked
    setup(function() locked = servers.start { "--requirepass", "s3cret" } end)
    teardown(function() locked:stop() end)

    it("authenticates, and fails with the server's message on a wrong password", function()
      local c, anon = redis.connect { port = locked.port, password = "s3cret", db = 2 }, nil
      finally(function()
        c:close()
        if anon then anon:close() end
      end)
      assert.equal("PONG", c:call("PING"))
      local refs = count_refs()
      local e = fails(redis.connect, { port = locked.port, password = "wrong" })
      assert.equal("redis", e.kind)
      assert.equal("redis.connect: 127.0.0.1:" .. locked.port ..
        ": WRONGPASS invalid username-password pair or user is disabled.", e.message)
      assert.equal(refs, count_refs())
      anon = redis.connect { port = locked.port }
      e = fails(anon.call, anon, "GET", "k")
      assert.equal("redis", e.kind)
      assert.equal("NOAUTH Authentication required.", e.message)
    end)
  end)

  it("fails to connect where nothing listens, naming host and port", function()
    local port = servers.free_port()
    local t0 = sluice.now()
    local e = fails(redis.connect, { port = port, connect_timeout = 1 })
    assert.equal("redis", e.kind)
    assert.equal("redis.connect: 127.0.0.1:" .. port .. ": connection refused", e.message)
    assert.equal(t0, sluice.now())
  end)

  it("resolves a host name off the loop's thread, then connects to it", function()
    local c = redis.connect { host = "localhost", port = srv.port }
    assert.equal("localhost", c.host)
    assert.equal("PONG", c:call("PING"))
    c:close()
    local port = servers.free_port()
    local e = fails(redis.connect, { host = "localhost", port = port })
    assert.equal("redis.connect: localhost:" .. port .. ": connection refused", e.message)
  end)

  it("a connect cancelled while the host name is resolved leaves nothing behind", function()
    local t = sluice.spawn(redis.connect, { host = "localhost", port = srv.port })
    sluice.yield()
    t:cancel()
    local ok, e = pcall(t.await, t)
    assert.is_false(ok)
    assert.equal("cancelled", e.kind)
  end)

  it("bounds the connect with connect_timeout (AUTH to a server that never answers)", function()
    local server = uv.new_tcp()
    local peers = {}
    finally(function()
      for _, p in ipairs(peers) do p:close() end
      server:close()
    end)
    assert(server:bind("127.0.0.1", 0))
    server:listen(8, function()
      local p = uv.new_tcp()
      server:accept(p)
      peers[#peers + 1] = p
    end)
    local port = server:getsockname().port
    local t0 = sluice.now()
    local e = fails(redis.connect, { port = port, password = "x", connect_timeout = 0.05 })
    assert.equal("timeout", e.kind)
    assert.equal("redis.connect: 127.0.0.1:" .. port .. ": timed out after 0.05 s", e.message)
    assert.equal(t0, sluice.now())   -- a real-clock bound: virtual time stood still
  end)

  it("stops connecting at once when the connecting task is cancelled", function()
    local server = uv.new_tcp()
    local peers = {}
    finally(function()
      for _, p in ipairs(peers) do p:close() end
      server:close()
    end)
    assert(server:bind("127.0.0.1", 0))
    server:listen(8, function()
      local p = uv.new_tcp()
      server:accept(p)
      peers[#peers + 1] = p
    end)
    local port = server:getsockname().port
    local refs = count_refs()
    local t = sluice.spawn(function() return redis.connect { port = port, password = "x" } end)
    sluice.yield()
    assert.equal("waiting", t.status)
    assert.equal(refs + 1, count_refs())   -- the client being connected
    t:cancel()
    local e = fails(t.await, t)
    assert.equal("cancelled", e.kind)
    assert.equal(refs, count_refs())
  end)

  it("times out a call with command_timeout and drops its late reply", function()
    local c = connect { command_timeout = 0.05 }
    finally(function() c:close() end)
    local t0 = sluice.now()
    local e = fails(c.call, c, "DEBUG", "SLEEP", "0.2")
    assert.equal("timeout", e.kind)
    assert.equal("redis:call: timed out after 0.05 s", e.message)
    assert.equal(0, c.pending)
    assert.is_true(c.connected)
    -- DEBUG's late "OK" is dropped, and so is the late reply of every
    -- call that timed out behind it: each caller gets its own reply
    local got, timeouts = nil, 0
    for i = 1, 20 do
      local ok, r = pcall(c.call, c, "ECHO", "call " .. i)
      if ok then
        got = { i, r }
        break
      end
      assert.equal("timeout", r.kind)
      timeouts = timeouts + 1
    end
    assert.is_true(timeouts >= 1 and timeouts < 20)
    assert.same({ timeouts + 1, "call " .. (timeouts + 1) }, got)
    assert.equal(t0, sluice.now())
  end)

  it("stops waiting at once when the caller is cancelled; the reply is dropped", function()
    local c, other = connect(), connect()
    finally(function() c:close(); other:close() end)
    other:call("DEL", "q")
    local trace = {}
    local t = sluice.spawn(function()
      local ok, e = pcall(c.call, c, "BLPOP", "q", 0)
      trace[#trace + 1] = ok and "returned" or e.kind
      error(e, 0)
    end)
    sluice.yield()
    assert.equal(1, c.pending)
    t:cancel("enough")
    assert.equal(0, c.pending)
    local e = fails(t.await, t)
    assert.equal("cancelled", e.kind)
    assert.same({ "cancelled" }, trace)
    -- the BLPOP is still served (it takes the element), its reply dropped
    assert.equal(1, other:call("LPUSH", "q", "x"))
    assert.equal("PONG", c:call("PING"))
    assert.equal(0, other:call("LLEN", "q"))
  end)

  -- Seeded random schedules: tasks pipelining ECHOs of unique payloads,
  -- some cancelled before sending, while waiting, or after others
  -- finished.  Each reply must reach its own caller, and nothing stays
  -- pending.  SLUICE_PROPERTY_SCHEDULES sets the count (10,000 by
  -- default: some 2 s of real round trips).
  it("delivers every reply to its own caller under random cancellations", function()
    local c = connect()
    finally(function() c:close() end)
    local schedules = tonumber(os.getenv("SLUICE_PROPERTY_SCHEDULES")) or 10000
    local state
    local function random(n)   -- a local LCG: the global generator is left alone
      state = (state * 1103515245 + 12345) % 2147483648
      return math.floor(state / 65536) % n + 1
    end
    local delivered, cancelled = 0, 0
    for seed = 1, schedules do
      state = seed
      local n, tasks = random(20), {}
      for i = 1, n do
        tasks[i] = sluice.spawn(function()
          for j = 1, random(3) do
            local want = seed .. ":" .. i .. ":" .. j
            local got = c:call("ECHO", want)
            if got ~= want then error("seed " .. seed .. ": " .. want .. " got " .. tostring(got)) end
            delivered = delivered + 1
          end
        end)
      end
      for _ = 1, random(4) - 1 do
        local how = random(3)
        if how == 2 then
          sluice.yield()
        elseif how == 3 then
          local other = tasks[random(n)]
          pcall(other.await, other)
        end
        tasks[random(n)]:cancel()
      end
      for i = 1, n do
        local ok, e = pcall(tasks[i].await, tasks[i])
        if not ok then
          assert.equal("cancelled", e.kind, "seed " .. seed .. ": " .. tostring(e))
          cancelled = cancelled + 1
        end
      end
      assert.equal(0, c.pending)
    end
    assert.equal("end", c:call("ECHO", "end"))
    assert.is_true(delivered > schedules and cancelled > schedules / 10,
      ("%d delivered, %d cancelled"):format(delivered, cancelled))
  end)

  it("does not send a call made with a cancellation pending", function()
    local c = connect()
    finally(function() c:close() end)
    c:call("DEL", "never")
    local t = sluice.spawn(function()
      sluice.current():cancel()   -- pending: raised at the next wait
      c:call("SET", "never", "x")
    end)
    local e = fails(t.await, t)
    assert.equal("cancelled", e.kind)
    assert.is_nil(c:call("GET", "never"))
  end)

  it("fails pending calls with kind closed on close; close is idempotent", function()
    local c = connect()
    local results = {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = sluice.spawn(function()
        local ok, e = pcall(c.call, c, "BLPOP", "nothing", 0)
        results[i] = ok and "returned" or e.kind .. ": " .. e.message
      end)
    end
    sluice.yield()
    assert.equal(3, c.pending)
    c:close()
    assert.equal(0, c.pending)
    assert.is_false(c.connected)
    c:close()
    for i = 1, 3 do tasks[i]:await() end
    for i = 1, 3 do
      assert.equal("closed: redis:call: client closed while waiting for the reply", results[i])
    end
    local e = fails(c.call, c, "PING")
    assert.equal("closed", e.kind)
    assert.equal("redis:call: client is closed", e.message)
  end)

  it("fails every pending call when the server dies, and later calls at once", function()
    local doomed = servers.start()
    local c, watcher = redis.connect { port = doomed.port }, redis.connect { port = doomed.port }
    finally(function() c:close(); watcher:close() end)
    local results, tasks = {}, {}
    for i = 1, 2 do
      tasks[i] = sluice.spawn(function()
        local ok, e = pcall(c.call, c, "BLPOP", "nothing", 0)
        results[i] = ok and "returned" or e.kind .. ": " .. e.message
      end)
    end
    -- wait (real time) until the server has both BLPOPs blocked
    for _ = 1, 200 do
      if watcher:call("INFO", "clients"):find("blocked_clients:2", 1, true) then break end
    end
    doomed:kill()
    for i = 1, 2 do tasks[i]:await() end
    for i = 1, 2 do
      assert.equal("redis: redis: connection lost (server closed the connection)", results[i])
    end
    assert.is_false(c.connected)
    assert.equal(0, c.pending)
    local e = fails(c.call, c, "PING")
    assert.equal("redis", e.kind)
    assert.equal("redis:call: connection lost (server closed the connection)", e.message)
    -- the idle client noticed too, without a call
    for _ = 1, 100 do
      if not watcher.connected then break end
      sluice.sleep(0)
    end
    assert.is_false(watcher.connected)
    e = fails(watcher.call, watcher, "PING")
    assert.equal("redis:call: connection lost (server closed the connection)", e.message)
  end)

  it("rejects bad options with exact messages", function()
    local cases = {
      { 5, "redis.connect: opts must be a table (got 5)" },
      { { port = 0 }, "redis.connect: port must be an integer in 1..65535 (got 0)" },
      { { port = -1 }, "redis.connect: port must be an integer in 1..65535 (got -1)" },
      { { port = 1.5 }, "redis.connect: port must be an integer in 1..65535 (got 1.5)" },
      { { port = 0 / 0 }, "redis.connect: port must be an integer in 1..65535 (got nan)" },
      { { port = math.huge }, "redis.connect: port must be an integer in 1..65535 (got inf)" },
      { { port = "6379" }, "redis.connect: port must be an integer in 1..65535 (got \"6379\")" },
      { { host = 1 }, "redis.connect: host must be a non-empty string (got 1)" },
      { { host = "" }, "redis.connect: host must be a non-empty string (got \"\")" },
      { { password = true }, "redis.connect: password must be a string (got boolean)" },
      { { db = -1 }, "redis.connect: db must be a non-negative integer (got -1)" },
      { { db = 1.5 }, "redis.connect: db must be a non-negative integer (got 1.5)" },
      { { connect_timeout = 0 }, "redis.connect: connect_timeout must be a finite positive number (got 0)" },
      { { connect_timeout = -1 }, "redis.connect: connect_timeout must be a finite positive number (got -1)" },
      { { command_timeout = 0 / 0 }, "redis.connect: command_timeout must be a finite positive number (got nan)" },
      { { command_timeout = math.huge }, "redis.connect: command_timeout must be a finite positive number (got inf)" },
      { { command_timeout = "1" }, "redis.connect: command_timeout must be a finite positive number (got \"1\")" },
      { { prot = 1 }, "redis.connect: unknown option \"prot\"" },
    }
    for _, case in ipairs(cases) do
      local e = fails(redis.connect, case[1])
      assert.equal("invalid", e.kind)
      assert.equal(case[2], e.message)
    end
  end)

  it("rejects bad call arguments with exact messages, the client unchanged", function()
    local c = connect()
    finally(function() c:close() end)
    local cases = {
      { function() return c:call() end, "redis:call: argument 1 must be a string or a number (got no value)" },
      { function() return c:call({}) end, "redis:call: argument 1 must be a string or a number (got table)" },
      { function() return c:call("SET", "k", {}) end,
        "redis:call: argument 3 must be a string or a number (got table)" },
      { function() return c:call("SET", nil, "v") end,
        "redis:call: argument 2 must be a string or a number (got nil)" },
      { function() return c:call("SET", "k", true) end,
        "redis:call: argument 3 must be a string or a number (got boolean)" },
      { function() return c:call("GET", print) end,
        "redis:call: argument 2 must be a string or a number (got function)" },
    }
    for _, case in ipairs(cases) do
      local e = fails(case[1])
      assert.equal("invalid", e.kind)
      assert.equal(case[2], e.message)
    end
    local e = fails(c.call, {}, "PING")
    assert.equal("invalid", e.kind)
    assert.equal("redis:call: expected a redis client (got table)", e.message)
    e = fails(c.close, "x")
    assert.equal("redis:close: expected a redis client (got string)", e.message)
    e = fails(table.sort, { 1, 2 }, function() return c:call("PING") == "x" end)
    assert.equal("invalid", e.kind)
    assert.equal("redis:call: cannot block here (inside a C call such as a table.sort comparator" ..
      " or a string.gsub callback)", e.message)
    assert.equal(0, c.pending)
    assert.equal("PONG", c:call("PING"))
  end)

  it("leaves no registry reference behind after close", function()
    local refs = count_refs()
    local c = connect()
    assert.equal(refs + 1, count_refs())   -- the open client is anchored
    local t = sluice.spawn(function() return c:call("BLPOP", "nothing", 0) end)
    sluice.yield()
    c:close()
    pcall(t.await, t)
    assert.equal("PONG", (function()
      local c2 = connect()
      local r = c2:call("PING")
      c2:close()
      return r
    end)())
    assert.equal(refs, count_refs())
  end)

  it("makes the leak check fail for a test that leaves a client open", function()
    local dir = os.tmpname()
    os.remove(dir)
    local r = os.execute("mkdir -p " .. dir)
    assert(r == 0 or r == true)
    local path = dir .. "/open_spec.lua"
    local f = assert(io.open(path, "w"))
    f:write(string.format([[
      local sluice = require "sluice"
      it("forgets to close", function()
        sluice.redis.connect { port = %d }
      end)
    ]], srv.port))
    f:close()
    local p = assert(io.popen("SLUICE_BIN=" .. BIN .. " " .. BIN ..
      " --virtual-time spec/runner.lua " .. path .. " 2>&1; echo \"exit=$?\""))
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. dir)
    assert.matches("leak check: registry references not back to baseline", out, 1, true)
    assert.matches("0 passed, 1 failed", out, 1, true)
    assert.matches("exit=1", out, 1, true)
  end)
end)
