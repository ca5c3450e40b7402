-- sluice.cache: hits and misses on the virtual clock, one fetch for a
-- herd of concurrent misses, errors (not cached, or for negative_ttl),
-- LRU eviction, stale-while-refresh, cancellation of one waiter and of
-- the last, fetches owned by the cache (not by the first caller), a
-- fetcher's own tasks, close, invalidate, clear, argument checks; a
-- randomized property test; the thundering-herd example.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of = util.tracer, util.error_of

-- A fetcher that logs its calls, takes d seconds and returns key .. n
-- (n counting its calls).
local function fetcher(log, d)
  local n = 0
  return function(key)
    n = n + 1
    local my = n
    log("fetch " .. tostring(key) .. " #" .. my .. " at " .. sluice.now())
    sluice.sleep(d or 1)
    return key .. my
  end
end

local function counts(c)
  local s = c:stats()
  return { hits = s.hits, misses = s.misses, fetches = s.fetches, errors = s.errors,
           stale_hits = s.stale_hits, evictions = s.evictions, size = s.size, inflight = s.inflight }
end

describe("sluice.cache", function()
  it("fetches on a miss, serves hits until ttl, then fetches again", function()
    local trace, log = tracer()
    local c = sluice.cache { ttl = 10 }
    local t0 = sluice.now()
    assert.equal("a1", c:get("a", fetcher(log)))
    assert.equal(t0 + 1, sluice.now())
    local f = fetcher(log)
    assert.equal("a1", c:get("a", f))       -- a hit: no wait, no fetch
    assert.equal(t0 + 1, sluice.now())
    sluice.sleep(9.5)
    assert.equal("a1", c:get("a", f))       -- 9.5 s old: still fresh
    sluice.sleep(0.5)
    assert.equal("a1", c:get("a", f))       -- 10 s old: expired, fetched again
    assert.equal(t0 + 12, sluice.now())
    assert.same({ "fetch a #1 at " .. t0, "fetch a #1 at " .. (t0 + 11) }, trace)
    assert.same({ hits = 2, misses = 2, fetches = 2, errors = 0, stale_hits = 0, evictions = 0,
                  size = 1, inflight = 0 }, counts(c))
    assert.equal(1, c.size)
    assert.equal("cache (1 entries, 0 fetching)", tostring(c))
  end)

  it("thundering herd: 1,000 concurrent gets of an expired key run one fetch", function()
    local c = sluice.cache { ttl = 5 }
    local backend = 0
    local function load(key)
      backend = backend + 1
      sluice.sleep(0.25)
      return key .. " v" .. backend
    end
    assert.equal("hot v1", c:get("hot", load))
    sluice.sleep(5)                          -- the entry expires
    local t0 = sluice.now()
    local got = {}
    sluice.scope(function(s)
      for i = 1, 1000 do
        s:spawn(function() got[i] = c:get("hot", load) end)
      end
      sluice.yield()
      assert.equal(1, c.inflight)
    end)
    assert.equal(2, backend)
    assert.equal(t0 + 0.25, sluice.now())
    for i = 1, 1000 do assert.equal("hot v2", got[i]) end
    assert.same({ hits = 0, misses = 1001, fetches = 2, errors = 0, stale_hits = 0, evictions = 0,
                  size = 1, inflight = 0 }, counts(c))
  end)

  it("keeps different keys' fetches apart", function()
    local trace, log = tracer()
    local c = sluice.cache()
    local f = fetcher(log)
    local a = sluice.spawn(function() return c:get("a", f) end)
    local b = sluice.spawn(function() return c:get("b", f) end)
    local a2 = sluice.spawn(function() return c:get("a", f) end)
    assert.equal("a1", a:await())
    assert.equal("b2", b:await())
    assert.equal("a1", a2:await())
    assert.equal(2, #trace)
  end)

  it("does not cache errors: every waiter gets the error, the next get fetches again", function()
    local c = sluice.cache { ttl = 10 }
    local calls, boom = 0, { "boom" }
    local function failing()
      calls = calls + 1
      sluice.sleep(1)
      error(boom)
    end
    local ts = {}
    for i = 1, 3 do ts[i] = sluice.spawn(function() return pcall(c.get, c, "k", failing) end) end
    for i = 1, 3 do
      local ok, err = ts[i]:await()
      assert.is_false(ok)
      assert.equal(boom, err)                -- the error itself, unchanged
    end
    assert.equal(1, calls)
    assert.equal(0, c.size)
    local ok, err = pcall(c.get, c, "k", failing)
    assert.is_false(ok)
    assert.equal(boom, err)
    assert.equal(2, calls)
    assert.equal("fine", c:get("k", function() return "fine" end))
    assert.same({ hits = 0, misses = 5, fetches = 3, errors = 2, stale_hits = 0, evictions = 0,
                  size = 1, inflight = 0 }, counts(c))
  end)

  it("caches an error for negative_ttl", function()
    local c = sluice.cache { ttl = 10, negative_ttl = 2 }
    local calls = 0
    local function failing()
      calls = calls + 1
      error("down " .. calls, 0)
    end
    local t0 = sluice.now()
    assert.equal("down 1", select(2, pcall(c.get, c, "k", failing)))
    sluice.sleep(1.5)
    assert.equal("down 1", select(2, pcall(c.get, c, "k", failing)))   -- cached
    assert.equal(1, calls)
    sluice.sleep(0.5)
    assert.equal("down 2", select(2, pcall(c.get, c, "k", failing)))   -- 2 s: fetched again
    assert.equal(2, calls)
    assert.equal(t0 + 2, sluice.now())
    assert.same({ hits = 1, misses = 2, fetches = 2, errors = 2, stale_hits = 0, evictions = 0,
                  size = 1, inflight = 0 }, counts(c))
    sluice.sleep(2)
    assert.equal("ok", c:get("k", function() return "ok" end))
    sluice.sleep(9)
    assert.equal("ok", c:get("k", failing))   -- a value keeps its own ttl
  end)

  it("evicts the least recently used entry beyond max_entries", function()
    local c = sluice.cache { max_entries = 3 }
    local function id(k) return k end
    c:get("a", id); c:get("b", id); c:get("c", id)
    assert.same({ "c", "b", "a" }, c:lru())
    c:get("a", id)                           -- a hit makes a the most recent
    assert.same({ "a", "c", "b" }, c:lru())
    c:get("d", id)                           -- evicts b
    assert.same({ "d", "a", "c" }, c:lru())
    c:get("e", id)                           -- evicts c
    assert.same({ "e", "d", "a" }, c:lru())
    local refetched = false
    c:get("b", function(k) refetched = true return k end)   -- b was evicted
    assert.is_true(refetched)
    assert.same({ "b", "e", "d" }, c:lru())
    assert.same({ hits = 1, misses = 6, fetches = 6, errors = 0, stale_hits = 0, evictions = 3,
                  size = 3, inflight = 0 }, counts(c))
  end)

  it("does not count fetches in flight against max_entries: they are stored when they end", function()
    local trace, log = tracer()
    local c = sluice.cache { max_entries = 1 }
    local f = fetcher(log)
    local ts = {}
    for i, k in ipairs { "x", "y", "z" } do
      ts[i] = sluice.spawn(function() sluice.sleep(i * 0.1) return c:get(k, f) end)
    end
    sluice.sleep(0.5)
    assert.same({ size = 0, inflight = 3 }, { size = c.size, inflight = c.inflight })
    for i = 1, 3 do ts[i]:await() end
    assert.same({ "z" }, c:lru())
    assert.equal(2, c:stats().evictions)
  end)

  it("serves a stale entry at once while one background refresh runs", function()
    local trace, log = tracer()
    local c = sluice.cache { ttl = 10, stale = 5 }
    local f = fetcher(log, 2)
    local t0 = sluice.now()
    assert.equal("k1", c:get("k", f))        -- fetched: fresh until t0 + 12
    sluice.sleep(11)                         -- t0 + 13: 1 s past expiry
    assert.equal("k1", c:get("k", f))        -- stale, served at once
    assert.equal(t0 + 13, sluice.now())
    assert.equal(1, c.inflight)
    sluice.sleep(1)
    assert.equal("k1", c:get("k", f))        -- still refreshing: stale again, no second fetch
    sluice.sleep(1)                          -- t0 + 15: the refresh ends
    sluice.yield()                           -- (after this task's timer, same instant)
    assert.equal(0, c.inflight)
    assert.equal("k2", c:get("k", f))        -- fresh
    assert.same({ "fetch k #1 at " .. t0, "fetch k #2 at " .. (t0 + 13) }, trace)
    sluice.sleep(15)                         -- t0 + 30: 5 s past expiry: too stale
    assert.equal("k3", c:get("k", f))
    assert.equal(t0 + 32, sluice.now())
    assert.same({ hits = 1, misses = 2, fetches = 3, errors = 0, stale_hits = 2, evictions = 0,
                  size = 1, inflight = 0 }, counts(c))
  end)

  it("keeps the stale entry when its refresh fails", function()
    local c = sluice.cache { ttl = 10, stale = 5, negative_ttl = 60 }
    assert.equal("v", c:get("k", function() return "v" end))
    sluice.sleep(11)
    local failing = function() error("refresh failed", 0) end
    assert.equal("v", c:get("k", failing))   -- stale; the refresh fails at once
    sluice.sleep(0.5)
    assert.equal(1, c:stats().errors)
    assert.equal("v", c:get("k", failing))   -- still the stale value, not the error
    sluice.sleep(1)
  end)

  it("a cancelled waiter leaves; the others keep waiting for the one fetch", function()
    local trace, log = tracer()
    local c = sluice.cache()
    local f = fetcher(log, 2)
    local t0 = sluice.now()
    local ts = {}
    for i = 1, 3 do
      ts[i] = sluice.spawn(function()
        local v = c:get("k", f)
        log(i .. " got " .. v .. " at " .. sluice.now())
      end)
    end
    sluice.sleep(1)
    ts[1]:cancel()                           -- the first caller, which started the fetch
    sluice.sleep(0.5)
    ts[2]:cancel()
    for i = 1, 3 do ts[i]:result() end
    ts[3]:await()
    assert.equal("cancelled", ts[1].status)
    assert.equal("cancelled", ts[2].status)
    assert.same({ "fetch k #1 at " .. t0, "3 got k1 at " .. (t0 + 2) }, trace)
    assert.same({ fetches = 1, size = 1 }, { fetches = c:stats().fetches, size = c.size })
  end)

  it("cancelling the last waiter cancels the fetch; a later get starts a fresh one", function()
    local trace, log = tracer()
    local c = sluice.cache()
    local t0 = sluice.now()
    local n = 0
    local function slow(key)
      n = n + 1
      local my = n
      log("fetch #" .. my .. " starts at " .. sluice.now())
      local ok, err = pcall(sluice.sleep, 10)
      if not ok then
        log("fetch #" .. my .. " " .. err.kind .. " at " .. sluice.now())
        error(err, 0)
      end
      return key .. my
    end
    local a = sluice.spawn(function() return c:get("k", slow) end)
    local b = sluice.spawn(function() return c:get("k", slow) end)
    sluice.sleep(1)
    a:cancel()
    sluice.sleep(1)
    b:cancel()
    sluice.yield()                           -- b leaves: the fetch is cancelled and forgotten
    assert.equal(0, c.inflight)
    sluice.sleep(1)
    assert.equal("k2", c:get("k", slow))
    assert.equal(t0 + 13, sluice.now())
    assert.same({ "fetch #1 starts at " .. t0, "fetch #1 cancelled at " .. (t0 + 2),
                  "fetch #2 starts at " .. (t0 + 3) }, trace)
    assert.same({ hits = 0, misses = 3, fetches = 2, errors = 0, stale_hits = 0, evictions = 0,
                  size = 1, inflight = 0 }, counts(c))
    a:result(); b:result()
  end)

  it("a fetch abandoned before it started never calls the fetcher", function()
    local c = sluice.cache()
    local called = false
    -- t is cancelled while shielded, so its get finds the cancellation
    -- pending: it leaves at once, before the fetch it started has run.
    local t = sluice.spawn(function()
      sluice.shield(sluice.sleep, 1)
      return c:get("k", function() called = true end)
    end)
    sluice.sleep(0.5)
    t:cancel()
    assert.equal("cancelled", error_of(t.await, t).kind)
    sluice.yield()
    assert.is_false(called)
    assert.same({ fetches = 1, inflight = 0, size = 0 },
      { fetches = c:stats().fetches, inflight = c.inflight, size = c.size })
  end)

  it("the fetch belongs to the cache: a timeout around the first get does not cancel it", function()
    local trace, log = tracer()
    local c = sluice.cache()
    local f = fetcher(log, 3)
    local t0 = sluice.now()
    local first = sluice.spawn(function()
      return pcall(sluice.timeout, 1, function() return c:get("k", f) end)
    end)
    local other = sluice.spawn(function() sluice.sleep(0.5) return c:get("k", f) end)
    local ok, err = first:await()
    assert.is_false(ok)
    assert.equal("timeout", err.kind)
    assert.equal(t0 + 1, sluice.now())       -- the timeout did not wait for the fetch
    assert.equal("k1", other:await())
    assert.equal(t0 + 3, sluice.now())
    assert.same({ "fetch k #1 at " .. t0 }, trace)
  end)

  it("close cancels the fetches in flight; their waiters and later gets raise closed", function()
    local trace, log = tracer()
    local c = sluice.cache()
    local function slow()
      local ok, err = pcall(sluice.sleep, 10)
      log(ok and "fetch ended" or "fetch " .. err.kind .. " at " .. sluice.now())
      return "v"
    end
    c:get("a", function() return "a" end)
    local t0 = sluice.now()
    local w = sluice.spawn(function() return c:get("k", slow) end)
    sluice.sleep(1)
    -- a waiter whose fetch has not started yet when the cache closes
    local early = sluice.spawn(function() return c:get("n", function() log("never") end) end)
    sluice.yield()
    c:close()
    local err = error_of(w.await, w)
    assert.equal("closed", err.kind)
    assert.equal("cache:get: the cache is closed", err.message)
    assert.equal("closed", error_of(early.await, early).kind)
    assert.same({ "fetch cancelled at " .. (t0 + 1) }, trace)
    assert.equal(0, c.size)
    err = error_of(c.get, c, "a", function() return "a" end)
    assert.equal("cache:get: the cache is closed", err.message)
    c:close()                                -- closing twice is harmless
  end)

  it("invalidate drops an entry and detaches the fetch in flight", function()
    local trace, log = tracer()
    local c = sluice.cache()
    local f = fetcher(log, 2)
    assert.equal("a1", c:get("a", f))
    assert.is_true(c:invalidate("a"))
    assert.is_false(c:invalidate("a"))
    assert.equal(0, c.size)
    local t0 = sluice.now()
    local old = sluice.spawn(function() return c:get("a", f) end)
    sluice.sleep(1)
    assert.is_true(c:invalidate("a"))        -- the fetch runs on for `old`, is not stored
    local new = sluice.spawn(function() return c:get("a", f) end)
    assert.equal("a2", old:await())
    assert.equal("a3", new:await())
    assert.equal(t0 + 3, sluice.now())
    assert.equal("a3", c:get("a", f))
    assert.same({ "a" }, c:lru())
  end)

  it("clear drops every entry", function()
    local c = sluice.cache()
    for _, k in ipairs { 1, 2, 3 } do c:get(k, function(x) return x * 10 end) end
    assert.equal(3, c.size)
    assert.same({ 3, 2, 1 }, c:lru())
    c:clear()
    assert.equal(0, c.size)
    assert.same({}, c:lru())
    assert.equal(40, c:get(4, function(x) return x * 10 end))
  end)

  it("stores nil and false results like any value", function()
    local c = sluice.cache()
    local n = 0
    local function f() n = n + 1 return nil end
    assert.is_nil(c:get("k", f))
    assert.is_nil(c:get("k", f))
    assert.equal(1, n)
    assert.is_false(c:get("b", function() return false end))
    assert.is_false(c:get("b", f))
  end)

  it("the tasks a fetcher spawns belong to its fetch: it ends when they have", function()
    local trace, log = tracer()
    local c = sluice.cache()
    local t0 = sluice.now()
    local v = c:get("k", function(key)
      sluice.spawn(function()
        sluice.sleep(2)
        log("child done at " .. sluice.now() - t0)
      end)
      sluice.sleep(1)
      log("fetcher returns at " .. sluice.now() - t0)
      return key .. "!"
    end)
    log("got " .. v .. " at " .. sluice.now() - t0)
    assert.same({ "fetcher returns at 1", "child done at 2", "got k! at 2" }, trace)
  end)

  it("a cache dropped while a background refresh runs is collected safely", function()
    local caches, refreshed = {}, 0
    for i = 1, 20 do
      caches[i] = sluice.cache { ttl = 0.5, stale = 10 }
      caches[i]:get(i, function(k) return k end)
    end
    sluice.sleep(0.5)
    for i = 1, 20 do
      assert.equal(i, caches[i]:get(i, function(k)   -- stale: refreshes in the background
        sluice.sleep(0.01 * k)
        refreshed = refreshed + 1
        return k
      end))
    end
    caches = nil
    local pause = collectgarbage("setpause", 0)      -- collect at every step
    for _ = 1, 30 do
      collectgarbage()
      sluice.sleep(0.01)
    end
    collectgarbage("setpause", pause)
    assert.equal(20, refreshed)
  end)

  it("a fetcher that gets its own key raises a deadlock error instead of hanging", function()
    local c = sluice.cache()
    local inner
    local function f(key)
      local ok, err = pcall(c.get, c, key, f)
      inner = err
      return "outer"
    end
    assert.equal("outer", c:get("k", f))
    assert.equal("deadlock", inner.kind)
    assert.equal("cache:get: the fetch of this key called get for it (it would wait for itself)", inner.message)
    assert.same({ 1, 1, 1, 0 }, { c.size, c:stats().misses, c:stats().fetches, c.inflight })
  end)

  it("a hit works where a task cannot block; a miss there raises", function()
    local c = sluice.cache()
    c:get("k", function() return "v" end)
    local got, err
    table.sort({ 2, 1 }, function(a, b)
      got = c:get("k", error)
      err = select(2, pcall(c.get, c, "other", error))
      return a < b
    end)
    assert.equal("v", got)
    assert.equal("cache:get: cannot block here (inside a C call such as a table.sort comparator " ..
      "or a string.gsub callback)", err.message)
    assert.same({ size = 1, inflight = 0 }, { size = c.size, inflight = c.inflight })
  end)

  it("rejects bad options with exact messages", function()
    for _, name in ipairs { "ttl", "negative_ttl", "stale" } do
      for _, v in ipairs { { 0, "0" }, { -1, "-1" }, { 0 / 0, "nan" }, { math.huge, "inf" },
                           { "2", "\"2\"" }, { {}, "table" }, { false, "boolean" } } do
        local err = error_of(sluice.cache, { [name] = v[1] })
        assert.equal("invalid", err.kind)
        assert.equal("cache: " .. name .. " must be a finite positive number (got " .. v[2] .. ")", err.message)
      end
    end
    for _, v in ipairs { { 0, "0" }, { -1, "-1" }, { 1.5, "1.5" }, { 0 / 0, "nan" }, { math.huge, "inf" },
                         { "2", "\"2\"" } } do
      assert.equal("cache: max_entries must be a positive integer (got " .. v[2] .. ")",
        error_of(sluice.cache, { max_entries = v[1] }).message)
    end
    assert.equal("cache: opts must be a table (got 5)", error_of(sluice.cache, 5).message)
    assert.equal("cache: unknown option \"tll\"", error_of(sluice.cache, { tll = 5 }).message)
    assert.equal(1.5, sluice.cache { ttl = 1.5 }.ttl)
  end)

  it("methods check self, key and fetcher, and change nothing when they reject", function()
    local c = sluice.cache()
    c:get("k", function() return 1 end)
    for _, m in ipairs { "get", "invalidate", "clear", "close", "stats", "lru" } do
      local err = error_of(c[m], {}, "k", function() end)
      assert.equal("invalid", err.kind)
      assert.equal("cache:" .. m .. ": expected a cache (got table)", err.message)
      assert.equal("cache:" .. m .. ": expected a cache (got nil)", error_of(c[m]).message)
    end
    assert.equal("cache:get: key must not be nil or nan (got nil)", error_of(c.get, c, nil, print).message)
    assert.equal("cache:get: key must not be nil or nan (got nan)", error_of(c.get, c, 0 / 0, print).message)
    assert.equal("cache:invalidate: key must not be nil or nan (got nil)", error_of(c.invalidate, c).message)
    assert.equal("cache:get: fetcher must be a function (got nil)", error_of(c.get, c, "k").message)
    assert.equal("cache:get: fetcher must be a function (got \"f\")", error_of(c.get, c, "k", "f").message)
    assert.equal("cache: field 'size' is read-only", error_of(function() c.size = 3 end).message)
    assert.equal("cache: field 'x' is not settable", error_of(function() c.x = 3 end).message)
    assert.same({ hits = 0, misses = 1, fetches = 1, errors = 0, stale_hits = 0, evictions = 0,
                  size = 1, inflight = 0 }, counts(c))
  end)
end)

---------------------------------------------------------------- property

-- Many seeded random schedules of gets (fetches of random length that
-- may fail), cancellations, invalidations, clears and time passing, on
-- random options, checked against what the cache promises:
-- - one flight: a fetcher never starts for a key while another fetch
--   for it runs, unless invalidate or clear detached that one;
-- - every value returned is the key's, from a fetch that ended less than
--   ttl + stale ago (an error: now, or less than negative_ttl ago);
-- - after invalidate(key) (or clear), a get gets nothing fetched before;
-- - a get is cancelled only if cancelled; none is left waiting;
-- - the counts add up (hits + misses + stale_hits = gets, size = the LRU
--   list's length <= max_entries), and close leaves nothing running.
-- SLUICE_PROPERTY_SCHEDULES and SLUICE_PROPERTY_SEED as for the others.
local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")

local KEYS = { "a", "b", "c" }
local DURATIONS = { 0, 0.5, 1, 2 }
local ADVANCES = { 0.25, 0.5, 1, 2 }
local STEPS = 16

local function cache_schedule(seed)
  local r = property.prng(seed)
  local fmt = string.format
  local opts = { ttl = ({ 1, 2, 3 })[r(3)] }
  if r(2) == 1 then opts.stale = ({ 0.5, 1, 2 })[r(3)] end
  if r(3) == 1 then opts.negative_ttl = ({ 0.5, 1 })[r(2)] end
  if r(2) == 1 then opts.max_entries = r(3) end
  local nkeys = r(3)
  local c = sluice.cache(opts)
  local problems = {}
  local function bad(...) problems[#problems + 1] = fmt(...) end

  local gen = { a = 0, b = 0, c = 0 }   -- bumped by invalidate / clear
  local running = {}                     -- fetch id -> { key =, gen = }
  local ended = {}                       -- fetch id -> time it ended
  local nfetch, gets, tasks, cancelled = 0, 0, {}, {}
  local trace = os.getenv("SLUICE_PROPERTY_TRACE") and function(...) print(sluice.now(), fmt(...)) end or function() end

  -- born.gen: the key's generation when the get that made it was called
  -- (the fetch it starts belongs to that generation)
  local function fetcher(d, fails, born)
    return function(key)
      nfetch = nfetch + 1
      local id = nfetch
      for other, f in pairs(running) do
        if f.key == key and f.gen == born.gen then
          bad("fetch %d of %s started while fetch %d runs", id, key, other)
        end
      end
      running[id] = { key = key, gen = born.gen }
      trace("fetch %d of %s starts (%g s)", id, key, d)
      local ok, err = pcall(sluice.sleep, d)
      trace("fetch %d of %s ends: %s", id, key, ok and "ok" or tostring(err))
      running[id] = nil
      if not ok then error(err, 0) end
      ended[id] = sluice.now()
      if fails then error({ id = id, key = key, gen = running, failed = true }, 0) end
      return { id = id, key = key, gen = born.gen }
    end
  end

  local function spawn_get()
    local key = KEYS[r(nkeys)]
    local born = {}
    local f = fetcher(DURATIONS[r(4)], r(4) == 1, born)
    local g0
    local t
    t = sluice.spawn(function()
      gets = gets + 1
      g0 = gen[key]
      born.gen = g0
      trace("get %s", key)
      local ok, v = pcall(c.get, c, key, f)
      local now = sluice.now()
      if not ok then
        if sluice.is_error(v, "cancelled") then
          if not cancelled[t] then bad("a get of %s was cancelled by nobody", key) end
          error(v, 0)
        end
        if type(v) ~= "table" or not v.failed or v.key ~= key then
          bad("a get of %s raised %s", key, tostring(v))
        elseif now - ended[v.id] > (opts.negative_ttl or 0) then
          bad("a get of %s at %g got the error of fetch %d from %g", key, now, v.id, ended[v.id])
        end
        return
      end
      if type(v) ~= "table" or v.key ~= key then
        bad("a get of %s got %s", key, tostring(v and v.key))
        return
      end
      local age = now - ended[v.id]
      if age >= opts.ttl + (opts.stale or 0) then
        bad("a get of %s at %g got fetch %d, %g s old", key, now, v.id, age)
      end
      if v.gen < g0 then bad("a get of %s got fetch %d from before an invalidation", key, v.id) end
    end)
    tasks[#tasks + 1] = t
  end

  for _ = 1, STEPS do
    local op = r(10)
    if op <= 4 then
      spawn_get()
    elseif op == 5 then
      local t = tasks[r(#tasks + 1)]
      if t and t.status ~= "done" and t.status ~= "cancelled" and t.status ~= "failed" then
        cancelled[t] = true
        trace("cancel a get")
        t:cancel()
      end
    elseif op <= 7 then
      sluice.sleep(ADVANCES[r(4)])
    elseif op == 8 then
      local key = KEYS[r(nkeys)]
      gen[key] = gen[key] + 1
      trace("invalidate %s", key)
      c:invalidate(key)
    elseif op == 9 then
      for k in pairs(gen) do gen[k] = gen[k] + 1 end
      trace("clear")
      c:clear()
    else
      sluice.yield()
    end
  end
  sluice.sleep(3)   -- longer than any fetch: every get has its answer
  for _, t in ipairs(tasks) do
    if t.status ~= "done" and t.status ~= "cancelled" then bad("a get is still %s", t.status) end
    t:result()
  end
  local st = c:stats()
  if st.hits + st.misses + st.stale_hits ~= gets then
    bad("hits %d + misses %d + stale_hits %d ~= %d gets", st.hits, st.misses, st.stale_hits, gets)
  end
  if st.fetches < nfetch then bad("stats().fetches %d < %d fetcher calls", st.fetches, nfetch) end
  if c.size ~= #c:lru() or c.size > (opts.max_entries or math.huge) then
    bad("size %d, lru list %d, max_entries %s", c.size, #c:lru(), tostring(opts.max_entries))
  end
  if c.inflight ~= 0 then bad("%d fetches in flight at the end", c.inflight) end
  c:close()
  return problems
end

describe("sluice.cache property", function()
  property.batches(it, "holds its promises over random schedules (seeds %d-%d)", cache_schedule)
end)

describe("examples/thundering_herd_cache.lua", function()
  it("shows 1,000 backend calls without the cache and one with it", function()
    local BIN = os.getenv("SLUICE_BIN") or "build/sluice"
    local p = assert(io.popen("'" .. BIN .. "' examples/thundering_herd_cache.lua 2>&1; echo \"rc=$?\""))
    local out = p:read("*a")
    p:close()
    assert.equal(table.concat({
      "1000 concurrent requests for one expired key (ttl 60 s, backend 50 ms):",
      "naive cache   backend calls  1000 (peak 1000 at once)  all 1000 requests answered in 50 ms, values differ",
      "sluice.cache  backend calls     1 (peak    1 at once)  all 1000 requests answered in 50 ms, all the same value",
      "sluice.cache stats: hits 0, misses 1001, fetches 2, errors 0",
      "every request got: profile of user:42 #2",
      "rc=0", "" }, "\n"), out)
  end)
end)
