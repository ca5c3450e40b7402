-- sluice.channel: send, recv, try_send, try_recv, close, iter, fields,
-- stats; buffered and rendezvous hand-off, FIFO order on both sides,
-- close while senders and receivers wait, cancellation while waiting and
-- right after a hand-off, timeouts on the virtual clock, bad arguments.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of = util.tracer, util.error_of

local function fields(ch)
  return { capacity = ch.capacity, count = ch.count, closed = ch.closed,
           waiting_senders = ch.waiting_senders, waiting_receivers = ch.waiting_receivers }
end

local function pack(...) return { n = select("#", ...), ... } end

describe("sluice.channel", function()
  it("buffers up to its capacity without blocking", function()
    local ch = sluice.channel(3)
    assert.same({ capacity = 3, count = 0, closed = false, waiting_senders = 0, waiting_receivers = 0 }, fields(ch))
    local t0 = sluice.now()
    assert.is_true(ch:send("a"))
    assert.is_true(ch:send(false))
    assert.is_true(ch:try_send(3))
    assert.is_false(ch:try_send(4))
    assert.equal("channel (3/3 buffered, 0 senders and 0 receivers waiting)", tostring(ch))
    assert.same(pack("a"), pack(ch:recv()))
    assert.same(pack(false), pack(ch:recv()))
    assert.same(pack(3), pack(ch:try_recv()))
    assert.same(pack(nil, "empty"), pack(ch:try_recv()))
    assert.equal(t0, sluice.now())
    assert.equal(0, ch.count)
  end)

  it("defaults to capacity 0: a rendezvous", function()
    local trace, log = tracer()
    local ch = sluice.channel()
    assert.equal(0, ch.capacity)
    assert.is_false(ch:try_send(1))
    local s = sluice.spawn(function()
      log("send 1")
      ch:send(1)
      log("sent 1 at " .. sluice.now())
      ch:send(2)
      log("sent 2 at " .. sluice.now())
    end)
    sluice.yield()
    assert.same({ capacity = 0, count = 0, closed = false, waiting_senders = 1, waiting_receivers = 0 }, fields(ch))
    local t0 = sluice.now()
    sluice.sleep(1)
    log("recv " .. ch:recv())
    sluice.sleep(1)
    log("recv " .. ch:recv())
    s:await()
    assert.same({ "send 1", "recv 1", "sent 1 at " .. t0 + 1, "recv 2", "sent 2 at " .. t0 + 2 }, trace)
  end)

  it("hands a value straight to the head waiting receiver (FIFO among receivers)", function()
    local trace, log = tracer()
    local ch = sluice.channel(5)
    local rs = {}
    for i = 1, 3 do
      rs[i] = sluice.spawn(function() log("r" .. i .. " " .. ch:recv()) end)
    end
    sluice.yield()
    assert.equal(3, ch.waiting_receivers)
    ch:send("x")
    ch:send("y")
    assert.equal(0, ch.count)            -- handed over, not buffered
    assert.equal(1, ch.waiting_receivers)
    ch:send("z")
    for i = 1, 3 do rs[i]:await() end
    assert.same({ "r1 x", "r2 y", "r3 z" }, trace)
  end)

  it("admits blocked senders in the order they queued as room frees", function()
    local trace, log = tracer()
    local ch = sluice.channel(1)
    ch:send(0)
    local ss = {}
    for i = 1, 3 do
      ss[i] = sluice.spawn(function() ch:send(i) log("sent " .. i) end)
    end
    sluice.yield()
    assert.same({ capacity = 1, count = 1, closed = false, waiting_senders = 3, waiting_receivers = 0 }, fields(ch))
    for _ = 1, 4 do log("got " .. ch:recv()) end
    for i = 1, 3 do ss[i]:await() end
    -- every recv lets the head sender's value into the buffer at once
    assert.same({ "got 0", "got 1", "got 2", "got 3", "sent 1", "sent 2", "sent 3" }, trace)
  end)

  it("a newcomer never overtakes a queued sender", function()
    local ch = sluice.channel(1)
    ch:send("first")
    local s = sluice.spawn(function() ch:send("queued") end)
    sluice.yield()
    assert.equal("first", ch:recv())     -- "queued" moves into the buffer
    assert.is_false(ch:try_send("newcomer"))
    assert.equal("queued", ch:recv())
    s:await()
  end)

  it("rejects nil values and keeps false", function()
    local ch = sluice.channel(1)
    assert.equal("channel:send: value must not be nil", error_of(ch.send, ch, nil).message)
    assert.equal("channel:try_send: value must not be nil", error_of(ch.try_send, ch).message)
    assert.equal(0, ch.count)
    ch:send(false)
    assert.same(pack(false), pack(ch:recv()))
  end)
end)

