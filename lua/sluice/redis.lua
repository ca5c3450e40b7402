-- sluice.redis: a Redis client on the runtime's loop (lib/sl_redis.c:
-- hiredis's async API on our own libuv adapter).
--
--   local redis = require "sluice.redis"      -- or sluice.redis
--   local c = redis.connect{ host = "127.0.0.1", port = 6379 }
--   c:call("SET", "k", "v")   --> "OK"
--   c:close()
--
-- One connection per client.  Tasks calling at once pipeline on it: each
-- command is written as it comes, and hiredis hands replies back in
-- order, each to its own call record.
--
-- Replies: status and bulk strings -> strings, integers -> numbers, a nil
-- bulk -> nil, arrays -> tables (nested), in which a nil element is
-- redis.null (a NULL light userdata, the same value as cjson.null: a Lua
-- table cannot hold nil) and an error element (MULTI/EXEC) is an error
-- object of kind "redis".  An error reply raises an error of kind "redis"
-- whose message is the server's, unchanged.
--
-- Timeouts (connect_timeout, command_timeout) run on the real clock, even
-- under the virtual one: while a connect or a reply is outstanding the
-- client counts as loop activity, so the virtual clock stands still until
-- the reply comes.  A call that times out raises kind "timeout"; the
-- connection stays usable, and the late reply, when it comes, is dropped
-- (it belongs to the timed-out call's record, never to the next caller).
-- A cancelled caller leaves the same way at once.
--
-- The module is built here from what the runtime registers (the error
-- constructor and the cancellation error), so that require "sluice.redis"
-- returns this table whether or not sluice.redis was touched first.
local core = require "sluice.redis.core"

local type, pairs, tostring, setmetatable, error, select =
      type, pairs, tostring, setmetatable, error, select
local floor, huge = math.floor, math.huge
local fmt = string.format
local co_isyieldable = coroutine.isyieldable
local registry = debug.getregistry()
local new_error = registry["sluice.errfn"]
local cancelled_error = registry["sluice.cancelfn"]
local sluice_core = require "sluice.core"
local c_current = sluice_core.current
local c_connect, c_connected, c_send, c_wait, c_take, c_close, c_field =
      core.connect, core.connected, core.send, core.wait, core.take, core.close, core.field

local WAKE_OK, WAKE_TIMEOUT = 0, 1
-- outcomes of core.take (lib/sl_redis.c)
local KIND = { [1] = "redis", [2] = "redis", [3] = "closed" }

local R = { null = core.null }

local function raise(kind, message, level)
  error(new_error(kind, message, (level or 1) + 1), 0)
end

local function raise_cancelled(level)
  error(cancelled_error(c_current(), (level or 1) + 1), 0)
end

local describe = registry["sluice.describe"]

-- As the semaphore's: outside a task, or where a yield cannot pass.
local function blocked(fn)
  if c_current() then
    raise("invalid", fn .. ": cannot block here (inside a C call such as a " ..
      "table.sort comparator or a string.gsub callback)", 3)
  end
  raise("invalid", fn .. ": must be called from a task", 3)
end

---------------------------------------------------------------- connect

local OPTIONS = { host = true, port = true, password = true, db = true,
                  connect_timeout = true, command_timeout = true }

local function check_timeout(name, v)
  if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0 or v == huge) then
    raise("invalid", fmt("redis.connect: %s must be a finite positive number (got %s)",
      name, describe(v)), 4)
  end
end

local function check_options(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    raise("invalid", "redis.connect: opts must be a table (got " .. describe(opts) .. ")", 3)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      raise("invalid", "redis.connect: unknown option " .. describe(k), 3)
    end
  end
  local host, port = opts.host or "127.0.0.1", opts.port or 6379
  if type(host) ~= "string" or host == "" then
    raise("invalid", "redis.connect: host must be a non-empty string (got " .. describe(host) .. ")", 3)
  end
  if type(port) ~= "number" or port ~= floor(port) or port < 1 or port > 65535 then
    raise("invalid", "redis.connect: port must be an integer in 1..65535 (got " .. describe(port) .. ")", 3)
  end
  if opts.password ~= nil and type(opts.password) ~= "string" then
    raise("invalid", "redis.connect: password must be a string (got " .. describe(opts.password) .. ")", 3)
  end
  local db = opts.db
  if db ~= nil and (type(db) ~= "number" or db ~= floor(db) or db < 0 or db > 2147483647) then
    raise("invalid", "redis.connect: db must be a non-negative integer (got " .. describe(db) .. ")", 3)
  end
  check_timeout("connect_timeout", opts.connect_timeout)
  check_timeout("command_timeout", opts.command_timeout)
  return host, port, opts.password, db, opts.connect_timeout, opts.command_timeout
end

-- The client's command timeout, for the timeout message (weak keys).
local timeouts = setmetatable({}, { __mode = "k" })

-- redis.connect{host=, port=, password=, db=, connect_timeout=,
-- command_timeout=} -> client, once connected and AUTH / SELECT done.
function R.connect(opts)
  local host, port, password, db, connect_timeout, command_timeout = check_options(opts)
  if not co_isyieldable() then blocked("redis.connect") end
  local c, kind, msg = c_connect(host, port, password, db, connect_timeout, command_timeout)
  if c == false then raise_cancelled(2) end
  if c == nil then raise(kind, msg, 2) end
  if c_wait() ~= WAKE_OK then raise_cancelled(2) end
  local ok
  ok, kind, msg = c_connected(c)
  if not ok then raise(kind, msg, 2) end
  timeouts[c] = command_timeout
  return c
end

---------------------------------------------------------------- the client

local methods = {}

-- client:call(command, ...) -> the reply.  Arguments are strings or
-- numbers (integers are sent without a decimal point).
function methods.call(self, ...)
  if not co_isyieldable() then blocked("redis:call") end
  local rec = c_send(self, ...)
  if rec == false then raise_cancelled(2) end
  local why = c_wait()
  if why == WAKE_OK then
    local outcome, v = c_take(rec)
    if outcome == 0 then return v end
    raise(KIND[outcome], v, 2)
  elseif why == WAKE_TIMEOUT then
    raise("timeout", fmt("redis:call: timed out after %s s", describe(timeouts[self])), 2)
  end
  raise_cancelled(2)
end

-- client:close(): pending calls fail with kind "closed"; idempotent.
methods.close = c_close

local mt = core.client_mt
mt.__index = function(self, k)
  local m = methods[k]
  if m ~= nil then return m end
  return c_field(self, k)
end
mt.__tostring = function(self)
  return fmt("redis client %s:%d (%s, %d pending)", c_field(self, "host"), c_field(self, "port"),
    c_field(self, "connected") and "connected" or "not connected", c_field(self, "pending"))
end

-- Limits shared by many processes: redis.semaphore, lock, token_bucket.
require("sluice.redis_limits")(R)

return R
