-- sluice.http: an HTTP client on libcurl's multi-socket interface driven
-- by the runtime's loop (lib/sl_http.c), and a small HTTP/1.1 server
-- (lib/sl_http_server.c), both on the same loop.
--
--   local http = sluice.http
--   local srv = http.serve{ port = 0, handler = function(req) return "hi" end }
--   local res = http.get("http://127.0.0.1:" .. srv.port .. "/")   -- res.status, res.body
--   srv:close()
--
-- Client: a request blocks the calling task only.  One libcurl multi
-- handle per runtime keeps the connection cache, so connections are
-- reused across tasks; http.configure caps the connections in total and
-- per host (queued transfers wait inside curl).  A non-2xx status is a
-- response; a network failure raises kind "http" with curl's message; the
-- timeout option (the task's own timer, exact on the virtual clock) and
-- connect_timeout (curl's, real clock) raise kind "timeout".  Cancelling
-- the task (scope, race, sluice.timeout) aborts the transfer at once and
-- closes its connection.  TLS peers are verified unless verify = false;
-- the proxy environment variables are ignored unless proxy = is given.
--
-- Server: http.serve returns at once.  Each request runs its handler in a
-- task of its own; the handler returns a string (status 200), a table
-- {status=, headers=, body=} or {reset = true} (or calls req:reset()),
-- nil (204).  A handler error answers 500 and is passed to on_error
-- (default: printed once to stderr with its traceback).  A client that
-- drops its connection cancels the handler of its request in flight;
-- srv:close() stops listening, closes every connection and cancels the
-- handlers in flight (their clients see the connection close).
local core = require "sluice.http.core"

local type, pairs, tostring, setmetatable, getmetatable, error, xpcall, pcall =
      type, pairs, tostring, setmetatable, getmetatable, error, xpcall, pcall
local floor, huge = math.floor, math.huge
local fmt = string.format
local traceback = debug.traceback
local stderr = io.stderr
local co_isyieldable = coroutine.isyieldable
local c_start, c_wait, c_result = core.start, core.wait, core.result
local c_respond, c_reset, c_info = core.respond, core.reset, core.server_info

local WAKE_TIMEOUT, WAKE_CANCEL = 1, 2

return function(M, I)
  local raise, describe, raise_cancelled, blocked =
        I.raise, I.describe, I.raise_cancelled, I.blocked
  local is_error = M.is_error

  local HTTP = { curl_version = core.curl_version }

  ---------------------------------------------------------------- client

  local function check_timeout(fn, name, v)
    if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0 or v == huge) then
      raise("invalid", fmt("%s: %s must be a finite positive number (got %s)", fn, name, describe(v)), 4)
    end
  end

  local function check_headers(fn, h)
    if h == nil then return end
    if type(h) ~= "table" then
      raise("invalid", fmt("%s: headers must be a table (got %s)", fn, describe(h)), 4)
    end
    for k, v in pairs(h) do
      if type(k) ~= "string" then
        raise("invalid", fmt("%s: header names must be strings (got %s)", fn, describe(k)), 4)
      elseif type(v) ~= "string" and type(v) ~= "number" then
        raise("invalid", fmt("%s: header %q must be a string or a number (got %s)", fn, k, describe(v)), 4)
      end
    end
  end

  -- Checks everything before anything starts; returns the method.
  local function check_request(fn, url, body, o)
    if type(url) ~= "string" then
      raise("invalid", fmt("%s: url must be a string (got %s)", fn, describe(url)), 4)
    end
    local method = o.method
    if method == nil then
      method = body ~= nil and "POST" or "GET"
    elseif type(method) ~= "string" or not method:match("^[%u]+$") then
      raise("invalid", fmt("%s: method must be an upper-case word (got %s)", fn, describe(method)), 4)
    end
    if body ~= nil and type(body) ~= "string" then
      raise("invalid", fmt("%s: body must be a string (got %s)", fn, describe(body)), 4)
    end
    check_headers(fn, o.headers)
    check_timeout(fn, "timeout", o.timeout)
    check_timeout(fn, "connect_timeout", o.connect_timeout)
    if o.proxy ~= nil and type(o.proxy) ~= "string" then
      raise("invalid", fmt("%s: proxy must be a string (got %s)", fn, describe(o.proxy)), 4)
    end
    if o.verify ~= nil and type(o.verify) ~= "boolean" then
      raise("invalid", fmt("%s: verify must be a boolean (got %s)", fn, describe(o.verify)), 4)
    end
    if not co_isyieldable() then blocked(fn) end
    return method
  end

  local function perform(fn, url, body, o)
    local method = check_request(fn, url, body, o)
    local x = c_start(method, url, o.headers, body, o.connect_timeout, o.proxy, o.verify)
    local w = c_wait(x, o.timeout)
    if w == WAKE_TIMEOUT then
      raise("timeout", fmt("%s: %s: timed out after %s s", fn, url, describe(o.timeout)), 3)
    elseif w == WAKE_CANCEL then
      raise_cancelled(3)
    end
    local status, headers, rbody = c_result(x)
    if not status then
      raise(rbody and "timeout" or "http", fmt("%s: %s: %s", fn, url, headers), 3)
    end
    return { status = status, headers = headers, body = rbody }
  end

  local function check_opts(fn, o, what)
    if o == nil and what ~= "opts" then o = {} end
    if type(o) ~= "table" then
      raise("invalid", fmt("%s: %s must be a table (got %s)", fn, what, describe(o)), 3)
    end
    return o
  end

  function HTTP.request(o)
    o = check_opts("http.request", o, "opts")
    return perform("http.request", o.url, o.body, o)
  end

  function HTTP.get(url, o)
    o = check_opts("http.get", o, "options")
    return perform("http.get", url, nil, o)
  end

  function HTTP.post(url, body, o)
    o = check_opts("http.post", o, "options")
    if body == nil then body = "" end
    return perform("http.post", url, body, o)
  end

  local function check_count(fn, name, v)
    if v ~= nil and (type(v) ~= "number" or v ~= floor(v) or v < 0 or v == huge) then
      raise("invalid", fmt("%s: %s must be a non-negative integer (got %s)", fn, name, describe(v)), 4)
    end
  end

  -- http.configure{max_connections=, max_host_connections=,
  -- max_idle_connections=}: caps of the runtime's connection pool (0: no
  -- cap, the default) and how many idle connections it keeps (64).
  function HTTP.configure(o)
    o = check_opts("http.configure", o, "opts")
    check_count("http.configure", "max_connections", o.max_connections)
    check_count("http.configure", "max_host_connections", o.max_host_connections)
    check_count("http.configure", "max_idle_connections", o.max_idle_connections)
    core.configure(o.max_connections, o.max_host_connections, o.max_idle_connections)
  end

  function HTTP.stats()
    local transfers, sockets = core.client_stats()
    return { transfers = transfers, sockets = sockets }
  end

  ---------------------------------------------------------------- server

  local boxes = setmetatable({}, { __mode = "k" })   -- request -> its C box

  local function parse_query(q)
    local t = {}
    for pair in q:gmatch("[^&]+") do
      local k, v = pair:match("^([^=]*)=?(.*)$")
      k = k:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      v = v:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      t[k] = v
    end
    return t
  end

  local Request = {}
  local RequestMT = {
    __index = function(req, k)
      if k == "params" then
        local p = parse_query(req.query)
        rawset(req, "params", p)
        return p
      end
      return Request[k]
    end,
  }

  -- req:reset(): closes the connection without an answer.
  function Request.reset(req)
    local box = boxes[req]
    if box == nil then
      raise("invalid", fmt("request:reset: expected a request (got %s)", describe(req)), 2)
    end
    c_reset(box)
  end

  local function default_on_error(err, req, tb)
    stderr:write(fmt("sluice.http: handler failed on %s %s: %s\n", req.method, req.path, tb or tostring(err)))
  end

  local function answer(box, res)
    local tr = type(res)
    if tr == "string" then return c_respond(box, 200, nil, res) end
    if res == nil then return c_respond(box, 204, nil, "") end
    if tr ~= "table" then return nil, "handler returned a " .. tr end
    if res.reset then return c_reset(box) end
    local status, body = res.status or 200, res.body
    if type(status) ~= "number" or status ~= floor(status) or status < 100 or status > 999 then
      return nil, "status must be an integer from 100 to 999 (got " .. describe(status) .. ")"
    end
    if type(body) == "number" then body = tostring(body) end
    if body ~= nil and type(body) ~= "string" then
      return nil, "body must be a string (got " .. describe(body) .. ")"
    end
    local headers = res.headers
    if headers ~= nil then
      if type(headers) ~= "table" then return nil, "headers must be a table (got " .. describe(headers) .. ")" end
      for k, v in pairs(headers) do
        local tv = type(v)
        if tv == "table" then
          for i = 1, #v do
            if type(v[i]) ~= "string" and type(v[i]) ~= "number" then tv = "bad" end
          end
        end
        if type(k) ~= "string" or (tv ~= "string" and tv ~= "number" and tv ~= "table") then
          return nil, "headers must map names to strings, numbers or lists of them"
        end
      end
    end
    return c_respond(box, status, headers, body)
  end

  local function make_dispatcher(handler, on_error)
    return function(box, req)
      boxes[req] = box
      setmetatable(req, RequestMT)
      local tb
      local ok, res = xpcall(handler, function(e)
        if not is_error(e, "cancelled") then tb = traceback(tostring(e), 2) end
        return e
      end, req)
      if not ok and is_error(res, "cancelled") then
        c_reset(box)
        error(res, 0)
      end
      if ok then
        local sent, why = answer(box, res)
        if sent ~= nil then return end
        ok, res, tb = false, "sluice.http: bad response: " .. why, nil
      end
      c_respond(box, 500, nil, "Internal Server Error")
      pcall(on_error, res, req, tb)
    end
  end

  local Server = {}
  local ServerMT = {
    __index = function(srv, k)
      if k == "connections" or k == "requests" or k == "closed" then
        local c, r, closed = c_info(srv._box)
        if k == "connections" then return c elseif k == "requests" then return r end
        return closed
      end
      return Server[k]
    end,
    __tostring = function(srv) return fmt("http server (%s:%d)", srv.host, srv.port) end,
  }

  function Server.close(srv)
    if getmetatable(srv) ~= ServerMT then
      raise("invalid", fmt("server:close: expected a server (got %s)", describe(srv)), 2)
    end
    core.server_close(srv._box)
  end

  -- http.serve{host = "127.0.0.1", port = 0, handler = fn, on_error = fn}
  function HTTP.serve(o)
    o = check_opts("http.serve", o, "opts")
    local host, port = o.host or "127.0.0.1", o.port or 0
    if type(host) ~= "string" then
      raise("invalid", fmt("http.serve: host must be a string (got %s)", describe(host)), 2)
    end
    if type(port) ~= "number" or port ~= floor(port) or port < 0 or port > 65535 then
      raise("invalid", fmt("http.serve: port must be an integer from 0 to 65535 (got %s)", describe(port)), 2)
    end
    I.check_function("http.serve", "handler", o.handler, 2)
    if o.on_error ~= nil then I.check_function("http.serve", "on_error", o.on_error, 2) end
    local box, bound = core.serve(host, port, make_dispatcher(o.handler, o.on_error or default_on_error))
    return setmetatable({ _box = box, host = host, port = bound }, ServerMT)
  end

  return HTTP
end
