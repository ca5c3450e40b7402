-- sluice.cache{ttl=, max_entries=, negative_ttl=, stale=}: a cache whose
-- get(key, fetcher) runs one fetch per key however many tasks miss at
-- once (singleflight), so an expired hot key costs one backend call, not
-- one per request (the thundering herd).
--
-- Design.  Entries live in a table by key and on an LRU list (a ring
-- through a sentinel, most recent first).  A miss starts a fetch: a task
-- that calls fetcher(key) and records its outcome in a record of its own;
-- the callers wait for it with task:await, whose queue lives in C, and
-- read the outcome when it settles.  The fetch task belongs to the cache,
-- not to the first caller: it is spawned in a scope the cache owns, so
-- cancelling a caller (or a caller's scope: a sluice.timeout around one
-- get) never cancels the fetch the others wait on, and no caller's scope
-- waits for it.  The scope is opened when a fetch starts and closed when
-- the last running fetch ends, so an idle cache holds no runtime
-- resources.  The fetcher itself runs in a scope of its own inside the
-- fetch task: the tasks it spawns belong to that fetch, which ends when
-- they have.  c:close() cancels the fetches still running.
--
-- Waiters.  A fetch counts its waiters.  A waiter cancelled while waiting
-- leaves; the others keep waiting.  When the last one leaves, the fetch
-- is cancelled (a fetch that has not started yet is marked so that it
-- ends at once instead) and forgotten, so the next get starts a fresh
-- one.  A background refresh (stale=) has no waiter of its own and is not
-- cancelled when waiters that joined it leave.
--
-- Bounds.  max_entries counts stored entries (values and cached errors,
-- expired ones included until they are looked up or evicted); fetches in
-- flight are not entries, never count and are never evicted: their
-- results are stored when they end, evicting the least recently used.
-- invalidate(key) and clear() also detach the fetches in flight: their
-- waiters still get their outcome, but it is not stored (it may predate
-- the invalidation) and the next get fetches afresh.
local core = require "sluice.core"

local type, error, pcall, setmetatable, getmetatable, rawequal, pairs, next, tostring =
      type, error, pcall, setmetatable, getmetatable, rawequal, pairs, next, tostring
local floor, huge, fmt = math.floor, math.huge, string.format
local c_now, c_await, c_current = core.now, core.await, core.current
local scope_new, scope_spawn, scope_close = core.scope_new, core.scope_spawn, core.scope_close

local WAKE_CANCEL = 2
local OPTIONS = { ttl = true, max_entries = true, negative_ttl = true, stale = true }

