-- sluice.token_bucket{capacity=, rate=, initial=}: the Lua face of
-- lib/sl_bucket.c; and sluice.keyed(factory, opts): one limiter per key.
--
-- A token bucket holds up to `capacity` tokens (initially `initial`,
-- default full) and gains `rate` tokens a second, on the scheduler's
-- clock (virtual under the virtual clock).  take(n) takes n tokens or
-- waits exactly as long as they need to come: strictly FIFO, so a large
-- request at the head holds back the small ones behind it and a newcomer
-- never takes tokens while anyone is queued.  One timer per bucket, on
-- the scheduler's heap, is armed for the head waiter's due time: no
-- polling, and no timer at all while nobody waits.
--
-- take(n, timeout) waits until it is granted or the timeout has passed,
-- never answering "timeout" early even when the wait it needs is known to
-- be longer: the rate may be raised meanwhile, and an answer at the
-- timeout is what every other timeout in sluice gives.  timeout 0 is the
-- exception (an answer at once, as semaphore:acquire(0)); try_take is the
-- fail-fast call.  A take whose tokens are due at the very instant of its
-- timeout is granted.
--
-- rate is assignable: the tokens gained so far count at the old rate,
-- from then on at the new one, and the head waiter is re-timed.
--
-- The object is the C struct itself (an FFI cdata with a finaliser), so
-- an uncontended take is one JIT-compiled call into C.
--
-- Stats: b:stats() -> { capacity, rate, tokens, waiting, acquired,
-- waited, timeouts, cancelled, wait_total, wait_max, histogram }, as
-- semaphore:stats() (see lua/sluice/semaphore.lua).
--
-- keyed: see below.
local ffi = require "ffi"
local sffi = require "sluice.ffi"

local C, fail, grant, timeout_arg, WOKEN = sffi.C, sffi.fail, sffi.grant, sffi.timeout_arg, sffi.WOKEN
local type, pairs, pcall, tostring, setmetatable =
      type, pairs, pcall, tostring, setmetatable
local floor, huge, fmt = math.floor, math.huge, string.format
local istype = ffi.istype

local NAME = "token_bucket"
local FOREIGN = C.SL_BUCKET_R_FOREIGN
local BUCKET_OPTS = { capacity = true, rate = true, initial = true }
local KEYED_OPTS = { max_keys = true, idle = true, is_idle = true }

