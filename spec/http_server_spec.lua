-- sluice.http, the server: requests as handlers see them, answers
-- (string, table, nil, reset), handler errors -> 500, keep-alive and
-- Connection: close, pipelined requests, request framing errors (raw
-- sockets through sluice.uv), closing with requests in flight, and the
-- argument checks.
local sluice = require "sluice"
local util = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/util.lua")
local tracer, error_of, msg_of = util.tracer, util.error_of, util.msg_of

local http = sluice.http
local uv = sluice.uv

local function until_(cond)
  for _ = 1, 10000 do
    if cond() then return true end
    sluice.sleep(0)
  end
  error("condition never held")
end

-- Writes raw bytes on a fresh connection and reads until the server
-- closes it; returns what was read.
local function raw(port, data)
  local tcp = uv.new_tcp()
  local err = sluice.await(tcp.connect, tcp, "127.0.0.1", port)
  assert.is_nil(err)
  -- parks on a channel the read callback signals (polling would keep
  -- the task ready and the clock still)
  local got, eof = {}, sluice.channel(1)
  tcp:read_start(function(e, chunk)
    if chunk then got[#got + 1] = chunk else eof:try_send(true) end
  end)
  tcp:write(data)
  eof:recv()
  tcp:close()
  return table.concat(got)
end

describe("sluice.http server", function()
  it("returns at once with the bound port and hands the handler the request", function()
    local seen
    local srv = http.serve{ host = "127.0.0.1", port = 0, handler = function(req)
      seen = { req.method, req.path, req.query, req.params.a, req.params.b, req.headers["x-one"],
               req.headers["content-type"], req.body, req.connection }
      return "ok"
    end }
    assert.is_true(srv.port > 0)
    assert.same({ 0, 0, false }, { srv.connections, srv.requests, srv.closed })
    local res = http.post("http://127.0.0.1:" .. srv.port .. "/p/q?a=1&b=x%20y", "payload",
      { headers = { ["X-One"] = "1", ["Content-Type"] = "text/plain" } })
    assert.same({ 200, "ok" }, { res.status, res.body })
    assert.same({ "POST", "/p/q", "a=1&b=x%20y", "1", "x y", "1", "text/plain", "payload", 1 }, seen)
    assert.same({ 1, 1 }, { srv.connections, srv.requests })
    srv:close()
    assert.same({ 0, 1, true }, { srv.connections, srv.requests, srv.closed })
  end)

  it("answers strings, tables with status and headers, and nil (204)", function()
    local srv = http.serve{ handler = function(req)
      if req.path == "/s" then return "plain" end
      if req.path == "/t" then return { status = 201, headers = { ["X-Y"] = 7 }, body = "made" } end
      return nil
    end }
    local base = "http://127.0.0.1:" .. srv.port
    local res = http.get(base .. "/s")
    assert.same({ 200, "plain", "5" }, { res.status, res.body, res.headers["content-length"] })
    res = http.get(base .. "/t")
    assert.same({ 201, "made", "7" }, { res.status, res.body, res.headers["x-y"] })
    res = http.get(base .. "/n")
    assert.same({ 204, "" }, { res.status, res.body })
    srv:close()
  end)

  it("answers 500 to a handler error and reports it once to on_error", function()
    local trace, add = tracer()
    local srv = http.serve{
      handler = function(req)
        if req.path == "/bad" then return { status = "x" } end
        error("boom")
      end,
      on_error = function(err, req, tb)
        add(req.path .. ": " .. tostring(err))
        add(type(tb))
      end,
    }
    local base = "http://127.0.0.1:" .. srv.port
    local res = http.get(base .. "/fail")
    assert.same({ 500, "Internal Server Error" }, { res.status, res.body })
    res = http.get(base .. "/bad")
    assert.equal(500, res.status)
    assert.same({
      "/fail: " .. debug.getinfo(1, "S").short_src .. ":" .. (debug.getinfo(1, "l").currentline - 13) .. ": boom",
      "string",
      "/bad: sluice.http: bad response: status must be an integer from 100 to 999 (got \"x\")",
      "nil",
    }, trace)
    assert.equal(1, srv.connections)   -- the connection stays usable
    srv:close()
  end)

  it("lets the handler reset the connection: no answer", function()
    local srv = http.serve{ handler = function(req)
      if req.path == "/r1" then req:reset(); return "never sent" end
      return { reset = true }
    end }
    local base = "http://127.0.0.1:" .. srv.port
    for _, path in ipairs{ "/r1", "/r2" } do
      local err = error_of(http.get, base .. path)
      assert.equal("http", err.kind)
      -- curl words a reset by what it was doing when it came
      local m = err.message
      assert.is_true(m == "http.get: " .. base .. path .. ": Failure when receiving data from the peer" or
                     m == "http.get: " .. base .. path .. ": Failed sending data to the peer", m)
    end
    until_(function() return srv.connections == 0 end)
    assert.equal(2, srv.requests)
    srv:close()
  end)

  it("keeps connections alive, and closes them on Connection: close", function()
    local srv = http.serve{ handler = function(req) return tostring(req.connection) end }
    local base = "http://127.0.0.1:" .. srv.port
    assert.equal("1", http.get(base .. "/").body)
    assert.equal("1", http.get(base .. "/").body)
    local res = http.get(base .. "/", { headers = { Connection = "close" } })
    assert.same({ "1", "close" }, { res.body, res.headers["connection"] })
    until_(function() return srv.connections == 0 end)
    assert.equal("2", http.get(base .. "/").body)
    srv:close()
  end)

  it("answers pipelined requests in order on one connection", function()
    local srv = http.serve{ handler = function(req)
      -- (no virtual sleep: the raw socket is loop activity, the clock stands)
      if req.path == "/slow" then for _ = 1, 10 do sluice.yield() end end
      return req.path .. ":" .. req.body
    end }
    local text = raw(srv.port,
      "POST /slow HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" ..
      "GET /fast HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n/slow:abc" ..
                 "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\n/fast:", text)
    assert.equal(2, srv.requests)
    srv:close()
  end)

  it("rejects chunked bodies (411) and malformed requests (400), then closes", function()
    local srv = http.serve{ handler = function() return "x" end }
    assert.equal("HTTP/1.1 411 Length Required\r\nContent-Length: 15\r\nConnection: close\r\n\r\nLength Required",
      raw(srv.port, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
    assert.equal("HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request",
      raw(srv.port, "NONSENSE\r\n\r\n"))
    assert.equal("HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request",
      raw(srv.port, "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"))
    assert.equal(0, srv.requests)
    srv:close()
  end)

  it("answers HTTP/1.0 and closes unless asked to keep alive", function()
    local srv = http.serve{ handler = function() return "old" end }
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nold",
      raw(srv.port, "GET / HTTP/1.0\r\n\r\n"))
    srv:close()
  end)

  it("close: stops listening, cancels handlers in flight, their clients see the drop", function()
    local trace, add = tracer()
    local srv = http.serve{ handler = function(req)
      add("start " .. req.path)
      local ok, err = pcall(sluice.sleep, 10)
      add("handler " .. (ok and "done" or err.kind))
      if not ok then error(err, 0) end
      return "late"
    end }
    local base = "http://127.0.0.1:" .. srv.port
    local t0 = sluice.now()
    local clients = {}
    for i = 1, 3 do
      clients[i] = sluice.spawn(function()
        local ok, err = pcall(http.get, base .. "/" .. i)
        return ok and "answered" or err.kind .. ": " .. err.message
      end)
    end
    until_(function() return #trace == 3 end)
    assert.equal(3, srv.connections)
    srv:close()
    assert.same({ 0, 3, true }, { srv.connections, srv.requests, srv.closed })
    for i = 1, 3 do
      assert.equal("http: http.get: " .. base .. "/" .. i .. ": Server returned nothing (no headers, no data)",
        clients[i]:await())
    end
    until_(function() return #trace == 6 end)
    table.sort(trace)
    assert.same({ "handler cancelled", "handler cancelled", "handler cancelled",
                  "start /1", "start /2", "start /3" }, trace)
    assert.equal(t0, sluice.now())
    local err = error_of(http.get, base .. "/")
    assert.equal("http.get: " .. base .. "/: Couldn't connect to server", err.message)
    srv:close()   -- twice is harmless
  end)

  it("raises kind http when the port is taken", function()
    local srv = http.serve{ handler = function() return "" end }
    local err = error_of(http.serve, { port = srv.port, handler = function() end })
    assert.equal("http", err.kind)
    assert.equal("http.serve: 127.0.0.1:" .. srv.port .. ": address already in use", err.message)
    srv:close()
  end)

  it("checks its arguments", function()
    local h = function() end
    assert.equal("http.serve: opts must be a table (got nil)", msg_of(http.serve))
    assert.equal("http.serve: handler must be a function (got nil)", msg_of(http.serve, {}))
    assert.equal("http.serve: on_error must be a function (got 1)", msg_of(http.serve, { handler = h, on_error = 1 }))
    assert.equal("http.serve: host must be a string (got 5)", msg_of(http.serve, { host = 5, handler = h }))
    assert.equal("http.serve: host must be an IP address (got \"localhost\")",
      msg_of(http.serve, { host = "localhost", handler = h }))
    for _, p in ipairs{ -1, 1.5, 65536, "80" } do
      assert.equal("http.serve: port must be an integer from 0 to 65535 (got " ..
        (type(p) == "string" and '"80"' or tostring(p)) .. ")", msg_of(http.serve, { port = p, handler = h }))
    end
    local srv = http.serve{ handler = h }
    assert.equal("server:close: expected a server (got nil)", msg_of(srv.close))
    assert.equal("server:close: expected a server (got table)", msg_of(srv.close, {}))
    assert.is_false(srv.closed)
    srv:close()
  end)
end)