return function(M, I)
  local raise, new_error, describe, raise_cancelled = I.raise, I.new_error, I.describe, I.raise_cancelled
  local co_isyieldable, blocked, check_function = I.co_isyieldable, I.blocked, I.check_function

  local Cache = {}         -- the metatable
  local methods = {}
  local getters = {}

  local function check_self(c, fname)
    if not rawequal(getmetatable(c), Cache) then
      raise("invalid", fmt("%s: expected a cache (got %s)", fname, type(c)), 3)
    end
  end

  local function check_block(fname)
    if not co_isyieldable() then blocked(fname) end
  end

  local function check_key(fname, key)
    if key == nil or key ~= key then
      raise("invalid", fmt("%s: key must not be nil or nan (got %s)", fname, describe(key)), 3)
    end
  end

  local function closed_error(level)
    return new_error("closed", "cache:get: the cache is closed", level + 1)
  end

  ------------------------------------------------------------ the LRU ring

  local function unlink(e)
    e.prev.next, e.next.prev = e.next, e.prev
  end

  local function push_front(c, e)
    local head = c.ring
    e.prev, e.next = head, head.next
    head.next.prev = e
    head.next = e
  end

  local function drop(c, e)
    unlink(e)
    c.entries[e.key] = nil
    c.count = c.count - 1
  end

  -- Stores an entry (replacing the key's old one) and evicts the least
  -- recently used entries beyond max_entries.
  local function store(c, key, value, failed, ttl)
    local old = c.entries[key]
    if old then drop(c, old) end
    local e = { key = key, value = value, failed = failed, expires = c_now() + ttl, prev = false, next = false }
    c.entries[key] = e
    c.count = c.count + 1
    push_front(c, e)
    while c.count > c.max_entries do
      drop(c, c.ring.prev)
      c.st_evictions = c.st_evictions + 1
    end
  end

  ------------------------------------------------------------ fetches

  -- Called by every fetch task as its last act: when no fetch runs any
  -- more, the cache's scope is closed.  Closing drops the registry's hold
  -- on the scope, but this task still has to settle in it: the body
  -- returns the scope, so the task's results keep it alive until then
  -- (the cache itself may be unreachable by now).
  local function fetch_ended(c)
    local s = c.scope
    c.running = c.running - 1
    if c.running == 0 then scope_close(s) end
    return s
  end

  -- The body of a fetch task.  It never raises: the outcome goes into the
  -- record for the waiters, so a failed fetch is neither reported as an
  -- unobserved task failure nor a failure of the cache's scope.  The
  -- fetcher runs in a scope of its own, so the tasks it spawns belong to
  -- the fetch (it ends when they have) and the cache's scope holds fetch
  -- tasks only.
  local function fetch_body(c, rec, key, fetcher)
    if rec.state ~= "pending" then return fetch_ended(c) end   -- abandoned before it started
    rec.state = "running"
    local ok, v = pcall(M.scope, function()
      rec.runner = c_current()
      return fetcher(key)
    end)
    if rec.state == "running" then
      rec.state = "done"
      rec.ok, rec.value = ok, v
      local own = c.flights[key] == rec
      if own then c.flights[key] = nil end
      if ok then
        if own then store(c, key, v, false, c.ttl) end
      else
        c.st_errors = c.st_errors + 1
        -- A failed refresh keeps the stale entry it was refreshing.
        local e = c.entries[key]
        local keep = e and not e.failed and c_now() < e.expires + c.stale
        if own and c.negative_ttl and not keep then store(c, key, v, true, c.negative_ttl) end
      end
    end
    -- otherwise cancelled ("left": no waiter wants it; "closed": the
    -- waiters raise closed): nothing is stored
    return fetch_ended(c)
  end

  local function start_fetch(c, key, fetcher, background)
    if c.running == 0 then c.scope = scope_new() end
    local rec = { task = false, runner = false, waiters = 0, state = "pending", ok = false,
                  value = nil, background = background }
    rec.task = scope_spawn(c.scope, fetch_body, c, rec, key, fetcher)
    rec.task.name = "cache fetch"
    c.running = c.running + 1
    c.flights[key] = rec
    c.st_fetches = c.st_fetches + 1
    return rec
  end

  -- Stops a fetch nobody waits for: cancels it if it has started, else
  -- marks it so that it ends as soon as it starts.  why is "left" (the
  -- last waiter left) or "closed".
  local function stop_fetch(c, key, rec, why)
    if c.flights[key] == rec then c.flights[key] = nil end
    if rec.state == "done" then return end
    local started = rec.state == "running"
    rec.state = why
    if started then rec.task:cancel() end
  end

  ------------------------------------------------------------ methods

  -- c:get(key, fetcher) -> value; raises the fetch's error.
  function methods.get(c, key, fetcher)
    check_self(c, "cache:get")
    check_key("cache:get", key)
    check_function("cache:get", "fetcher", fetcher)
    if c.closed then error(closed_error(2), 0) end
    local e, now = c.entries[key], c_now()
    if e then
      if now < e.expires then
        c.st_hits = c.st_hits + 1
        if e.prev ~= c.ring then unlink(e); push_front(c, e) end
        if e.failed then error(e.value, 0) end
        return e.value
      end
      if not e.failed and now < e.expires + c.stale then
        c.st_stale_hits = c.st_stale_hits + 1
        if e.prev ~= c.ring then unlink(e); push_front(c, e) end
        if not c.flights[key] then start_fetch(c, key, fetcher, true) end
        return e.value
      end
    end
    check_block("cache:get")
    local rec, me = c.flights[key], c_current()
    if rec and (rec.runner == me or rec.task == me) then
      raise("deadlock", "cache:get: the fetch of this key called get for it (it would wait for itself)", 2)
    end
    if e then drop(c, e) end   -- expired: a waiting get will replace it
    c.st_misses = c.st_misses + 1
    rec = rec or start_fetch(c, key, fetcher, false)
    rec.waiters = rec.waiters + 1
    local w = c_await(rec.task)
    rec.waiters = rec.waiters - 1
    if w == WAKE_CANCEL then
      if rec.waiters == 0 and not rec.background then stop_fetch(c, key, rec, "left") end
      raise_cancelled(2)
    end
    if rec.state == "closed" then error(closed_error(2), 0) end
    if rec.ok then return rec.value end
    error(rec.value, 0)
  end

  -- c:invalidate(key) -> true if an entry or a fetch was dropped
  function methods.invalidate(c, key)
    check_self(c, "cache:invalidate")
    check_key("cache:invalidate", key)
    local e, rec = c.entries[key], c.flights[key]
    if e then drop(c, e) end
    if rec then c.flights[key] = nil end   -- detached: runs on for its waiters
    return e ~= nil or rec ~= nil
  end

  function methods.clear(c)
    check_self(c, "cache:clear")
    c.entries, c.flights, c.count = {}, {}, 0
    c.ring.next, c.ring.prev = c.ring, c.ring
  end

  -- c:close(): cancels the fetches in flight (their waiters raise a
  -- "closed" error), drops every entry; later gets raise "closed".
  function methods.close(c)
    check_self(c, "cache:close")
    if c.closed then return end
    c.closed = true
    for key, rec in pairs(c.flights) do stop_fetch(c, key, rec, "closed") end
    -- detached fetches (invalidate, clear) are not in c.flights: they
    -- run to their end for their waiters and store nothing
    methods.clear(c)
  end

  -- c:lru() -> { keys, most recently used first }
  function methods.lru(c)
    check_self(c, "cache:lru")
    local out, e = {}, c.ring.next
    while e ~= c.ring do
      out[#out + 1] = e.key
      e = e.next
    end
    return out
  end

  function methods.stats(c)
    check_self(c, "cache:stats")
    local n = 0
    for _ in pairs(c.flights) do n = n + 1 end
    return {
      hits = c.st_hits, misses = c.st_misses, fetches = c.st_fetches, errors = c.st_errors,
      stale_hits = c.st_stale_hits, evictions = c.st_evictions, size = c.count, inflight = n,
    }
  end

  getters.size = function(c) return c.count end
  getters.inflight = function(c)
    local n = 0
    for _ in pairs(c.flights) do n = n + 1 end
    return n
  end

  Cache.__index = function(c, k)
    local m = methods[k]
    if m then return m end
    local g = getters[k]
    if g then return g(c) end
  end
  Cache.__newindex = function(_, k)
    raise("invalid", fmt("cache: field '%s' is %s", tostring(k),
      getters[k] and "read-only" or "not settable"), 2)
  end
  Cache.__tostring = function(c)
    return fmt("cache (%d entries, %d fetching)", c.count, getters.inflight(c))
  end

  ------------------------------------------------------------ constructor

  local function check_opt(opts, name, integer)
    local v = opts[name]
    if v == nil then return nil end
    if integer then
      if type(v) ~= "number" or v < 1 or v ~= floor(v) or v == huge then
        raise("invalid", fmt("cache: %s must be a positive integer (got %s)", name, describe(v)), 3)
      end
    elseif type(v) ~= "number" or v ~= v or v <= 0 or v == huge then
      raise("invalid", fmt("cache: %s must be a finite positive number (got %s)", name, describe(v)), 3)
    end
    return v
  end

  -- sluice.cache([opts]) -> cache.  opts: ttl (seconds an entry is fresh;
  -- default: forever), max_entries (default: unbounded), negative_ttl
  -- (seconds an error is cached; default: errors are not cached), stale
  -- (seconds past expiry an entry is still served while one background
  -- refresh runs; default 0).
  function M.cache(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then
      raise("invalid", "cache: opts must be a table (got " .. describe(opts) .. ")", 2)
    end
    for k in next, opts do
      if not OPTIONS[k] then raise("invalid", "cache: unknown option " .. describe(k), 2) end
    end
    local ttl = check_opt(opts, "ttl") or huge
    local max_entries = check_opt(opts, "max_entries", true) or huge
    local negative_ttl = check_opt(opts, "negative_ttl") or false
    local stale = check_opt(opts, "stale") or 0
    local ring = { prev = false, next = false }
    ring.prev, ring.next = ring, ring
    return setmetatable({
      ttl = ttl, max_entries = max_entries, negative_ttl = negative_ttl, stale = stale,
      entries = {}, flights = {}, ring = ring, count = 0, closed = false,
      scope = false, running = 0,
      st_hits = 0, st_misses = 0, st_fetches = 0, st_errors = 0, st_stale_hits = 0,
      st_evictions = 0,
    }, Cache)
  end
end
