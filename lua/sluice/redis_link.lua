-- sluice.redis_link: how a distributed limiter reaches Redis, and what
-- it does while Redis cannot be reached.
--
-- A link runs the limiter's scripts on the user's client, or on clients
-- borrowed from the user's pool, and opens connections of the limiter's
-- own (for blocking waits, and to replace a client that was lost).  Its
-- state is one of
--   "shared"    Redis answers; the shared state is used.
--   "down"      unreachable and no fallback: operations fail fast with
--               kind "unavailable".  An operation after a backoff (0.1 s,
--               doubling to 2 s, on sluice.now()'s clock) first tries to
--               reconnect, one attempt at a time for all callers.
--   "fallback"  unreachable, with a local share: operations use the share
--               at once and never wait for Redis; a probe on a weak timer
--               (the same backoff) reconnects in the background.
-- on_change(from, to, err) is told of every change of state.
--
-- A failure counts as "unreachable" when the connection itself went (the
-- client is no longer connected, or was closed), a call timed out
-- (command_timeout) or a connect failed.  An error reply of the server
-- is raised as it is: Redis answered.
--
-- Scripts run with EVALSHA; a NOSCRIPT reply (a restarted server, SCRIPT
-- FLUSH) falls back to EVAL and loads the script again.
return function(R, I)
  local sluice = require "sluice"
  local weak_timer = require("sluice.core").weak_timer

  local type, pairs, tostring, setmetatable, getmetatable, error, pcall, select =
        type, pairs, tostring, setmetatable, getmetatable, error, pcall, select
  local min, floor, huge = math.min, math.floor, math.huge
  local fmt = string.format
  local co_isyieldable = coroutine.isyieldable
  local is_error, now, new_error = sluice.is_error, sluice.now, sluice.error

  local function raise(kind, message, level)
    error(new_error(kind, message), (level or 1) + 1)
  end
  if I and I.raise then raise = I.raise end

  local describe = debug.getregistry()["sluice.describe"]

  local BACKOFF0, BACKOFF_MAX = 0.1, 2
  local CONNECT_TIMEOUT = 2      -- for the link's own connections, unless given

  local shas = {}   -- script text -> sha1 (the same on every server)

  local function run(conn, script, nkeys, ...)
    local sha = shas[script]
    if not sha then
      sha = conn:call("SCRIPT", "LOAD", script)
      shas[script] = sha
    end
    local ok, r = pcall(conn.call, conn, "EVALSHA", sha, nkeys, ...)
    if ok then return r end
    if is_error(r, "redis") and tostring(r.message):find("^NOSCRIPT") then
      shas[script] = nil
      r = conn:call("EVAL", script, nkeys, ...)
      shas[script] = conn:call("SCRIPT", "LOAD", script)
      return r
    end
    error(r, 0)
  end

  -- Did err say the server is out of reach (rather than answer)?
  local function unreachable(conn, err)
    if not is_error(err) then return false end
    local k = err.kind
    if k == "closed" or k == "timeout" then return true end
    return k == "redis" and (conn == nil or not conn.connected)
  end

  local Link = {}
  Link.__index = Link

  local function set_state(l, to, err)
    local from = l.state
    if err then l.err = err end
    if from == to then return end
    l.state = to
    if l.on_change then l.on_change(from, to, err) end
  end

  -- A connection of the link's own to the server.
  function Link.open(l)
    if not l.host then
      local c = l.pool:acquire()
      l.host, l.port = c.host, c.port
      l.pool:release(c)
    end
    local o = { host = l.host, port = l.port, connect_timeout = CONNECT_TIMEOUT }
    for k, v in pairs(l.connect) do o[k] = v end
    return R.connect(o)
  end

  local probe

  -- Redis was found out of reach.
  function Link.lost(l, err)
    if l.conn and l.conn == l.own then l.own:close() end
    l.conn, l.own = nil, nil
    if l.state == "shared" then l.backoff = BACKOFF0 end
    l.retry_at = now() + l.backoff
    if l.fallback then
      set_state(l, "fallback", err)
      if not l.probe then l.probe = weak_timer(probe, l) end
      l.probe:arm(l.retry_at)
    else
      set_state(l, "down", err)
    end
  end

  -- One reconnection attempt: true when Redis answers again.
  local function reconnect(l)
    local ok, c = pcall(Link.open, l)
    if ok and l.closed then c:close() return false end
    if not ok then
      if is_error(c, "cancelled") or is_error(c, "invalid") then error(c, 0) end
      l.err = c
      l.backoff = min(l.backoff * 2, BACKOFF_MAX)
      l.retry_at = now() + l.backoff
      return false
    end
    if l.pool then c:close() else l.own, l.conn = c, c end
    set_state(l, "shared")
    return true
  end

  -- The fallback's probe (a weak timer's task: it never keeps a finished
  -- program alive).
  function probe(l)
    if l.closed or l.state ~= "fallback" then return end
    if not reconnect(l) then l.probe:arm(l.retry_at) end
  end

  -- link:ready() -> true when operations should go to Redis.  In "down",
  -- once the backoff is over, it tries to reconnect (callers arriving
  -- meanwhile wait for that attempt's outcome).
  function Link.ready(l)
    if l.state == "shared" then return true end
    if l.state ~= "down" or l.closed or now() < l.retry_at then return false end
    if l.attempt then
      l.attempt:recv()
      return l.state == "shared"
    end
    local ch = sluice.channel(1)
    l.attempt = ch
    local ok, r = pcall(reconnect, l)
    l.attempt = nil
    ch:close()
    if not ok then error(r, 0) end
    return r
  end

  -- A client to run a script on: the user's (or the link's own), or one
  -- borrowed from the pool (not one it lost: those are destroyed).
  local function borrow(l)
    if not l.pool then
      local c = l.conn
      if c and c.connected then return c end
      -- the user's client (or ours) went: one attempt at a connection of
      -- our own before giving up
      if reconnect(l) then return l.conn end
      l:lost(l.err)
      return nil
    end
    for _ = 1, 16 do
      local ok, c = pcall(l.pool.acquire, l.pool)
      if not ok then
        if is_error(c, "cancelled") or is_error(c, "invalid") then error(c, 0) end
        l:lost(c)
        return nil
      end
      if c.connected then
        l.host, l.port = c.host, c.port
        return c
      end
      l.pool:destroy(c)
    end
    l:lost(new_error("redis", "redis: no connected client in the pool"))
    return nil
  end

  local function give_back(l, c, broken)
    if not l.pool then return end
    if broken then l.pool:destroy(c) else l.pool:release(c) end
  end

  -- link:eval(script, nkeys, ...) -> true, reply | false, err (Redis out
  -- of reach: the state has changed).  Error replies and cancellation
  -- are raised.
  function Link.eval(l, script, nkeys, ...)
    if not l:ready() then return false, l.err end
    local c = borrow(l)
    if not c then return false, l.err end
    local ok, r = pcall(run, c, script, nkeys, ...)
    local lost = not ok and unreachable(c, r)
    give_back(l, c, lost)
    if ok then return true, r end
    if not lost then error(r, 0) end
    l:lost(r)
    return false, l.err
  end

  -- The fail-fast error: kind "unavailable", naming the server and why.
  function Link.unavailable(l, fname, level)
    local why = l.err and (is_error(l.err) and l.err.message or tostring(l.err)) or "unknown"
    local where = l.host and fmt(" at %s:%d", l.host, l.port) or ""
    raise("unavailable", fmt("%s: redis%s unreachable (%s)", fname, where, why), (level or 1) + 1)
  end

  function Link.close(l)
    if l.closed then return end
    l.closed = true
    if l.probe then l.probe:stop() end
    if l.own then l.own:close() end
    l.own, l.conn = nil, nil
  end

  Link.unreachable = unreachable

  local K = { run = run, unreachable = unreachable, raise = raise, describe = describe }

  -- K.new(client_or_pool, is_pool, {connect=, fallback=, on_change=})
  function K.new(target, is_pool, o)
    local l = setmetatable({
      state = "shared", connect = o.connect or {}, fallback = o.fallback and true or false,
      on_change = o.on_change, backoff = BACKOFF0, retry_at = 0, closed = false,
    }, Link)
    if is_pool then
      l.pool = target
    else
      l.conn, l.host, l.port = target, target.host, target.port
    end
    return l
  end

  ---------------------------------------------------------------- arguments
  -- The checks every distributed limiter shares.


  function K.need_task(fname)
    if not co_isyieldable() then raise("invalid", fname .. ": must be called from a task", 3) end
  end

  function K.check_positive(fname, what, v, level)
    if type(v) ~= "number" or v ~= v or v <= 0 or v == huge then
      raise("invalid", fmt("%s: %s must be a finite positive number (got %s)", fname, what,
        describe(v)), level + 1)
    end
  end

  function K.check_count(fname, what, v, level)
    if type(v) ~= "number" or v ~= floor(v) or v < 1 or v == huge then
      raise("invalid", fmt("%s: %s must be a positive integer (got %s)", fname, what,
        describe(v)), level + 1)
    end
  end

  function K.check_timeout(fname, v, level)
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
      raise("invalid", fmt("%s: timeout must be a non-negative number or nil (got %s)", fname,
        describe(v)), level + 1)
    end
  end

  local function has_methods(c, ...)
    if c == nil or (type(c) ~= "userdata" and type(c) ~= "table") then return false end
    for i = 1, select("#", ...) do
      local k = select(i, ...)
      local ok, f = pcall(function() return c[k] end)
      if not ok or type(f) ~= "function" then return false end
    end
    return true
  end

  -- (client_or_pool, name, opts) -> opts, is_pool, after checking them
  -- and the options every limiter has (connect, on_change).
  function K.check_common(fname, target, name, opts, known, level)
    local is_pool = false
    if not has_methods(target, "call") then
      is_pool = getmetatable(target) ~= nil and has_methods(target, "acquire", "release", "destroy")
      if not is_pool then
        raise("invalid", fmt("%s: client must be a redis client or a pool of them (got %s)", fname,
          describe(target)), level + 1)
      end
    end
    if type(name) ~= "string" or name == "" then
      raise("invalid", fmt("%s: name must be a non-empty string (got %s)", fname, describe(name)),
        level + 1)
    end
    if opts == nil then return {}, is_pool end
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
    if opts.on_change ~= nil and type(opts.on_change) ~= "function" then
      raise("invalid", fmt("%s: on_change must be a function (got %s)", fname,
        describe(opts.on_change)), level + 1)
    end
    return opts, is_pool
  end

  -- opts.fallback: nil, or a table of the keys in `known`.
  function K.check_fallback(fname, fb, known, level)
    if fb == nil then return nil end
    if type(fb) ~= "table" then
      raise("invalid", fmt("%s: fallback must be a table (got %s)", fname, describe(fb)), level + 1)
    end
    for k in pairs(fb) do
      if not known[k] then
        raise("invalid", fmt("%s: unknown fallback option %s", fname, describe(k)), level + 1)
      end
    end
    return fb
  end

  return K
end