describe("channel:close", function()
  it("wakes waiting receivers with nil, \"closed\"", function()
    local trace, log = tracer()
    local ch = sluice.channel(2)
    local rs = {}
    for i = 1, 2 do
      rs[i] = sluice.spawn(function()
        local v, why = ch:recv()
        log(i .. " " .. tostring(v) .. " " .. why)
      end)
    end
    sluice.yield()
    ch:close()
    ch:close()                            -- idempotent
    assert.same({ capacity = 2, count = 0, closed = true, waiting_senders = 0, waiting_receivers = 0 }, fields(ch))
    for i = 1, 2 do rs[i]:await() end
    assert.same({ "1 nil closed", "2 nil closed" }, trace)
    assert.equal("channel (0/2 buffered, 0 senders and 0 receivers waiting, closed)", tostring(ch))
  end)

  it("lets receivers drain what is buffered, then gives nil, \"closed\"", function()
    local ch = sluice.channel(3)
    ch:send(1)
    ch:send(2)
    ch:close()
    assert.equal(1, ch:recv())
    assert.equal(2, ch:try_recv())
    assert.same(pack(nil, "closed"), pack(ch:recv()))
    assert.same(pack(nil, "closed"), pack(ch:try_recv()))
    assert.same(pack(nil, "closed"), pack(ch:recv(1)))
  end)

  it("makes blocked senders raise a closed error, and later sends raise at once", function()
    local trace, log = tracer()
    local ch = sluice.channel(1)
    ch:send("kept")
    local ss = {}
    for i = 1, 2 do
      ss[i] = sluice.spawn(function()
        local ok, err = pcall(ch.send, ch, i)
        log(i .. " " .. err.kind .. ": " .. err.message)
      end)
    end
    sluice.yield()
    ch:close()
    for i = 1, 2 do ss[i]:await() end
    assert.same({ "1 closed: channel:send: the channel is closed", "2 closed: channel:send: the channel is closed" }, trace)
    local err = error_of(ch.send, ch, 3)
    assert.same({ "closed", "channel:send: the channel is closed" }, { err.kind, err.message })
    err = error_of(ch.try_send, ch, 3)
    assert.same({ "closed", "channel:try_send: the channel is closed" }, { err.kind, err.message })
    assert.equal("kept", ch:recv())       -- the blocked senders' values were not delivered
    assert.same(pack(nil, "closed"), pack(ch:recv()))
  end)

  it("ends a for loop over ch:iter()", function()
    local trace, log = tracer()
    local ch = sluice.channel(1)
    local consumer = sluice.spawn(function()
      for v in ch:iter() do log(v) end
      log("end")
    end)
    for i = 1, 3 do ch:send(i) end
    ch:close()
    consumer:await()
    assert.same({ 1, 2, 3, "end" }, trace)
  end)
end)

describe("channel timeouts", function()
  it("recv(timeout) gives nil, \"timeout\" after exactly the timeout", function()
    local ch = sluice.channel(1)
    local t0 = sluice.now()
    assert.same(pack(nil, "timeout"), pack(ch:recv(2.5)))
    assert.equal(t0 + 2.5, sluice.now())
    assert.same(pack(nil, "timeout"), pack(ch:recv(0)))
    assert.equal(t0 + 2.5, sluice.now())
    assert.equal(0, ch.waiting_receivers)
    assert.equal(1, ch:stats().recv.timeouts)
  end)

  it("send(v, timeout) gives nil, \"timeout\" and the value is never delivered", function()
    local ch = sluice.channel(1)
    ch:send("a")
    local t0 = sluice.now()
    assert.same(pack(nil, "timeout"), pack(ch:send("b", 1.5)))
    assert.equal(t0 + 1.5, sluice.now())
    assert.same(pack(nil, "timeout"), pack(ch:send("c", 0)))
    assert.equal(0, ch.waiting_senders)
    assert.equal("a", ch:recv())
    assert.same(pack(nil, "empty"), pack(ch:try_recv()))
  end)

  it("a value before the deadline disarms the timer", function()
    local ch = sluice.channel()
    local r = sluice.spawn(function() return ch:recv(5), sluice.now() end)
    sluice.sleep(1)
    local t1 = sluice.now()
    ch:send("v")
    local v, at = r:await()
    assert.same({ "v", t1 }, { v, at })
    assert.equal(0, sluice.stats().timers - 1)   -- only the runner's watchdog
  end)

  it("a receiver that timed out does not take a later value: the next one does", function()
    local trace, log = tracer()
    local ch = sluice.channel()
    local t0 = sluice.now()
    local a = sluice.spawn(function() local v, why = ch:recv(1) log("a " .. tostring(v) .. " " .. why .. " " .. sluice.now() - t0) end)
    local b = sluice.spawn(function() log("b " .. ch:recv() .. " " .. sluice.now() - t0) end)
    sluice.sleep(2)
    ch:send("v")
    a:await()
    b:await()
    assert.same({ "a nil timeout 1", "b v 2" }, trace)
  end)
end)

