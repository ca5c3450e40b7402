-- sluice.keyed: one limiter per key, made on first use; get, with, keys,
-- size; idle keys dropped lazily at exact virtual times; max_keys;
-- limiters in use are never dropped; argument checks.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local error_of = util.error_of

local function whole_second()
  local now = sluice.now()
  if now ~= math.ceil(now) then sluice.sleep(math.ceil(now) - now) end
  return sluice.now()
end

-- A factory that counts what it made, per key.
local function counting(make)
  local made = {}
  return made, function(key)
    made[#made + 1] = key
    return make(key)
  end
end

local function bucket() return sluice.token_bucket{ capacity = 2, rate = 1 } end

describe("sluice.keyed", function()
  it("makes one limiter per key on first use and hands the same one out again", function()
    local made, factory = counting(function() return sluice.semaphore(2) end)
    local k = sluice.keyed(factory)
    assert.equal(0, k.size)
    local a = k:get("a")
    assert.equal(2, a.permits)
    assert.equal(a, k:get("a"))
    local b = k:get("b")
    assert.not_equal(a, b)
    assert.equal(b, k:get("b"))
    assert.equal(a, k:get("a"))
    assert.same({ "a", "b" }, made)
    assert.equal(2, k.size)
    assert.same({ "a", "b" }, k:keys())             -- most recently got first
    k:get("b")
    assert.same({ "b", "a" }, k:keys())
    assert.equal("keyed (2 keys)", tostring(k))
    assert.is_nil(k.max_keys)
    assert.is_nil(k.idle)
  end)

  it("takes any key but nil and nan: numbers, tables, booleans", function()
    local k = sluice.keyed(function(key) return { key = key } end)
    local t = {}
    assert.equal(t, k:get(t).key)
    assert.equal(1, k:get(1).key)
    assert.equal(false, k:get(false).key)
    assert.equal(3, k.size)
  end)

  it("drops a limiter idle for `idle` seconds at exactly that time, lazily", function()
    local t0 = whole_second()
    local made, factory = counting(bucket)
    local k = sluice.keyed(factory, { idle = 5 })
    assert.equal(5, k.idle)
    local a = k:get("a")
    assert.is_true(a:take(2))                       -- empty; full again at t0 + 2
    sluice.sleep(1)
    k:get("b")                                      -- b last got at t0 + 1
    sluice.sleep(3.999)
    assert.equal(2, k.size)
    sluice.sleep(0.001)                             -- t0 + 5: a's 5 s are up, and it is full
    assert.equal(1, k.size)
    assert.same({ "b" }, k:keys())
    sluice.sleep(1)                                 -- t0 + 6: b's too
    assert.equal(0, k.size)
    assert.not_equal(a, k:get("a"))                 -- a new one
    assert.same({ "a", "b", "a" }, made)
  end)

  it("keeps no timer: an idle keyed does not keep the process alive", function()
    local base = sluice.stats().timers
    local k = sluice.keyed(bucket, { idle = 1 })
    k:get("a")
    assert.equal(base, sluice.stats().timers)
  end)

  it("never drops a limiter in use: a bucket not yet full, a held semaphore, one with waiters", function()
    local t0 = whole_second()
    local k = sluice.keyed(function(key)
      if key == "slow" then return sluice.token_bucket{ capacity = 10, rate = 1 } end
      return sluice.semaphore(1)
    end, { idle = 2 })
    local slow = k:get("slow")
    slow:take(10)                                   -- full again at t0 + 10
    local held = k:get("held")
    held:acquire()
    local queued = k:get("queued")
    queued:acquire()
    local waiter = sluice.spawn(function() queued:acquire() queued:release() end)
    sluice.sleep(3)
    assert.equal(3, k.size)                         -- all expired, all in use: kept (and now count as used at 3)
    held:release()
    sluice.sleep(1.5)
    assert.equal(3, k.size)                         -- held's idle time counts from 3
    sluice.sleep(0.5)                               -- t0 + 5
    assert.same({ "queued", "slow" }, k:keys())
    queued:release()
    waiter:await()
    sluice.sleep(2)                                 -- t0 + 7: queued idle since 5; slow has 7 of 10
    assert.same({ "slow" }, k:keys())
    sluice.sleep(3)                                 -- t0 + 10: full, expired, and got:
    assert.equal(slow, k:get("slow"))               -- the key got is kept
    sluice.sleep(2)
    assert.equal(0, k.size)
    assert.equal(t0 + 12, sluice.now())
  end)

  it("at max_keys drops the least recently used idle limiter to make room", function()
    local made, factory = counting(function() return sluice.semaphore(1) end)
    local k = sluice.keyed(factory, { max_keys = 2 })
    assert.equal(2, k.max_keys)
    local a = k:get("a")
    local b = k:get("b")
    k:get("a")                                      -- b is now the least recently used
    k:get("c")
    assert.same({ "c", "a" }, k:keys())
    a:acquire()                                     -- a in use: c goes next, though newer
    k:get("d")
    assert.same({ "d", "a" }, k:keys())
    assert.equal(a, k:get("a"))
    assert.same({ "a", "b", "c", "d" }, made)
    a:release()
    assert.not_equal(b, k:get("b"))
  end)

  it("at max_keys with every limiter in use raises a \"full\" error and makes nothing", function()
    local made, factory = counting(function() return sluice.semaphore(1) end)
    local k = sluice.keyed(factory, { max_keys = 2 })
    k:get("a"):acquire()
    k:get("b"):acquire()
    local err = error_of(k.get, k, "c")
    assert.equal("full", err.kind)
    assert.equal("keyed:get: every one of the 2 limiters is in use (max_keys 2)", err.message)
    assert.same({ "a", "b" }, made)
    assert.equal(2, k.size)
    k:get("a"):release()
    k:get("c")
    assert.same({ "c", "b" }, k:keys())
    k:get("b"):release()
  end)

  it("knows when the built-in limiters are idle", function()
    local kinds = {
      bucket = function() return sluice.token_bucket{ capacity = 1, rate = 0.1 } end,
      mutex = function() return sluice.mutex() end,
      weighted = function() return sluice.weighted_semaphore(3) end,
      priority = function() return sluice.priority_semaphore(1) end,
      limit = function() return sluice.limit(1) end,
      keyed = function() return sluice.keyed(bucket) end,
    }
    local k = sluice.keyed(function(key) return kinds[key]() end, { max_keys = 6 })
    for _, name in ipairs({ "bucket", "mutex", "weighted", "priority", "limit", "keyed" }) do k:get(name) end
    k:get("bucket"):take()
    k:get("mutex"):acquire()
    k:get("weighted"):acquire(2)
    k:get("priority"):acquire(1)
    local call = k:get("limit")(function() sluice.sleep(1) end)
    k:get("keyed"):get("x")
    local inner = sluice.keyed(bucket)
    kinds.other = function() return inner end
    assert.equal("keyed:get: every one of the 6 limiters is in use (max_keys 6)", error_of(k.get, k, "other").message)
    k:get("mutex"):release()
    k:get("other")                                  -- mutex dropped
    assert.equal(6, k.size)
    assert.is_nil(({ k:keys() })[1].mutex)
    call:await()
    k:get("mutex")                                  -- limit dropped (the oldest idle one)
    local keys = {}
    for _, key in ipairs(k:keys()) do keys[key] = true end
    assert.same({ bucket = true, weighted = true, priority = true, keyed = true, other = true, mutex = true }, keys)
    k:get("weighted"):release(2)
    k:get("priority"):release()
  end)

  it("asks opts.is_idle about other limiters, and requires it once something may be dropped", function()
    local busy = {}
    local k = sluice.keyed(function(key) return { name = key } end,
      { max_keys = 1, is_idle = function(lim) return not busy[lim.name] end })
    busy.a = true
    k:get("a")
    assert.equal("keyed:get: every one of the 1 limiters is in use (max_keys 1)", error_of(k.get, k, "b").message)
    busy.a = false
    assert.equal("b", k:get("b").name)
    local strict = sluice.keyed(function() return {} end, { idle = 1 })
    assert.equal("keyed:get: factory returned a table, which keyed cannot tell idle from in use (give opts.is_idle)",
      error_of(strict.get, strict, "a").message)
    assert.equal(0, strict.size)
    -- without max_keys or idle nothing is ever dropped, so any value will do
    assert.equal(7, sluice.keyed(function() return 7 end):get("a"))
  end)

  it("with: a bucket takes one token then calls fn; a semaphore calls its with", function()
    local t0 = whole_second()
    local k = sluice.keyed(function() return sluice.token_bucket{ capacity = 1, rate = 2 } end)
    assert.same({ "r", 1 }, { k:with("h", function(x) return "r", x end, 1) })
    assert.same({ "r", 2 }, { k:with("h", function(x) return "r", x end, 2) })
    assert.equal(t0 + 0.5, sluice.now())                -- the second waited for its token
    local s = sluice.keyed(function() return sluice.semaphore(1) end)
    local inside
    assert.equal(3, s:with("h", function(a, b)
      inside = s:get("h").available
      return a + b
    end, 1, 2))
    assert.equal(0, inside)
    assert.equal(1, s:get("h").available)
    local err = error_of(s.with, s, "h", function() error({ mine = true }) end)
    assert.is_true(err.mine)
    assert.equal(1, s:get("h").available)
    local w = sluice.keyed(function() return sluice.weighted_semaphore(2) end)
    assert.equal("keyed:with: a weighted_semaphore needs a weight: use keyed:get(key):with(...)",
      error_of(w.with, w, "h", function() end).message)
    local o = sluice.keyed(function() return {} end)
    assert.equal('keyed:with: the limiter for key "h" has no with(fn, ...): use keyed:get(key)',
      error_of(o.with, o, "h", function() end).message)
  end)

  it("a factory that blocks does not make two limiters for one key", function()
    local made, factory = counting(function()
      sluice.sleep(1)
      return sluice.semaphore(1)
    end)
    local k = sluice.keyed(factory)
    local t1 = sluice.spawn(function() return k:get("a") end)
    local t2 = sluice.spawn(function() return k:get("a") end)
    local a1, a2 = t1:await(), t2:await()
    assert.equal(a1, a2)
    assert.equal(1, k.size)
    assert.equal(2, #made)                              -- both called it; the second one is not kept
  end)

  it("passes the factory's errors through unchanged", function()
    local e = { mine = true }
    local k = sluice.keyed(function() error(e) end)
    assert.equal(e, error_of(k.get, k, "a"))
    assert.equal(0, k.size)
  end)

  it("checks its arguments, with exact messages", function()
    assert.equal("keyed: factory must be a function (got nil)", error_of(sluice.keyed).message)
    assert.equal("keyed: factory must be a function (got 3)", error_of(sluice.keyed, 3).message)
    assert.equal("keyed: opts must be a table (got 3)", error_of(sluice.keyed, bucket, 3).message)
    assert.equal("keyed: unknown option 'max_key'", error_of(sluice.keyed, bucket, { max_key = 3 }).message)
    for _, v in ipairs({ { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" },
                         { "2", '"2"' } }) do
      assert.equal("keyed: max_keys must be a positive integer (got " .. v[2] .. ")",
        error_of(sluice.keyed, bucket, { max_keys = v[1] }).message)
    end
    for _, v in ipairs({ { 0, "0" }, { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" }, { "2", '"2"' } }) do
      assert.equal("keyed: idle must be a finite positive number of seconds (got " .. v[2] .. ")",
        error_of(sluice.keyed, bucket, { idle = v[1] }).message)
    end
    assert.equal("keyed: is_idle must be a function (got boolean)",
      error_of(sluice.keyed, bucket, { is_idle = true }).message)
    local k = sluice.keyed(bucket)
    assert.equal("keyed:get: key must not be nil", error_of(k.get, k).message)
    assert.equal("keyed:get: key must not be nan", error_of(k.get, k, 0 / 0).message)
    assert.equal("keyed:get: expected a keyed (got table)", error_of(k.get, {}, "a").message)
    assert.equal("keyed:get: expected a keyed (got nil)", error_of(k.get).message)
    assert.equal("keyed:with: expected a keyed (got string)", error_of(k.with, "k", "a", print).message)
    assert.equal("keyed:with: fn must be a function (got nil)", error_of(k.with, k, "a").message)
    assert.equal("keyed:with: key must not be nil", error_of(k.with, k, nil, print).message)
    assert.equal("keyed:keys: expected a keyed (got number)", error_of(k.keys, 1).message)
    assert.equal("keyed:get: factory returned nil for key \"a\"",
      error_of(sluice.keyed(function() end).get, sluice.keyed(function() end), "a").message)
    assert.equal("keyed: field 'size' is read-only", error_of(function() k.size = 1 end).message)
    assert.equal("keyed: field 'x' is not settable", error_of(function() k.x = 1 end).message)
    assert.equal(0, k.size)
  end)
end)

describe("examples/rate_limited_api.lua", function()
  it("keeps every host at 10 requests/s with no 429 and at most 8 in flight", function()
    local bin = os.getenv("SLUICE_BIN") or "build/sluice"
    local p = assert(io.popen("'" .. bin .. "' examples/rate_limited_api.lua </dev/null 2>&1; echo \"status $?\""))
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("status 0\n", 1, true), out)
    assert.truthy(out:find("a token bucket per host: done in 4.58 s, 150 served, 0 rejected with 429, " ..
      "peak 8 in flight (limit 8)", 1, true), out)
    assert.truthy(out:find("api.b.example: 50 requests; after the burst of 5, 10.0 requests/s", 1, true), out)
    assert.truthy(out:find("only the connection limit: done in 1.32 s, 51 served, 99 rejected with 429", 1, true), out)
    assert.truthy(out:find("buckets kept: 3; 2 s after the last request: 0", 1, true), out)
  end)
end)
