-- sluice.redis_limits: limits shared by many processes through Redis,
-- added to the redis module: redis.semaphore and redis.lock here,
-- redis.token_bucket in sluice.redis_bucket; how they reach Redis (and
-- what they do when they cannot) is sluice.redis_link.
--
--   local sem = redis.semaphore(client, "api", 10, { lease = 10 })
--   local lease = sem:acquire()        -- blocks the task; lease.token
--   ... sem:release(lease)             -- or sem:with(fn, ...)
--
-- Design.  Every state change is one atomic Lua script on the server
-- (SCRIPT LOAD once, EVALSHA; a NOSCRIPT reply falls back to EVAL and
-- loads again), timed by the server's clock (TIME inside the script), so
-- the processes' clocks never matter.  A limiter's keys share one hash
-- tag, {name}:
--   holders  sorted set of lease ids scored by expiry (ms); expired ones
--            are removed by every script before it counts
--   queue    sorted set of waiter ids scored by arrival (from {name}:seq)
--   qexp     sorted set of the same waiter ids scored by expiry: a
--            waiter refreshes it on each try, so a crashed process's
--            waiters leave the queue by themselves
--   fence    counter: each grant carries INCR fence (a fencing token)
--   wake:<i> one list per limiter object i (its id: process id, start time, counter)
-- A waiter may take a permit only if it is among the first (permits -
-- held) waiters: arrival order, as Redis sees it.  When permits free up
-- (a release, a waiter leaving, an expiry found), the script pushes a
-- token onto the wake list of each limiter object owning one of the
-- waiters now eligible; that object's listener task, parked in BLPOP on
-- a connection of its own, wakes its local waiters, which try again.  The
-- BLPOP timeout (at most min(lease, 1) s, less when a waiter's deadline
-- is nearer) is the safety net for a lost wake-up and the clock of
-- acquire's timeout, which is measured on the server's clock.
--
-- A held lease is renewed (a weak timer's task) every lease/3 s until it is released
-- or its holder task ends: a crashed process stops renewing and its
-- permits come back within one lease period.
--
-- While Redis is out of reach (see sluice.redis_link), acquire fails
-- fast with kind "unavailable", or with fallback = {permits = n} takes a
-- permit of a local share of n (a channel of n tokens); the leases it
-- gives have no fencing token.  A shared lease released then is left to
-- lapse.
return function(R, I)
  local sluice = require "sluice"
  local uv = sluice.uv
  local weak_timer = require("sluice.core").weak_timer
  local K = require("sluice.redis_link")(R, I)

  local type, pairs, next, setmetatable, getmetatable, error, pcall, unpack =
        type, pairs, next, setmetatable, getmetatable, error, pcall, unpack
  local floor, huge, min, max = math.floor, math.huge, math.min, math.max
  local fmt = string.format
  local raise, describe = K.raise, K.describe

  ---------------------------------------------------------------- scripts

  -- KEYS: holders, queue, qexp, fence, seq, wake prefix.  Removes expired
  -- leases and dead waiters; notify(free) wakes the owners of the first
  -- `free` waiters.
  local PRELUDE = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local permits = tonumber(ARGV[1])
local purged = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #dead > 0 then
  redis.call('ZREM', KEYS[2], unpack(dead))
  redis.call('ZREM', KEYS[3], unpack(dead))
  purged = purged + #dead
end
local function free() return permits - redis.call('ZCARD', KEYS[1]) end
local function notify(n)
  if n <= 0 then return end
  local ids = redis.call('ZRANGE', KEYS[2], 0, n - 1)
  local seen = {}
  for _, w in ipairs(ids) do
    local inst = string.match(w, '^(.*):[^:]*$')
    if inst and not seen[inst] then
      seen[inst] = true
      local k = KEYS[6] .. inst
      redis.call('LPUSH', k, '1')
      redis.call('LTRIM', k, 0, 0)
      redis.call('PEXPIRE', k, 60000)
    end
  end
end
]]

  -- ARGV: permits, lease ms, waiter id, waiter ttl ms, try (1: never queue)
  -- -> {granted, now, fence}
  local ACQUIRE = PRELUDE .. [[
local id, lease, wttl = ARGV[3], tonumber(ARGV[2]), tonumber(ARGV[4])
local f = free()
if purged > 0 then notify(f) end
local rank = redis.call('ZRANK', KEYS[2], id)
local ok
if rank then
  ok = rank < f
  if ok then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
  else
    redis.call('ZADD', KEYS[3], now + wttl, id)
  end
else
  ok = redis.call('ZCARD', KEYS[2]) < f
  if not ok and ARGV[5] ~= '1' then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), id)
    redis.call('ZADD', KEYS[3], now + wttl, id)
  end
