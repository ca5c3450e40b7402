-- sluice.redis_bucket: redis.token_bucket, a token bucket shared by many
-- processes through Redis (added to the redis module by
-- sluice.redis_limits).
--
--   local b = redis.token_bucket(client, "calls", { capacity = 10, rate = 5 })
--   b:take()            -- blocks the task until a token is its
--
-- The bucket keeps {tokens, ts} in the hash {name}:bucket, refilled by
-- the script from the server's clock (TIME).  take reserves: the script
-- answers "granted now" or "granted after X s" (tokens go below zero,
-- which orders later takers behind) and the taker sleeps exactly that;
-- take's timeout refuses a wait longer than it without reserving
-- anything.
--
-- batch = k: a take that goes to the server also takes up to k - n more
-- tokens when the bucket has them now, and keeps them in a local stock
-- that later takes spend without a round trip.  Tokens spent from the
-- stock were taken from the bucket earlier, so the shared bound
-- (capacity + rate * t in any span t) still holds; what changes is
-- fairness between processes (a stock is one process's) and when the
-- tokens are counted.  close() gives the stock back.
--
-- While Redis is out of reach (sluice.redis_link), take fails fast with
-- kind "unavailable", or with fallback = {rate =, capacity =} takes from
-- a local sluice.token_bucket of that rate (the stock is spent first).
return function(R, I, K)
  local sluice = require "sluice"

  local setmetatable, getmetatable, error, pcall, tonumber =
        setmetatable, getmetatable, error, pcall, tonumber
  local floor, huge = math.floor, math.huge
  local co_isyieldable = coroutine.isyieldable
  local fmt = string.format
  local raise, describe = K.raise, K.describe

  -- KEYS: bucket hash; ARGV: capacity, rate, n, max wait (s; -1: any),
  -- extra (tokens to take beyond n if the bucket has them now)
  -- -> {granted, wait s as a string, tokens taken}
  local TAKE = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cap, rate, n, maxw = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local extra = tonumber(ARGV[5])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(v[1]), tonumber(v[2])
if not tokens then tokens, ts = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local wait, got = 0, n
if tokens < n then
  wait = (n - tokens) / rate
elseif extra > 0 then
  got = n + math.min(extra, math.floor(tokens - n))
end
local ok = wait == 0 or maxw < 0 or wait <= maxw
if ok then tokens = tokens - got else got = 0 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate * 1000) + 1000)
return {ok and 1 or 0, string.format('%.17g', wait), got}
]]

  -- KEYS: bucket hash; ARGV: capacity, rate, n: gives back n tokens.
  local REFUND = [[
local v = redis.call('HGET', KEYS[1], 'tokens')
if not v then return 0 end
local t = math.min(tonumber(ARGV[1]), tonumber(v) + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', t))
return 1
]]

  local BUCKET_OPTS = { capacity = true, rate = true, batch = true, connect = true,
                        fallback = true, on_change = true }
  local FALLBACK_OPTS = { rate = true, capacity = true }

  local Bucket = {}
  Bucket.__index = Bucket
  Bucket.__tostring = function(b)
    return fmt("redis token_bucket %q (capacity %s, rate %s/s, %s)", b.name, describe(b.capacity),
      describe(b.rate), b.state)
  end

  local function check_bucket(b, fname)
    if getmetatable(b) ~= Bucket then
      raise("invalid", fmt("%s: self must be a redis token_bucket (got %s)", fname, describe(b)), 3)
    end
  end

  local function check_n(b, fname, n)
    if n == nil then return 1 end
    K.check_positive(fname, "n", n, 3)
    if n > b.capacity then
      raise("invalid", fmt("%s: n %s exceeds the capacity %s", fname, describe(n),
        describe(b.capacity)), 3)
    end
    return n
  end

  local function refund(b, n)
    sluice.shield(function()
      pcall(b.link.eval, b.link, REFUND, 1, b.key, b.capacity, b.rate, n)
    end)
  end

  -- One round trip: -> true, wait s | true, false (refused) | false
  -- (Redis out of reach).  Extra tokens granted go to the stock.
  local function ask(b, n, maxw)
    local pok, ok, r = pcall(b.link.eval, b.link, TAKE, 1, b.key, b.capacity, b.rate, n, maxw,
      b.batch > n and b.batch - n or 0)
    if not pok then
      -- cancelled with the script sent: without a timeout it granted n
      -- (and perhaps a batch: that much is lost)
      if maxw < 0 then refund(b, n) end
      error(ok, 0)
    end
    if not ok then return false end
    if r[1] ~= 1 then return true, false end
    b.stock = b.stock + (r[3] - n)
    return true, tonumber(r[2])
  end

  -- The local bucket while Redis is out of reach.
  local function local_take(b, fname, n, timeout, try)
    if not b.share then b.link:unavailable(fname, 3) end
    if n > b.share.capacity then
      raise("invalid", fmt("%s: n %s exceeds the fallback capacity %s", fname, describe(n),
        describe(b.share.capacity)), 3)
    end
    if try then return b.share:try_take(n) end
    return b.share:take(n, timeout)
  end

  -- The checks of take and try_take: -> n
  local function enter(b, fname, n)
    check_bucket(b, fname)
    n = check_n(b, fname, n)
    if b.closed then raise("closed", fname .. ": the bucket is closed", 3) end
    K.need_task(fname)
    return n
  end

  -- b:take([n [, timeout]]) -> true | nil, "timeout"
  function Bucket.take(b, n, timeout)
    local fname = "redis.token_bucket:take"
    K.check_timeout(fname, timeout, 2)
    n = enter(b, fname, n)
    if b.stock >= n then
      b.stock = b.stock - n
      return true
    end
    local reached, wait = ask(b, n, (timeout == nil or timeout == huge) and -1 or timeout)
    if not reached then return local_take(b, fname, n, timeout, false) end
    if not wait then return nil, "timeout" end
    if wait > 0 then
      local ok, e = pcall(sluice.sleep, wait)
      if not ok then
        refund(b, n)
        error(e, 0)
      end
    end
    return true
  end

  -- b:try_take([n]) -> true | false, never waits.
  function Bucket.try_take(b, n)
    local fname = "redis.token_bucket:try_take"
    n = enter(b, fname, n)
    if b.stock >= n then
      b.stock = b.stock - n
      return true
    end
    local reached, wait = ask(b, n, 0)
    if not reached then return local_take(b, fname, n, nil, true) end
    return wait == 0
  end

  -- b:close(): gives the batch stock back and closes the bucket's own
  -- connections.  Idempotent.
  function Bucket.close(b)
    check_bucket(b, "redis.token_bucket:close")
    if b.closed then return end
    local stock = floor(b.stock)
    b.stock, b.closed = 0, true
    if stock > 0 and b.link.state == "shared" and co_isyieldable() then refund(b, stock) end
    b.link:close()
  end

  local function check_bucket_fallback(fname, fb, capacity)
    fb = K.check_fallback(fname, fb, FALLBACK_OPTS, 3)
    if fb == nil then return nil end
    K.check_positive(fname, "fallback.rate", fb.rate, 3)
    local cap = fb.capacity
    if cap == nil then cap = capacity end
    K.check_positive(fname, "fallback.capacity", cap, 3)
    return sluice.token_bucket { capacity = cap, rate = fb.rate }
  end

  -- redis.token_bucket(client_or_pool, name, {capacity=, rate=, batch=1,
  -- connect=, fallback={rate=, capacity=}, on_change=})
  function R.token_bucket(target, name, opts)
    local fname = "redis.token_bucket"
    if opts == nil then
      raise("invalid", fname .. ": opts must be a table (got nil)", 2)
    end
    local is_pool
    opts, is_pool = K.check_common(fname, target, name, opts, BUCKET_OPTS, 2)
    K.check_positive(fname, "capacity", opts.capacity, 2)
    K.check_positive(fname, "rate", opts.rate, 2)
    local batch = opts.batch
    if batch == nil then batch = 1 end
    K.check_count(fname, "batch", batch, 2)
    local share = check_bucket_fallback(fname, opts.fallback, opts.capacity)
    local b = setmetatable({ name = name, capacity = opts.capacity, rate = opts.rate,
      batch = batch, stock = 0, closed = false, share = share, state = "shared",
      key = "{" .. name .. "}:bucket" }, Bucket)
    local on_change = opts.on_change
    b.link = K.new(target, is_pool, { connect = opts.connect, fallback = share ~= nil,
      on_change = function(from, to, err)
        b.state = to
        if on_change then on_change(from, to, err) end
      end })
    return b
  end
end