describe("channel cancellation", function()
  it("of a waiting receiver leaves the queue as if it had never been there", function()
    local trace, log = tracer()
    local ch = sluice.channel()
    local rs = {}
    for i = 1, 3 do
      rs[i] = sluice.spawn(function()
        local ok, v = pcall(ch.recv, ch)
        log(i .. " " .. (ok and v or v.kind))
      end)
    end
    sluice.yield()
    rs[2]:cancel()
    sluice.yield()
    assert.equal(2, ch.waiting_receivers)
    ch:send("x")
    ch:send("y")
    for i = 1, 3 do rs[i]:await() end
    assert.same({ "2 cancelled", "1 x", "3 y" }, trace)
    assert.equal(1, ch:stats().recv.cancelled)
  end)

  it("of a waiting sender withdraws its value", function()
    local ch = sluice.channel(1)
    ch:send(1)
    local s2 = sluice.spawn(function() ch:send(2) end)
    local s3 = sluice.spawn(function() ch:send(3) end)
    sluice.yield()
    s2:cancel()
    assert.equal("cancelled", select(2, pcall(s2.await, s2)).kind)
    assert.equal(1, ch.waiting_senders)
    assert.equal(1, ch:recv())
    assert.equal(3, ch:recv())
    s3:await()
    assert.same(pack(nil, "empty"), pack(ch:try_recv()))
  end)

  it("right after a hand-off passes the value on to the next receiver", function()
    local trace, log = tracer()
    local ch = sluice.channel(2)
    local r1 = sluice.spawn(function()
      local ok, v = pcall(ch.recv, ch)
      log("r1 " .. (ok and v or v.kind))
    end)
    local r2 = sluice.spawn(function() log("r2 " .. ch:recv()) end)
    sluice.yield()
    ch:send("a")                          -- handed to r1, which has not run yet
    r1:cancel()
    r1:await()
    r2:await()
    assert.same({ "r1 cancelled", "r2 a" }, trace)
    local st = ch:stats().recv
    assert.same({ 1, 1, 1 }, { st.acquired, st.waited, st.cancelled })
  end)

  it("right after a hand-off puts the value back at the front of the buffer", function()
    local ch = sluice.channel(1)
    local r = sluice.spawn(function() return ch:recv() end)
    sluice.yield()
    ch:send("first")                      -- handed to r
    ch:send("second")                     -- buffered
    r:cancel()
    assert.equal("cancelled", select(2, pcall(r.await, r)).kind)
    assert.equal(2, ch.count)             -- briefly above the capacity
    assert.is_false(ch:try_send("third"))
    assert.equal("first", ch:recv())
    assert.equal("second", ch:recv())
  end)

  it("of a sender whose value was taken still counts the send as done", function()
    local ch = sluice.channel()
    local s = sluice.spawn(function()
      local ok = ch:send("v")
      local cancelled = not pcall(sluice.yield)
      return ok, cancelled
    end)
    sluice.yield()
    assert.equal("v", ch:recv())          -- s is woken: its send is complete
    s:cancel()
    assert.same({ true, true }, { s:await() })
  end)

  it("a cancelled task cannot start a send or recv, even one that would not wait", function()
    local ch = sluice.channel(1)
    local t = sluice.spawn(function()
      sluice.shield(function() sluice.current():cancel() end)   -- pending from here on
      local e1 = select(2, pcall(ch.send, ch, 1))
      local e2 = select(2, pcall(ch.recv, ch))
      local e3 = select(2, pcall(ch.send, ch, 1, 0))
      return e1.kind, e2.kind, e3.kind
    end)
    assert.same({ "cancelled", "cancelled", "cancelled" }, { t:await() })
    assert.same({ 0, 0 }, { ch.count, ch:stats().send.acquired })
  end)
end)