return function(M, I)
  local raise, describe = I.raise, I.describe
  local co_isyieldable, co_yield, PARK = I.co_isyieldable, I.co_yield, I.PARK
  local check_function = I.check_function

  ------------------------------------------------------------ token_bucket

  local bucket_ptr = ffi.typeof("sl_bucket *")
  local methods = {}

  local function check_self(b, fname)
    if not istype(bucket_ptr, b) then
      raise("invalid", fmt("%s: expected a %s (got %s)", fname, NAME, type(b)), 3)
    end
  end

  -- A finite positive number, else an error naming fname and what.
  local function check_positive(fname, what, v, level)
    if type(v) ~= "number" or v ~= v or v <= 0 or v == huge then
      raise("invalid", fmt("%s: %s must be a finite positive number (got %s)", fname, what, describe(v)),
        level + 1)
    end
  end

  -- The n of take/try_take: 1 by default, finite, positive, within the
  -- capacity.
  local function check_n(b, fname, n)
    if n == nil then return 1 end
    check_positive(fname, "n", n, 3)
    local cap = C.sl_bucket_capacity(b)
    if n > cap then
      raise("invalid", fmt("%s: n %s exceeds the capacity %s", fname, describe(n), describe(cap)), 3)
    end
    return n
  end

  local function foreign(fname, level)
    raise("invalid", fname .. ": the bucket belongs to another scheduler (it was made inside or " ..
      "outside this sluice.run)", level + 1)
  end

  -- b:take([n [, timeout]]) -> true | nil, "timeout"
  function methods.take(b, n, timeout)
    local fname = NAME .. ":take"
    check_self(b, fname)
    n = check_n(b, fname, n)
    timeout = timeout_arg(I, fname, timeout)
    local can_block = co_isyieldable() and 1 or 0   -- ahead of the call: see semaphore.lua
    local r = C.sl_bucket_take(b, n, timeout, can_block)
    if r == 0 then r = WOKEN - co_yield(PARK) end
    if r == 1 then return true end
    local ok, why = grant(I, r, C.sl_bucket_abandon, b, n)
    if ok then return true end
    if ok == nil then return nil, why end
    if why == FOREIGN then foreign(fname, 2) end
    fail(I, why, fname)
  end

  -- b:try_take([n]) -> true | false, never waits (nor barges)
  function methods.try_take(b, n)
    local fname = NAME .. ":try_take"
    check_self(b, fname)
    n = check_n(b, fname, n)
    local r = C.sl_bucket_try_take(b, n)
    if r == 1 then return true end
    if r == 0 then return false end
    if r == FOREIGN then foreign(fname, 2) end
    fail(I, r, fname)
  end

  local function tokens(b, fname, level)
    local v = C.sl_bucket_tokens(b)
    if v < 0 then foreign(fname, level + 1) end
    return v
  end

  function methods.stats(b)
    local fname = NAME .. ":stats"
    check_self(b, fname)
    return sffi.stats(C.sl_bucket_prim(b), {
      capacity = C.sl_bucket_capacity(b), rate = C.sl_bucket_rate(b), tokens = tokens(b, fname, 2),
    })
  end

  local getters = {
    tokens = function(b) return tokens(b, NAME, 3) end,
    capacity = function(b) return C.sl_bucket_capacity(b) end,
    rate = function(b) return C.sl_bucket_rate(b) end,
    waiting = function(b) return C.sl_prim_waiting(C.sl_bucket_prim(b)) end,
  }

  ffi.metatype("sl_bucket", {
    __index = sffi.indexer(methods, getters),
    -- rate: the tokens gained so far count at the old rate, from now on
    -- at the new one; the head waiter is re-timed.
    __newindex = function(b, k, v)
      if k ~= "rate" then
        raise("invalid", fmt("%s: field '%s' is %s", NAME, tostring(k),
          getters[k] and "read-only" or "not settable"), 2)
      end
      check_positive(NAME, "rate", v, 2)
      local r = C.sl_bucket_set_rate(b, v)
      if r == FOREIGN then foreign(NAME, 2) end
      if r ~= 1 then raise("invalid", NAME .. ": rate can only be set from a task", 2) end
    end,
    __tostring = function(b)
      local v = C.sl_bucket_tokens(b)
      return fmt("%s (%s/%s tokens, %s/s, %d waiting)", NAME, v < 0 and "?" or describe(v),
        describe(C.sl_bucket_capacity(b)), describe(C.sl_bucket_rate(b)),
        C.sl_prim_waiting(C.sl_bucket_prim(b)))
    end,
  })

  local function check_opts(fname, opts, known, level)
    if type(opts) ~= "table" then
      raise("invalid", fmt("%s: opts must be a table (got %s)", fname, describe(opts)), level + 1)
    end
    for k in pairs(opts) do
      if not known[k] then raise("invalid", fmt("%s: unknown option '%s'", fname, tostring(k)), level + 1) end
    end
  end

  -- sluice.token_bucket{capacity=, rate= [, initial=]}
  function M.token_bucket(opts)
    check_opts(NAME, opts, BUCKET_OPTS, 2)
    local cap, rate, initial = opts.capacity, opts.rate, opts.initial
    check_positive(NAME, "capacity", cap, 2)
    check_positive(NAME, "rate", rate, 2)
    if initial == nil then
      initial = cap
    elseif type(initial) ~= "number" or initial ~= initial or initial < 0 or initial == huge then
      raise("invalid", fmt("%s: initial must be a finite non-negative number (got %s)", NAME,
        describe(initial)), 2)
    elseif initial > cap then
      raise("invalid", fmt("%s: initial %s exceeds the capacity %s", NAME, describe(initial),
        describe(cap)), 2)
    end
    local b = C.sl_bucket_new(cap, rate, initial)
    if b == nil then raise("invalid", NAME .. ": out of memory", 2) end
    return ffi.gc(b, C.sl_bucket_free)
  end

  ------------------------------------------------------------ keyed
  --
  -- sluice.keyed(factory [, {max_keys=, idle=, is_idle=}]) -> k
  --
  -- One limiter per key (a token bucket or a semaphore per destination
  -- host), made by factory(key) on the key's first k:get(key).  Memory
  -- stays bounded two ways, both lazy (no timer keeps the process alive):
  --   idle = s: a limiter not got for s seconds and idle is dropped; the
  --     least recently used end of an LRU list is swept on every get (and
  --     read of size or keys()).  A limiter found in use there counts as
  --     used at that moment (it moves to the front).
  --   max_keys = n: making an (n+1)th limiter first drops the least
  --     recently used idle one, however recently got; if every one is in
  --     use, get raises a "full" error (waiting for a key to free up
  --     could wait on the very task that asks).
  -- Idle means a fresh limiter from the factory would replace it without
  -- anyone noticing: a token bucket that is full with nobody waiting; a
  -- semaphore or mutex, weighted or priority semaphore that nobody holds
  -- or waits on; a limit with no call running or pending; a keyed with
  -- no keys.  opts.is_idle(limiter), when given, decides instead (for
  -- every limiter); for any other kind it is required once idle or
  -- max_keys is set.
  --
  -- Use a limiter from get right away: held in a variable across a long
  -- wait, it may be dropped meanwhile (it is idle) and a later get would
  -- make a second one for the key.  k:with(key, fn, ...) does it right:
  -- a token bucket takes 1 token then calls fn(...); a semaphore or
  -- mutex (or any limiter with a with(fn, ...) method) calls its with.

  local Keyed = {}
  local kmethods = {}
  local state_of = setmetatable({}, { __mode = "k" })
  local now = M.now

  local sem_ptr, wsem_ptr = ffi.typeof("sl_sem *"), ffi.typeof("sl_wsem *")
  local psem_ptr, limit_t = ffi.typeof("sl_psem *"), ffi.typeof("sl_limit")

  local sweep

  -- Is lim idle?  nil: not a kind keyed knows.
  local function builtin_idle(lim)
    if istype(bucket_ptr, lim) then
      return C.sl_prim_waiting(C.sl_bucket_prim(lim)) == 0 and C.sl_bucket_tokens(lim) >= C.sl_bucket_capacity(lim)
    elseif istype(sem_ptr, lim) then
      return C.sl_sem_held(lim) == 0 and C.sl_prim_waiting(C.sl_sem_prim(lim)) == 0
    elseif istype(wsem_ptr, lim) then
      return C.sl_wsem_held(lim) == 0 and C.sl_prim_waiting(C.sl_wsem_prim(lim)) == 0
    elseif istype(psem_ptr, lim) then
      return C.sl_psem_held(lim) == 0 and C.sl_prim_waiting(C.sl_psem_prim(lim)) == 0
    elseif istype(limit_t, lim) then
      return C.sl_limit_active(lim) == 0 and C.sl_limit_pending(lim) == 0
    end
    local st = state_of[lim]
    if st then
      sweep(st, now())
      return st.size == 0
    end
    return nil
  end

  local function is_idle(st, lim)
    if st.is_idle then return st.is_idle(lim) and true or false end
    return builtin_idle(lim) == true
  end

  -- The LRU list: st.newest ... st.oldest, through e.newer / e.older.
  local function unlink(st, e)
    if e.newer then e.newer.older = e.older else st.newest = e.older end
    if e.older then e.older.newer = e.newer else st.oldest = e.newer end
    e.newer, e.older = nil, nil
  end

  local function push_front(st, e)
    e.older = st.newest
    if st.newest then st.newest.newer = e else st.oldest = e end
    st.newest = e
  end

  local function touch(st, e, t)
    e.last = t
    if st.newest ~= e then
      unlink(st, e)
      push_front(st, e)
    end
  end

  local function drop(st, e)
    unlink(st, e)
    st.map[e.key] = nil
    st.size = st.size - 1
  end

  -- Drops the limiters not got for idle seconds that are idle; those in
  -- use count as used now.  Each expired one is looked at once.
  function sweep(st, t)
    local idle = st.idle
    if not idle then return end
    local e = st.oldest
    while e and e.last + idle <= t do
      if is_idle(st, e.lim) then drop(st, e) else touch(st, e, t) end
      e = st.oldest
    end
  end

  -- Room for one more limiter: drops the least recently used idle one.
  local function make_room(st, fname)
    if st.size < st.max_keys then return end
    local e = st.oldest
    while e do
      if is_idle(st, e.lim) then
        drop(st, e)
        return
      end
      e = e.newer
    end
    raise("full", fmt("%s: every one of the %d limiters is in use (max_keys %d)", fname, st.size, st.max_keys), 4)
  end

  local function check_kself(k, fname)
    local st = state_of[k]
    if not st then raise("invalid", fmt("%s: expected a keyed (got %s)", fname, type(k)), 3) end
    return st
  end

  local function check_key(fname, key)
    if key == nil or key ~= key then
      raise("invalid", fmt("%s: key must not be %s", fname, key == nil and "nil" or "nan"), 3)
    end
  end

  local function lookup(st, key, fname)
    local t = now()
    local e = st.map[key]
    if e then touch(st, e, t) end   -- first: the sweep must not drop the key got
    sweep(st, t)
    if e then return e.lim end
    make_room(st, fname)
    local lim = st.factory(key)
    if lim == nil or lim == false then
      raise("invalid", fmt("%s: factory returned %s for key %s", fname, tostring(lim), describe(key)), 3)
    end
    if st.evicts and not st.is_idle and builtin_idle(lim) == nil then
      raise("invalid", fmt("%s: factory returned a %s, which keyed cannot tell idle from in use " ..
        "(give opts.is_idle)", fname, type(lim)), 3)
    end
    e = st.map[key]       -- the factory may have blocked, and another get made one
    if e then
      touch(st, e, now())
      return e.lim
    end
    make_room(st, fname)
    e = { key = key, lim = lim, last = now() }
    push_front(st, e)
    st.map[key] = e
    st.size = st.size + 1
    return lim
  end

  -- k:get(key) -> the key's limiter, made by factory(key) if it has none
  function kmethods.get(k, key)
    local fname = "keyed:get"
    local st = check_kself(k, fname)
    check_key(fname, key)
    return lookup(st, key, fname)
  end

  -- k:with(key, fn, ...) -> fn(...)'s results, under the key's limiter
  function kmethods.with(k, key, fn, ...)
    local fname = "keyed:with"
    local st = check_kself(k, fname)
    check_key(fname, key)
    check_function(fname, "fn", fn)
    local lim = lookup(st, key, fname)
    if istype(bucket_ptr, lim) then
      lim:take()
      return fn(...)
    end
    if istype(wsem_ptr, lim) or istype(psem_ptr, lim) then
      raise("invalid", fmt("%s: a %s needs a %s: use keyed:get(key):with(...)", fname,
        istype(wsem_ptr, lim) and "weighted_semaphore" or "priority_semaphore",
        istype(wsem_ptr, lim) and "weight" or "priority"), 2)
    end
    local ok, w = pcall(function() return lim.with end)
    if not ok or type(w) ~= "function" then
      raise("invalid", fmt("%s: the limiter for key %s has no with(fn, ...): use keyed:get(key)", fname,
        describe(key)), 2)
    end
    return w(lim, fn, ...)
  end

  -- k:keys() -> the keys, most recently got first
  function kmethods.keys(k)
    local st = check_kself(k, "keyed:keys")
    sweep(st, now())
    local list, e = {}, st.newest
    while e do
      list[#list + 1] = e.key
      e = e.older
    end
    return list
  end

  local kgetters = {
    size = function(st)
      sweep(st, now())
      return st.size
    end,
    max_keys = function(st) return st.max_keys ~= huge and st.max_keys or nil end,
    idle = function(st) return st.idle end,
  }

  Keyed.__index = function(k, name)
    local m = kmethods[name]
    if m then return m end
    local g = kgetters[name]
    if g then return g(state_of[k]) end
  end
  Keyed.__newindex = function(_, name)
    raise("invalid", fmt("keyed: field '%s' is %s", tostring(name),
      kgetters[name] and "read-only" or "not settable"), 2)
  end
  Keyed.__tostring = function(k)
    local st = state_of[k]
    return fmt("keyed (%d keys)", st.size)
  end
  Keyed.__metatable = false

  local function keyed_options(opts)
    local F = "keyed"
    if opts == nil then return huge, nil, nil end
    check_opts(F, opts, KEYED_OPTS, 3)
    local max_keys, idle, idle_fn = opts.max_keys, opts.idle, opts.is_idle
    if max_keys == nil then
      max_keys = huge
    elseif type(max_keys) ~= "number" or max_keys < 1 or max_keys ~= floor(max_keys) or max_keys == huge then
      raise("invalid", fmt("%s: max_keys must be a positive integer (got %s)", F, describe(max_keys)), 3)
    end
    if idle ~= nil and (type(idle) ~= "number" or idle ~= idle or idle <= 0 or idle == huge) then
      raise("invalid", fmt("%s: idle must be a finite positive number of seconds (got %s)", F, describe(idle)), 3)
    end
    if idle_fn ~= nil then check_function(F, "is_idle", idle_fn, 3) end
    return max_keys, idle, idle_fn
  end

  -- sluice.keyed(factory [, opts])
  function M.keyed(factory, opts)
    check_function("keyed", "factory", factory)
    local max_keys, idle, idle_fn = keyed_options(opts)
    local k = setmetatable({}, Keyed)
    state_of[k] = {
      factory = factory, max_keys = max_keys, idle = idle, is_idle = idle_fn,
      evicts = idle ~= nil or max_keys ~= huge, map = {}, size = 0,
    }
    return k
  end
end