end
if not ok then return {0, now, 0} end
redis.call('ZADD', KEYS[1], now + lease, id)
return {1, now, redis.call('INCR', KEYS[4])}
]]

  -- ARGV: permits, lease ms, lease id -> 1 renewed | 0 lost
  local RENEW = PRELUDE .. [[
if purged > 0 then notify(free()) end
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
return 1
]]

  -- ARGV: permits, -, id -> 1 if the lease (or the waiter) was there
  local RELEASE = PRELUDE .. [[
local n = redis.call('ZREM', KEYS[1], ARGV[3]) + redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
if n > 0 or purged > 0 then notify(free()) end
return n
]]

  -- ARGV: permits -> the leases held, once the expired ones are gone
  local HELD = PRELUDE .. [[
if purged > 0 then notify(free()) end
return redis.call('ZCARD', KEYS[1])
]]

  ---------------------------------------------------------------- semaphore

  local SEM_OPTS = { lease = true, timeout = true, connect = true, renew = true,
                     fallback = true, on_change = true }
  local LOCK_OPTS = { ttl = true, timeout = true, connect = true, renew = true,
                      fallback = true, on_change = true }
  local FALLBACK_OPTS = { permits = true }

  local Sem = {}
  Sem.__index = Sem
  local Lease = {}
  Lease.__index = Lease

  Lease.__tostring = function(l)
    if l.fallback then
      return fmt("redis lease %s (local share%s)", l.id, l.released and ", released" or "")
    end
    return fmt("redis lease %s (token %d%s)", l.id, l.token, l.released and ", released" or "")
  end

  -- This object's id (for its waiters' ids and its wake list): unique
  -- without a round trip (host process id, start time, a counter).
  local ninst = 0
  local function new_instance()
    ninst = ninst + 1
    return fmt("%x.%x.%d", uv.os_getpid(), floor(uv.hrtime() / 1000), ninst)
  end

  local function eval(s, script, ...)
    return s.link:eval(script, 6, s.k1, s.k2, s.k3, s.k4, s.k5, s.k6, s.permits, ...)
  end

  -- The listener: BLPOP on the object's wake list (on a connection of its
  -- own), then wake every local waiter; it runs while there are waiters.
  -- A failed BLPOP drops that connection; when a new one cannot be had,
  -- the link is lost and the waiters find out.
  local function listen(s)
    local failures = 0
    while next(s.waiters) and not s.closed and s.link.state == "shared" do
      if not s.wconn then
        local ok, c = pcall(s.link.open, s.link)
        if s.closed then if ok then c:close() end break end
        if not ok then s.link:lost(c) break end
        s.wconn = c
      end
      local wait, t = s.safety, uv.hrtime() / 1e9
      for w in pairs(s.waiters) do
        if w.due then wait = min(wait, max(w.due - t, 0.01)) end
      end
      local c = s.wconn
      local ok, e = pcall(c.call, c, "BLPOP", s.keys.wake .. s.inst, fmt("%.3f", max(wait, 0.01)))
      if not ok and not s.closed then
        if not K.unreachable(c, e) then s.failure = e end
        c:close()
        s.wconn = nil
        failures = failures + 1
        if failures > 1 then s.link:lost(e) end
      elseif ok then
        failures = 0
      end
      for w in pairs(s.waiters) do w.ch:try_send(true) end
      if s.failure then break end
    end
    s.listener = nil
    for w in pairs(s.waiters) do w.ch:try_send(true) end
  end

  local function wait_wake(s, w)
    s.waiters[w] = true
    if not s.listener then s.listener = sluice.spawn(listen, s) end
    local ok, e = pcall(w.ch.recv, w.ch)
    s.waiters[w] = nil
    if not ok then error(e, 0) end
  end

  -- A renewal, every lease/3 s, run by a weak timer (as a task of the
  -- root scope, so that no scope of the holder waits for it, and never
  -- keeping a finished program alive).  It stops when the lease is
  -- released, lost, or its holder task has ended.  While Redis is out of
  -- reach it keeps trying: the lease lapses if that lasts a lease period.
  local function renew_tick(s, l, holder)
    if l.released or s.closed then return end
    local st = holder.status
    if st == "done" or st == "failed" or st == "cancelled" then return end
    local ok, reached, r = pcall(eval, s, RENEW, s.lease_ms, l.id)
    if ok and reached and r == 0 then l.lost = true return end
    if not l.released and not s.closed then l.timer:arm(sluice.now() + s.lease / 3) end
  end

  local function leave(s, id)
    sluice.shield(function() pcall(eval, s, RELEASE, 0, id) end)
  end

  local function granted(s, id, token)
    local l = setmetatable({ id = id, token = token, limiter = s, released = false, lost = false,
                             fallback = false }, Lease)
    s.holding[l] = true
    if s.renew then
      l.timer = weak_timer(renew_tick, s, l, sluice.current())
      l.timer:arm(sluice.now() + s.lease / 3)
    end
    return l
  end

  local function check_self(s, what)
    if getmetatable(s) ~= Sem then
      raise("invalid", fmt("redis limiter:%s: self must be a redis semaphore or lock (got %s)", what,
        describe(s)), 3)
    end
  end

  -- Queued on the server: wait for wake-ups and try again.  -> id, token
  -- | nil (timed out) | false (Redis out of reach).
  local function wait_shared(s, fname, id, deadline, t0)
    local w = { ch = sluice.channel(1) }
    while true do
      if deadline then w.due = uv.hrtime() / 1e9 + (deadline - t0) / 1000 end
      wait_wake(s, w)
      if s.closed then raise("closed", fname .. ": the limiter is closed", 1) end
      if s.failure then
        local e = s.failure
        s.failure = nil
        error(e, 0)
      end
      local ok, r = eval(s, ACQUIRE, s.lease_ms, id, s.wttl_ms, 0)
      if not ok then return false end
      if r[1] == 1 then return id, r[3] end
      if deadline and r[2] >= deadline then return nil end
    end
  end

  -- -> lease | nil, "timeout" | false (Redis out of reach)
  local function acquire_shared(s, fname, timeout)
    s.seq = s.seq + 1
    local id = s.inst .. ":" .. s.seq
    local pok, ok, r = pcall(eval, s, ACQUIRE, s.lease_ms, id, s.wttl_ms, timeout == 0 and 1 or 0)
    if not pok then
      -- cancelled with the script sent: it may have granted or queued id
      if s.link.state == "shared" then leave(s, id) end
      error(ok, 0)
    end
    if not ok then return false end
    if r[1] == 1 then return granted(s, id, r[3]) end
    if timeout == 0 then return nil, "timeout" end
    local deadline = timeout and timeout ~= huge and r[2] + timeout * 1000 or nil
    local pok, res, tok = pcall(wait_shared, s, fname, id, deadline, r[2])
    if pok and res then return granted(s, id, tok) end
    if not s.closed and s.link.state == "shared" then leave(s, id) end
    if not pok then error(res, 0) end
    if res == false then return false end
    return nil, "timeout"
  end

  -- The local share, while Redis is out of reach: a channel holding one
  -- token per permit (FIFO, cancel-safe, released by any task).
  local function acquire_local(s, timeout)
    local v
    if timeout == 0 then v = s.share:try_recv() else v = s.share:recv(timeout) end
    if v == nil then return nil, "timeout" end
    s.seq = s.seq + 1
    local l = setmetatable({ id = s.inst .. ":local:" .. s.seq, limiter = s, released = false,
                             lost = false, fallback = true }, Lease)
    s.holding[l] = true
    return l
  end

  -- sem:acquire([timeout]) -> lease | nil, "timeout".  The timeout runs on
  -- the server's clock; 0 tries once without queueing.
  function Sem.acquire(s, timeout)
    check_self(s, "acquire")
    local fname = s.kind .. ":acquire"
    K.check_timeout(fname, timeout, 2)
    if timeout == nil then timeout = s.timeout end
    if s.closed then raise("closed", fname .. ": the limiter is closed", 2) end
    K.need_task(fname)
    local t0 = sluice.now()
    if s.link:ready() then
      local l, why = acquire_shared(s, fname, timeout)
      if l ~= false then return l, why end
    end
    if not s.share then s.link:unavailable(fname, 2) end
    if timeout and timeout ~= huge then timeout = max(0, timeout - (sluice.now() - t0)) end
    return acquire_local(s, timeout)
  end

  -- sem:release(lease) -> true | false (false: it had expired meanwhile,
  -- or Redis is out of reach and it will lapse by itself)
  function Sem.release(s, l)
    check_self(s, "release")
    local fname = s.kind .. ":release"
    if getmetatable(l) ~= Lease or l.limiter ~= s then
      raise("invalid", fmt("%s: lease must be a lease of this %s (got %s)", fname, s.kind,
        describe(l)), 2)
    end
    if l.released then raise("invalid", fmt("%s: lease %s already released", fname, l.id), 2) end
    K.need_task(fname)
    l.released = true
    s.holding[l] = nil
    if l.fallback then return s.share:try_send(true) end
    if l.timer then l.timer:stop() end
    if s.closed then return false end
    local ok, n = eval(s, RELEASE, 0, l.id)
    return ok and n > 0 and not l.lost
  end

  -- sem:with(fn, ...) -> fn's results; the lease is released however fn ends.
  function Sem.with(s, fn, ...)
    check_self(s, "with")
    if type(fn) ~= "function" then
      raise("invalid", fmt("%s:with: fn must be a function (got %s)", s.kind, describe(fn)), 2)
    end
    local l = s:acquire()
    if not l then raise("timeout", fmt("%s:with: timed out", s.kind), 2) end
    local res = { pcall(fn, ...) }
    sluice.shield(function() pcall(s.release, s, l) end)
    if not res[1] then error(res[2], 0) end
    return unpack(res, 2, table.maxn(res))
  end

  -- sem:held() -> the number of permits held now (all processes).
  function Sem.held(s)
    check_self(s, "held")
    local fname = s.kind .. ":held"
    K.need_task(fname)
    local ok, n = eval(s, HELD)
    if not ok then s.link:unavailable(fname, 2) end
    return n
  end

  -- sem:close(): stops the renewals and the listener, closes the
  -- limiter's own connections (the leases held lapse after a lease period).
  function Sem.close(s)
    check_self(s, "close")
    if s.closed then return end
    s.closed = true
    for l in pairs(s.holding) do
      if l.timer then l.timer:stop() end
    end
    if s.wconn then s.wconn:close() s.wconn = nil end
    s.link:close()
    for w in pairs(s.waiters) do w.ch:try_send(true) end
  end

  Sem.__tostring = function(s)
    return fmt("redis %s %q (%d permits, %s)", s.kind, s.name, s.permits, s.state)
  end

  local function new_sem(kind, target, is_pool, name, permits, lease, opts)
    local p = "{" .. name .. "}:"
    local s = setmetatable({
      kind = kind, name = name, permits = permits, lease = lease,
      lease_ms = floor(lease * 1000 + 0.5), wttl_ms = floor(max(lease, 3) * 1000),
      safety = min(lease, 1), timeout = opts.timeout,
      renew = opts.renew ~= false, seq = 0, waiters = {}, holding = {}, closed = false,
      state = "shared", keys = { holders = p .. "holders", queue = p .. "queue", qexp = p .. "qexp",
               fence = p .. "fence", seq = p .. "seq", wake = p .. "wake:" },
    }, Sem)
    local k = s.keys
    s.k1, s.k2, s.k3, s.k4, s.k5, s.k6 = k.holders, k.queue, k.qexp, k.fence, k.seq, k.wake
    s.inst = new_instance()
    local on_change = opts.on_change
    s.link = K.new(target, is_pool, { connect = opts.connect, fallback = opts.fallback,
      on_change = function(from, to, err)
        s.state = to
        if to ~= "shared" then
          -- the waiters find the state changed; the listener stops
          for w in pairs(s.waiters) do w.ch:try_send(true) end
        end
        if on_change then on_change(from, to, err) end
      end })
    if opts.fallback then
      s.share = sluice.channel(opts.fallback.permits)
      for _ = 1, opts.fallback.permits do s.share:try_send(true) end
    end
    return s
  end

  local function check_sem_fallback(fname, fb, default, level)
    fb = K.check_fallback(fname, fb, FALLBACK_OPTS, level + 1)
    if fb == nil then return nil end
    local n = fb.permits
    if n == nil then n = default end
    K.check_count(fname, "fallback.permits", n, level + 1)
    return { permits = n }
  end

  -- redis.semaphore(client_or_pool, name, permits [, {lease=10, timeout=,
  -- connect=, renew=, fallback={permits=}, on_change=}])
  function R.semaphore(target, name, permits, opts)
    local fname = "redis.semaphore"
    local is_pool
    opts, is_pool = K.check_common(fname, target, name, opts, SEM_OPTS, 2)
    K.check_count(fname, "permits", permits, 2)
    local lease = opts.lease or 10
    K.check_positive(fname, "lease", lease, 2)
    K.check_timeout(fname, opts.timeout, 2)
    local fb = check_sem_fallback(fname, opts.fallback, nil, 2)
    local o = setmetatable({ fallback = fb }, { __index = opts })
    return new_sem("semaphore", target, is_pool, name, permits, lease, o)
  end

  -- redis.lock(client_or_pool, name [, {ttl=10, timeout=, connect=,
  -- renew=, fallback={}, on_change=}]): a semaphore of one permit;
  -- lease.token is the fencing token.
  function R.lock(target, name, opts)
    local fname = "redis.lock"
    local is_pool
    opts, is_pool = K.check_common(fname, target, name, opts, LOCK_OPTS, 2)
    local ttl = opts.ttl or 10
    K.check_positive(fname, "ttl", ttl, 2)
    K.check_timeout(fname, opts.timeout, 2)
    local fb = check_sem_fallback(fname, opts.fallback, 1, 2)
    if fb and fb.permits ~= 1 then
      raise("invalid", fmt("%s: fallback.permits must be 1 (got %s)", fname,
        describe(fb.permits)), 2)
    end
    local o = setmetatable({ fallback = fb }, { __index = opts })
    return new_sem("lock", target, is_pool, name, 1, ttl, o)
  end

  require("sluice.redis_bucket")(R, I, K)
end