describe("channel arguments", function()
  it("rejects a bad capacity", function()
    local cases = {
      { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "2", '"2"' }, { {}, "table" },
    }
    for _, c in ipairs(cases) do
      local err = error_of(sluice.channel, c[1])
      assert.same({ "invalid", "channel: capacity must be a non-negative integer (got " .. c[2] .. ")" },
        { err.kind, err.message })
    end
  end)

  it("rejects a bad timeout, leaving the channel unchanged", function()
    local ch = sluice.channel(1)
    for _, c in ipairs({ { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "1", '"1"' } }) do
      local err = error_of(ch.recv, ch, c[1])
      assert.equal("channel:recv: timeout must be a finite non-negative number of seconds (got " .. c[2] .. ")", err.message)
      err = error_of(ch.send, ch, "v", c[1])
      assert.equal("channel:send: timeout must be a finite non-negative number of seconds (got " .. c[2] .. ")", err.message)
    end
    assert.same({ capacity = 1, count = 0, closed = false, waiting_senders = 0, waiting_receivers = 0 }, fields(ch))
  end)

  it("rejects a wrong self", function()
    local ch = sluice.channel(1)
    for _, m in ipairs({ "send", "recv", "try_send", "try_recv", "close", "iter", "stats" }) do
      local err = error_of(ch[m], {}, 1)
      assert.same({ "invalid", "channel:" .. m .. ": expected a channel (got table)" }, { err.kind, err.message })
      err = error_of(ch[m], nil)
      assert.equal("channel:" .. m .. ": expected a channel (got nil)", err.message)
    end
    assert.same({ capacity = 1, count = 0, closed = false, waiting_senders = 0, waiting_receivers = 0 }, fields(ch))
  end)

  it("fields are read-only", function()
    local ch = sluice.channel(1)
    assert.equal("channel: field 'capacity' is read-only", error_of(function() ch.capacity = 2 end).message)
    assert.equal("channel: field 'foo' is not settable", error_of(function() ch.foo = 2 end).message)
    assert.equal(1, ch.capacity)
  end)

  it("a blocking call where the task cannot yield raises", function()
    local ch = sluice.channel()
    local err
    table.sort({ 1, 2 }, function(a, b)
      if not err then err = select(2, pcall(ch.recv, ch)) end
      return a < b
    end)
    assert.equal("channel:recv: cannot block here (inside a C call such as a table.sort comparator or a string.gsub callback)",
      err.message)
    assert.equal(0, ch.waiting_receivers)
  end)
end)

describe("channel:stats", function()
  it("counts each side", function()
    local ch = sluice.channel(1)
    local r = sluice.spawn(function() return ch:recv() end)
    sluice.sleep(2)
    ch:send(1)
    r:await()
    ch:send(2)
    ch:recv()
    local st = ch:stats()
    assert.same({ 1, 0, false }, { st.capacity, st.count, st.closed })
    assert.same({ 2, 0 }, { st.send.acquired, st.send.waited })
    assert.same({ 2, 1, 2, 2 }, { st.recv.acquired, st.recv.waited, st.recv.wait_total, st.recv.wait_max })
  end)
end)

