-- spec/support/redis.lua: real redis-server processes for the specs.
--
--   local servers = require "spec.support.redis"
--   local srv = servers.start()              -- or start{ "--requirepass", "s" }
--   ... srv.port, srv.pid ...
--   srv:kill()  srv:revive()                 -- a crash, then the same port again
--   srv:stop()                               -- also servers.stop_all()
--
-- Each server listens on 127.0.0.1 on a free port, keeps nothing on disk
-- (--save "" --appendonly no, in a fresh temporary directory) and runs
-- daemonized, so no libuv handle of the test process is involved (the
-- runner's leak check counts those).  start() returns once the server
-- answers PING.  A missing redis-server is an error, not a skip: the
-- specs that need it fail and say so.
--
-- Blocking calls (os.execute, io.popen) are used on purpose: they run
-- outside the tests, in setup and teardown, or for a kill -9.
local uv = require("sluice").uv

local M = {}
local running = {}

local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

-- A command's whole output.
local function read(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end
M.read = read

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- A port nobody listens on now: bind port 0, read it, close.
function M.free_port()
  local tcp = uv.new_tcp()
  assert(tcp:bind("127.0.0.1", 0))
  local port = tcp:getsockname().port
  tcp:close()
  return port
end

local Server = {}
Server.__index = Server

-- Running, and not a zombie waiting to be reaped (a daemonized server's
-- parent is init, which may reap it much later).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return sh("kill -0 " .. pid .. " 2>/dev/null") end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end

-- Stops the server (SIGKILL with hard = true) and waits until it is gone.
function Server:stop(hard)
  if self.pid and alive(self.pid) then
    sh("kill -" .. (hard and "KILL" or "TERM") .. " " .. self.pid .. " 2>/dev/null")
    for _ = 1, 200 do
      if not alive(self.pid) then break end
      sh("sleep 0.02")
    end
  end
  if self.dir then sh("rm -rf " .. q(self.dir)) end
  self.dir = nil
  for i, s in ipairs(running) do
    if s == self then table.remove(running, i) break end
  end
end

function Server:alive()
  return self.pid ~= nil and alive(self.pid)
end

-- Kills the server at once (kill -9), as a crash would.
function Server:kill()
  self:stop(true)
end

-- Starts a stopped (or killed) server again on the same port, empty.
function Server:revive()
  local again = M.start(self.extra, self.port)
  for i, s in ipairs(running) do
    if s == again then running[i] = self end
  end
  self.pid, self.dir = again.pid, again.dir
  return self
end

function M.start(extra, port)
  if not sh("command -v redis-server >/dev/null 2>&1") then
    error("spec/support/redis.lua: redis-server is not installed (Debian: apt-get install redis-server);" ..
      " the redis specs need a real server", 2)
  end
  local dir = read("mktemp -d"):gsub("%s+$", "")
  assert(dir ~= "", "spec/support/redis.lua: mktemp -d failed")
  local srv = setmetatable({ dir = dir, port = port or M.free_port(), extra = extra }, Server)
  local args = { "redis-server", "--port", srv.port, "--bind", "127.0.0.1", "--save", q(""),
    "--appendonly", "no", "--dir", q(dir), "--daemonize", "yes", "--pidfile", q(dir .. "/redis.pid"),
    "--logfile", q(dir .. "/redis.log"), "--enable-debug-command", "local" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = q(a) end
  if not sh(table.concat(args, " ")) then
    sh("rm -rf " .. q(dir))
    error("spec/support/redis.lua: could not start redis-server", 2)
  end
  running[#running + 1] = srv
  -- answers PING (NOAUTH counts: a server with a password answers too)
  local ping = "redis-cli -h 127.0.0.1 -p " .. srv.port .. " ping 2>&1"
  for _ = 1, 250 do
    local out = read(ping)
    if out:find("PONG") or out:find("NOAUTH") then
      local f = io.open(dir .. "/redis.pid")
      srv.pid = f and tonumber(f:read("*a"))
      if f then f:close() end
      if srv.pid then return srv end
    end
    sh("sleep 0.02")
  end
  local log = read("cat " .. q(dir .. "/redis.log") .. " 2>/dev/null")
  srv:stop(true)
  error("spec/support/redis.lua: redis-server did not answer PING on port " .. srv.port .. ":\n" .. log, 2)
end

-- Stops every server still running (a spec file's teardown).
function M.stop_all()
  for i = #running, 1, -1 do running[i]:stop() end
end

return M
