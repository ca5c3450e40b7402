-- sluice.redis_limits: limits shared by many processes through Redis,
-- added to the redis module (redis.semaphore, redis.lock,
-- redis.token_bucket).
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
-- The token bucket keeps {tokens, ts} in the hash {name}:bucket.  take
-- reserves: the script answers "granted now" or "granted after X s"
-- (tokens go below zero, which orders later takers behind) and the taker
-- sleeps exactly that; take's timeout refuses a wait longer than it
-- without reserving anything.
return function(R, I)
  local sluice = require "sluice"
  local uv = sluice.uv
  local weak_timer = require("sluice.core").weak_timer

  local type, pairs, next, tostring, tonumber, setmetatable, getmetatable, error, pcall, unpack =
        type, pairs, next, tostring, tonumber, setmetatable, getmetatable, error, pcall, unpack
  local floor, huge, min, max = math.floor, math.huge, math.min, math.max
  local fmt = string.format
  local co_isyieldable = coroutine.isyieldable

  local new_error = sluice.error

  local function raise(kind, message, level)
    error(new_error(kind, message), (level or 1) + 1)
  end
  if I and I.raise then raise = I.raise end

  local function describe(v)
    if type(v) == "number" then
      if v ~= v then return "nan" end
      if v == huge then return "inf" elseif v == -huge then return "-inf" end
      return fmt("%.14g", v)
    elseif type(v) == "string" then
      return fmt("%q", #v > 20 and v:sub(1, 20) .. "..." or v)
    end
    return type(v)
  end

  local function need_task(fname)
    if not co_isyieldable() then raise("invalid", fname .. ": must be called from a task", 3) end
  end

  local function check_positive(fname, what, v, level)
    if type(v) ~= "number" or v ~= v or v <= 0 or v == huge then
      raise("invalid", fmt("%s: %s must be a finite positive number (got %s)", fname, what,
        describe(v)), level + 1)
    end
  end

  local function check_timeout(fname, v, level)
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
      raise("invalid", fmt("%s: timeout must be a non-negative number or nil (got %s)", fname,
        describe(v)), level + 1)
    end
  end

  local function is_client(c)
    if c == nil or (type(c) ~= "userdata" and type(c) ~= "table") then return false end
    local ok, call = pcall(function() return c.call end)
    return ok and type(call) == "function"
  end

  local function check_common(fname, client, name, opts, known, level)
    if not is_client(client) then
      raise("invalid", fmt("%s: client must be a redis client (got %s)", fname, describe(client)),
        level + 1)
    end
    if type(name) ~= "string" or name == "" then
      raise("invalid", fmt("%s: name must be a non-empty string (got %s)", fname, describe(name)),
        level + 1)
    end
    if opts == nil then return {} end
    if type(opts) ~= "table" then
      raise("invalid", fmt("%s: opts must be a table (got %s)", fname, describe(opts)), level + 1)
    end
    for k in pairs(opts) do
      if not known[k] then
        raise("invalid", fmt("%s: unknown option %s", fname, describe(k)), level + 1)
      end
    end
    if opts.connect ~= nil and type(opts.connect) ~= "table" then
      raise("invalid", fmt("%s: connect must be a table (got %s)", fname, describe(opts.connect)),
        level + 1)
    end
    return opts
  end

  ---------------------------------------------------------------- scripts

  local shas = {}   -- script text -> sha1 (the same on every server)

  -- Runs a script: EVALSHA, and EVAL (then SCRIPT LOAD again) when the
  -- server answers NOSCRIPT (a restart, SCRIPT FLUSH).
  local function run(conn, script, nkeys, ...)
    local sha = shas[script]
    if not sha then
      sha = conn:call("SCRIPT", "LOAD", script)
      shas[script] = sha
    end
    local ok, r = pcall(conn.call, conn, "EVALSHA", sha, nkeys, ...)
    if ok then return r end
    if type(r) == "table" and r.kind == "redis" and tostring(r.message):find("^NOSCRIPT") then
      shas[script] = nil
      r = conn:call("EVAL", script, nkeys, ...)
      shas[script] = conn:call("SCRIPT", "LOAD", script)
      return r
    end
    error(r, 0)
  end

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

  -- KEYS: bucket hash; ARGV: capacity, rate, n, max wait (s; -1: any)
  -- -> {granted, wait s as a string}
  local TAKE = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cap, rate, n, maxw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(v[1]), tonumber(v[2])
if not tokens then tokens, ts = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens < n then wait = (n - tokens) / rate end
local ok = wait == 0 or maxw < 0 or wait <= maxw
if ok then tokens = tokens - n end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate * 1000) + 1000)
return {ok and 1 or 0, string.format('%.17g', wait)}
]]

  -- KEYS: bucket hash; ARGV: capacity, rate, n: gives back a reservation.
  local REFUND = [[
local v = redis.call('HGET', KEYS[1], 'tokens')
if not v then return 0 end
local t = math.min(tonumber(ARGV[1]), tonumber(v) + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', t))
return 1
]]

  ---------------------------------------------------------------- semaphore

  local SEM_OPTS = { lease = true, timeout = true, connect = true, renew = true }
  local LOCK_OPTS = { ttl = true, timeout = true, connect = true, renew = true }

  local Sem = {}
  Sem.__index = Sem
  local Lease = {}
  Lease.__index = Lease

  local function lease_tostring(l)
    return fmt("redis lease %s (token %d%s)", l.id, l.token, l.released and ", released" or "")
  end
  Lease.__tostring = lease_tostring

  -- Opens one more connection to the client's server.
  local function extra_conn(s)
    local o = { host = s.client.host, port = s.client.port }
    for k, v in pairs(s.connect) do o[k] = v end
    return R.connect(o)
  end

  local function keys(s)
    local k = s.keys
    return k.holders, k.queue, k.qexp, k.fence, k.seq, k.wake
  end

  -- This object's id (for its waiters' ids and its wake list): unique
  -- without a round trip (host process id, start time, a counter).
  local ninst = 0
  local function new_instance()
    ninst = ninst + 1
    return fmt("%x.%x.%d", uv.os_getpid(), floor(uv.hrtime() / 1000), ninst)
  end
  local function instance(s) return s.inst end

  -- The listener: BLPOP on the object's wake list, then wake every local
  -- waiter; it runs while there are waiters.
  local function listen(s)
    while next(s.waiters) and not s.closed do
      if not s.wconn then
        local ok, c = pcall(extra_conn, s)
        if not ok then s.failure = c break end
        if s.closed then c:close() break end
        s.wconn = c
      end
      local wait, now = s.safety, uv.hrtime() / 1e9
      for w in pairs(s.waiters) do
        if w.due then wait = min(wait, max(w.due - now, 0.01)) end
      end
      local ok, e = pcall(s.wconn.call, s.wconn, "BLPOP", s.keys.wake .. s.inst,
        fmt("%.3f", max(wait, 0.01)))
      if not ok and not s.closed then s.failure = e end
      for w in pairs(s.waiters) do w.ch:try_send(true) end
      if not ok then break end
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
  -- released, lost, or its holder task has ended.
  local function renew_tick(s, l, holder)
    if l.released or s.closed then return end
    local st = holder.status
    if st == "done" or st == "failed" or st == "cancelled" then return end
    local ok, r = pcall(run, s.client, RENEW, 6, s.k1, s.k2, s.k3, s.k4, s.k5, s.k6,
      s.permits, s.lease_ms, l.id)
    if ok and r == 0 then l.lost = true return end
    if not l.released and not s.closed then l.timer:arm(sluice.now() + s.lease / 3) end
  end

  local function try_once(s, id, try)
    return run(s.client, ACQUIRE, 6, s.k1, s.k2, s.k3, s.k4, s.k5, s.k6,
      s.permits, s.lease_ms, id, s.wttl_ms, try and 1 or 0)
  end

  local function leave(s, id)
    sluice.shield(function()
      pcall(run, s.client, RELEASE, 6, s.k1, s.k2, s.k3, s.k4, s.k5, s.k6, s.permits, 0, id)
    end)
  end

  local function granted(s, id, token)
    local l = setmetatable({ id = id, token = token, limiter = s, released = false, lost = false }, Lease)
    s.holding[l] = true
    if s.renew then
      l.timer = weak_timer(renew_tick, s, l, sluice.current())
      l.timer:arm(sluice.now() + s.lease / 3)
    end
    return l
  end

  -- sem:acquire([timeout]) -> lease | nil, "timeout".  The timeout runs on
  -- the server's clock; 0 tries once without queueing.
  local function check_self(s, what)
    if getmetatable(s) ~= Sem then
      raise("invalid", fmt("redis limiter:%s: self must be a redis semaphore or lock (got %s)", what,
        describe(s)), 3)
    end
  end

  function Sem.acquire(s, timeout)
    check_self(s, "acquire")
    local fname = s.kind .. ":acquire"
    check_timeout(fname, timeout, 2)
    if timeout == nil then timeout = s.timeout end
    if s.closed then raise("closed", fname .. ": the limiter is closed", 2) end
    need_task(fname)
    s.seq = s.seq + 1
    local id = instance(s) .. ":" .. s.seq
    local r = try_once(s, id, timeout == 0)
    if r[1] == 1 then return granted(s, id, r[3]) end
    if timeout == 0 then return nil, "timeout" end
    local deadline = timeout and timeout ~= huge and r[2] + timeout * 1000 or nil
    local w = { ch = sluice.channel(1) }
    local ok, res, tok = pcall(function()
      while true do
        if deadline then w.due = uv.hrtime() / 1e9 + (deadline - r[2]) / 1000 end
        wait_wake(s, w)
        if s.closed then raise("closed", fname .. ": the limiter is closed", 1) end
        if s.failure then
          local e = s.failure
          s.failure = nil
          error(e, 0)
        end
        r = try_once(s, id, false)
        if r[1] == 1 then return id, r[3] end
        if deadline and r[2] >= deadline then return nil end
      end
    end)
    if ok and res then return granted(s, id, tok) end
    if not s.closed then leave(s, id) end
    if not ok then error(res, 0) end
    return nil, "timeout"
  end

  -- sem:release(lease) -> true | false (false: it had expired meanwhile)
  function Sem.release(s, l)
    check_self(s, "release")
    local fname = s.kind .. ":release"
    if getmetatable(l) ~= Lease or l.limiter ~= s then
      raise("invalid", fmt("%s: lease must be a lease of this %s (got %s)", fname, s.kind,
        describe(l)), 2)
    end
    if l.released then raise("invalid", fmt("%s: lease %s already released", fname, l.id), 2) end
    need_task(fname)
    l.released = true
    s.holding[l] = nil
    if l.timer then l.timer:stop() end
    if s.closed then return false end
    local n = run(s.client, RELEASE, 6, s.k1, s.k2, s.k3, s.k4, s.k5, s.k6, s.permits, 0, l.id)
    return n > 0 and not l.lost
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
    need_task(s.kind .. ":held")
    -- a release of no lease: it clears what has expired, then we count
    run(s.client, RELEASE, 6, s.k1, s.k2, s.k3, s.k4, s.k5, s.k6, s.permits, 0, "-")
    return s.client:call("ZCARD", s.k1)
  end

  -- sem:close(): stops the renewals and the listener, closes the
  -- limiter's own connection (the leases held lapse after a lease period).
  function Sem.close(s)
    if s.closed then return end
    s.closed = true
    for l in pairs(s.holding) do
      if l.timer then l.timer:stop() end
    end
    if s.wconn then s.wconn:close() s.wconn = nil end
    for w in pairs(s.waiters) do w.ch:try_send(true) end
  end

  Sem.__tostring = function(s)
    return fmt("redis %s %q (%d permits)", s.kind, s.name, s.permits)
  end

  local function new_sem(kind, client, name, permits, lease, opts)
    local p = "{" .. name .. "}:"
    local s = setmetatable({
      kind = kind, client = client, name = name, permits = permits, lease = lease,
      lease_ms = floor(lease * 1000 + 0.5), wttl_ms = floor(max(lease, 3) * 1000),
      safety = min(lease, 1), timeout = opts.timeout, connect = opts.connect or {},
      renew = opts.renew ~= false, seq = 0, waiters = {}, holding = {}, closed = false,
      keys = { holders = p .. "holders", queue = p .. "queue", qexp = p .. "qexp",
               fence = p .. "fence", seq = p .. "seq", wake = p .. "wake:" },
    }, Sem)
    s.inst = new_instance()
    s.k1, s.k2, s.k3, s.k4, s.k5, s.k6 = keys(s)
    return s
  end

  -- redis.semaphore(client, name, permits [, {lease=10, timeout=, connect=, renew=}])
  function R.semaphore(client, name, permits, opts)
    local fname = "redis.semaphore"
    opts = check_common(fname, client, name, opts, SEM_OPTS, 2)
    if type(permits) ~= "number" or permits ~= floor(permits) or permits < 1 or permits == huge then
      raise("invalid", fmt("%s: permits must be a positive integer (got %s)", fname,
        describe(permits)), 2)
    end
    local lease = opts.lease or 10
    check_positive(fname, "lease", lease, 2)
    check_timeout(fname, opts.timeout, 2)
    return new_sem("semaphore", client, name, permits, lease, opts)
  end

  -- redis.lock(client, name [, {ttl=10, timeout=, connect=, renew=}]): a
  -- semaphore of one permit; lease.token is the fencing token.
  function R.lock(client, name, opts)
    local fname = "redis.lock"
    opts = check_common(fname, client, name, opts, LOCK_OPTS, 2)
    local ttl = opts.ttl or 10
    check_positive(fname, "ttl", ttl, 2)
    check_timeout(fname, opts.timeout, 2)
    return new_sem("lock", client, name, 1, ttl, opts)
  end

  ---------------------------------------------------------------- token bucket

  local BUCKET_OPTS = { capacity = true, rate = true }
  local Bucket = {}
  Bucket.__index = Bucket
  Bucket.__tostring = function(b)
    return fmt("redis token_bucket %q (capacity %s, rate %s/s)", b.name, describe(b.capacity),
      describe(b.rate))
  end

  local function check_n(b, fname, n)
    if n == nil then return 1 end
    check_positive(fname, "n", n, 3)
    if n > b.capacity then
      raise("invalid", fmt("%s: n %s exceeds the capacity %s", fname, describe(n),
        describe(b.capacity)), 3)
    end
    return n
  end

  local function check_bucket(b, fname)
    if getmetatable(b) ~= Bucket then
      raise("invalid", fmt("%s: self must be a redis token_bucket (got %s)", fname, describe(b)), 3)
    end
  end

  -- b:take([n [, timeout]]) -> true | nil, "timeout"
  function Bucket.take(b, n, timeout)
    local fname = "redis.token_bucket:take"
    check_bucket(b, fname)
    n = check_n(b, fname, n)
    check_timeout(fname, timeout, 2)
    need_task(fname)
    local r = run(b.client, TAKE, 1, b.key, b.capacity, b.rate, n,
      timeout == nil and -1 or timeout == huge and -1 or timeout)
    if r[1] ~= 1 then return nil, "timeout" end
    local wait = tonumber(r[2])
    if wait > 0 then
      local ok, e = pcall(sluice.sleep, wait)
      if not ok then
        sluice.shield(function() pcall(run, b.client, REFUND, 1, b.key, b.capacity, b.rate, n) end)
        error(e, 0)
      end
    end
    return true
  end

  -- b:try_take([n]) -> true | false, never waits.
  function Bucket.try_take(b, n)
    local fname = "redis.token_bucket:try_take"
    check_bucket(b, fname)
    n = check_n(b, fname, n)
    need_task(fname)
    local r = run(b.client, TAKE, 1, b.key, b.capacity, b.rate, n, 0)
    return r[1] == 1 and tonumber(r[2]) == 0
  end

  -- redis.token_bucket(client, name, {capacity=, rate=})
  function R.token_bucket(client, name, opts)
    local fname = "redis.token_bucket"
    if opts == nil then
      raise("invalid", fname .. ": opts must be a table (got nil)", 2)
    end
    opts = check_common(fname, client, name, opts, BUCKET_OPTS, 2)
    check_positive(fname, "capacity", opts.capacity, 2)
    check_positive(fname, "rate", opts.rate, 2)
    return setmetatable({ client = client, name = name, capacity = opts.capacity,
      rate = opts.rate, key = "{" .. name .. "}:bucket" }, Bucket)
  end

end