describe("sluice.select", function()
  it("does the first case that can be done now, in list order", function()
    local a, b = sluice.channel(1), sluice.channel(1)
    a:send("a")
    b:send("b")
    assert.same(pack(1, "a"), pack(sluice.select { { a, "recv" }, { b, "recv" } }))
    assert.same(pack(2, "b"), pack(sluice.select { { a, "recv" }, { b, "recv" } }))
    assert.same(pack(1), pack(sluice.select { { a, "send", "x" }, { b, "send", "y" } }))
    assert.same({ 1, 0 }, { a.count, b.count })
    assert.equal("x", a:recv())
  end)

  it("waits on every case and does exactly one: the others are withdrawn", function()
    local trace, log = tracer()
    local a, b = sluice.channel(), sluice.channel(1)
    local t = sluice.spawn(function()
      local i, v = sluice.select { { a, "recv" }, { b, "recv" } }
      log(i .. " " .. v .. " at " .. sluice.now())
    end)
    sluice.yield()
    assert.same({ 1, 1 }, { a.waiting_receivers, b.waiting_receivers })
    local t0 = sluice.now()
    sluice.sleep(1)
    b:send("v")
    assert.same({ 0, 0, 0 }, { a.waiting_receivers, b.waiting_receivers, b.count })
    assert.is_false(a:try_send("lost?"))  -- the recv on a is gone: nobody takes it
    t:await()
    assert.same({ "2 v at " .. t0 + 1 }, trace)
  end)

  it("a send case waits for room and the others send nothing", function()
    local a, b = sluice.channel(1), sluice.channel(1)
    a:send(0)
    b:send(0)
    local t = sluice.spawn(function() return sluice.select { { a, "send", "to a" }, { b, "send", "to b" } } end)
    sluice.yield()
    assert.same({ 1, 1 }, { a.waiting_senders, b.waiting_senders })
    assert.equal(0, b:recv())             -- room in b: case 2 is done
    assert.same({ 2 }, { t:await() })
    assert.same({ 0, 0 }, { a.waiting_senders, b.waiting_senders })
    assert.same({ 0, "to b" }, { a:recv(), b:recv() })
    assert.same(pack(nil, "empty"), pack(a:try_recv()))
  end)

  it("meets a select on the other side", function()
    local ch = sluice.channel()
    local r = sluice.spawn(function() return sluice.select { { ch, "recv" } } end)
    sluice.yield()
    assert.same(pack(1), pack(sluice.select { { ch, "send", 42 } }))
    assert.same({ 1, 42 }, { r:await() })
  end)

  it("gives nil, \"timeout\" after exactly the timeout, leaving nothing queued", function()
    local a, b = sluice.channel(), sluice.channel(0)
    local t0 = sluice.now()
    assert.same(pack(nil, "timeout"), pack(sluice.select { { a, "recv" }, { b, "send", 1 }, timeout = 1.5 }))
    assert.equal(t0 + 1.5, sluice.now())
    assert.same(pack(nil, "timeout"), pack(sluice.select { { a, "recv" }, timeout = 0 }))
    assert.same({ 0, 0 }, { a.waiting_receivers, b.waiting_senders })
    assert.same({ 1, 1 }, { a:stats().recv.timeouts, b:stats().send.timeouts })
    assert.is_false(b:try_send(2))
  end)

  it("a recv case on a closed channel gives i, nil, \"closed\"; a send case raises", function()
    local a, b = sluice.channel(), sluice.channel()
    local t = sluice.spawn(function() return sluice.select { { a, "recv" }, { b, "recv" } } end)
    sluice.yield()
    b:close()
    assert.same(pack(2, nil, "closed"), pack(t:await()))
    assert.equal(0, a.waiting_receivers)
    local err = error_of(sluice.select, { { a, "recv" }, { b, "send", 1 } })
    assert.same({ "closed", "sluice.select: the channel of case 2 is closed" }, { err.kind, err.message })
    local s = sluice.spawn(function() return pcall(sluice.select, { { a, "send", 1 } }) end)
    sluice.yield()
    a:close()
    local ok, e = s:await()
    assert.same({ false, "closed" }, { ok, e.kind })
  end)

  it("cancelled while waiting, does nothing", function()
    local a, b = sluice.channel(), sluice.channel()
    local t = sluice.spawn(function() return sluice.select { { a, "recv" }, { b, "send", "x" } } end)
    sluice.yield()
    t:cancel()
    assert.equal("cancelled", select(2, pcall(t.await, t)).kind)
    assert.same({ 0, 0 }, { a.waiting_receivers, b.waiting_senders })
    assert.is_false(b:try_send("y"))
    assert.same(pack(nil, "empty"), pack(b:try_recv()))
  end)

  it("cancelled right after a recv case was done, passes the value on", function()
    local trace, log = tracer()
    local ch = sluice.channel(1)
    local t = sluice.spawn(function()
      local ok, e = pcall(sluice.select, { { ch, "recv" } })
      log(ok and "got" or e.kind)
    end)
    local r = sluice.spawn(function() log("r " .. ch:recv()) end)
    sluice.yield()
    ch:send("v")                          -- done for t, which has not run
    t:cancel()
    t:await()
    r:await()
    assert.same({ "cancelled", "r v" }, trace)
  end)

  it("rejects bad cases", function()
    local ch = sluice.channel()
    local cases = {
      { nil, "sluice.select: cases must be a non-empty list (got nil)" },
      { {}, "sluice.select: cases must be a non-empty list (got table)" },
      { { 1 }, 'sluice.select: case 1 must be {channel, "recv"} or {channel, "send", value}' },
      { { { ch, "recv" }, { {}, "recv" } }, 'sluice.select: case 2 must be {channel, "recv"} or {channel, "send", value}' },
      { { { ch, "get" } }, 'sluice.select: case 1 must be {channel, "recv"} or {channel, "send", value}' },
      { { { ch, "send" } }, "sluice.select: case 1 sends nil (values must not be nil)" },
      { { { ch, "recv" }, timeout = -1 }, "sluice.select: timeout must be a finite non-negative number of seconds (got -1)" },
    }
    for _, c in ipairs(cases) do
      local err = error_of(sluice.select, c[1])
      assert.same({ "invalid", c[2] }, { err.kind, err.message })
    end
    assert.equal(0, ch.waiting_receivers)
  end)
end)
