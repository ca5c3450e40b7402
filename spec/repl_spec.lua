-- The REPL, driven through a pseudo-terminal: each test starts `sluice`
-- in its own tmux server (its socket in the test's temporary directory,
-- removed with it), types into it with send-keys and reads the screen
-- with capture-pane.
--
-- The bodies are synchronous and only shell out (io.popen, os.execute),
-- so the file runs under plain busted as well as under spec/runner.lua.
-- The binary is $SLUICE_BIN, else build/sluice from the current directory.

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- Runs a shell command and returns its standard output.
local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function nap()
  os.execute("sleep 0.1")
end

local BIN = os.getenv("SLUICE_BIN") or "build/sluice"
if BIN:sub(1, 1) ~= "/" then BIN = trim(sh("pwd")) .. "/" .. BIN end

local DEADLINE = 5   -- seconds a screen may take to show what is awaited

---------------------------------------------------------------- sessions

local Session = {}
Session.__index = Session

-- Starts `sluice <args>` in a fresh tmux server, in a temporary directory
-- that is also its HOME.  The exit status lands in <dir>/status.  A
-- watchdog ends the server after a minute should the test itself be
-- killed before its `finally` ran (it stops as soon as sluice is done).
local function start(args, files)
  local dir = trim(sh("mktemp -d \"${TMPDIR:-/tmp}/sluice-repl.XXXXXX\""))
  assert(dir ~= "", "mktemp -d failed")
  local sock = dir .. "/tmux.sock"
  for name, text in pairs(files or {}) do spit(dir .. "/" .. name, text) end
  spit(dir .. "/run.sh", table.concat({
    "cd " .. q(dir),
    "HOME=" .. q(dir) .. "; export HOME",
    "(i=0; while [ $i -lt 600 ] && kill -0 $$ 2>/dev/null; do sleep 0.1; i=$((i+1)); done",
    " kill -0 $$ 2>/dev/null && tmux -S " .. q(sock) .. " kill-server) >/dev/null 2>&1 &",
    q(BIN) .. " " .. (args or ""),
    "echo $? > " .. q(dir .. "/status"),
  }, "\n") .. "\n")
  local s = setmetatable({ dir = dir, sock = sock }, Session)
  s:tmux("new-session -d -s repl -x 120 -y 40 " .. q("sh " .. q(dir .. "/run.sh")))
  return s
end

function Session:tmux(args)
  return sh("{ env -u TMUX tmux -S " .. q(self.sock) .. " " .. args .. "; } 2>/dev/null")
end

-- Ends the server (sluice gets SIGHUP) and removes the directory, again
-- if the dying shell wrote its status file there meanwhile.
function Session:close()
  self:tmux("kill-server")
  for _ = 1, 10 do
    if trim(sh("rm -rf " .. q(self.dir) .. " 2>/dev/null; test -d " .. q(self.dir) .. " || echo gone")) == "gone" then
      return
    end
    nap()
  end
end

-- The visible screen, trailing blank lines dropped.
function Session:screen()
  return (self:tmux("capture-pane -p -J -t repl"):gsub("%s+$", ""))
end

-- Waits until the screen matches pattern (plain text unless lua_pattern)
-- and returns it; fails with the last screen after DEADLINE seconds.
function Session:wait_for(pattern, lua_pattern)
  local screen
  for _ = 1, DEADLINE * 10 do
    screen = self:screen()
    if screen:find(pattern, 1, not lua_pattern) then return screen end
    nap()
  end
  error(("screen never showed %q; it shows:\n%s"):format(pattern, screen), 2)
end

-- Types text (literally) and Enter.
function Session:line(text)
  self:tmux("send-keys -t repl -l " .. q(text))
  self:tmux("send-keys -t repl Enter")
end

function Session:key(name)
  self:tmux("send-keys -t repl " .. name)
end

-- Is the prompt waiting: is the last line of the screen a bare "> "?
function Session:prompt_ready()
  return self:screen():match("[^\n]*$") == ">"
end

function Session:wait_prompt()
  for _ = 1, DEADLINE * 10 do
    if self:prompt_ready() then return self:screen() end
    nap()
  end
  error("the prompt never came back; the screen shows:\n" .. self:screen(), 2)
end

-- Waits for the process to end; returns its exit status.
function Session:wait_exit()
  for _ = 1, DEADLINE * 10 do
    local status = slurp(self.dir .. "/status")
    if status and status:find("\n") then return tonumber(trim(status)) end
    nap()
  end
  error("sluice did not exit; the screen shows:\n" .. self:screen(), 2)
end

function Session:alive()
  return trim(self:tmux("has-session -t repl && echo yes")) == "yes"
end

---------------------------------------------------------------- the specs

describe("the REPL", function()
  local s

  local function open(args, files)
    s = start(args, files)
    finally(function() s:close() end)
    s:wait_prompt()
  end

  it("prints the value of an expression", function()
    open()
    s:line("1+1")
    s:wait_for("> 1+1\n2\n>")
  end)

  it("prints every value of =expr", function()
    open()
    s:line("=6*7, 'x', nil")
    s:wait_for("\n42%s+x%s+nil\n>", true)
  end)

  it("continues an unfinished chunk on a >> line", function()
    open()
    s:line("function double(x)")
    s:wait_for("\n>>")
    s:line("return 2 * x")
    s:line("end")
    s:wait_prompt()
    s:line("double(21)")
    s:wait_for("> function double(x)\n>> return 2 * x\n>> end\n> double(21)\n42\n>")
  end)

  it("runs each line as a task, so it may block", function()
    open()
    s:line("sluice.sleep(0.2) print('slept')")
    -- no prompt in between: it came back only once the line had finished
    s:wait_for("> sluice.sleep(0.2) print('slept')\nslept\n>")
  end)

  it("keeps tasks spawned at the prompt running while it waits", function()
    open()
    s:line("sluice.spawn(function() sluice.sleep(1) print('from the background') end)")
    local screen = s:wait_prompt()
    assert.is_nil(screen:find("\nfrom the background", 1, true))
    s:wait_for("\nfrom the background\n>")
    s:line("=1+2")
    s:wait_for("> =1+2\n3\n>")
  end)

  it("redraws a half-typed line after a background task printed", function()
    open()
    s:line("sluice.spawn(function() sluice.sleep(1) print('tick') end)")
    s:wait_prompt()
    s:tmux("send-keys -t repl -l " .. q("=6 *"))
    s:wait_for("\n> =6 *")
    s:wait_for("\ntick\n> =6 *")
    s:line(" 7")
    s:wait_for("\n> =6 * 7\n42\n>")
  end)

  it("cancels a line that nothing can wake", function()
    open()
    s:line("sluice.await(function(callback) end)")
    s:wait_for("deadlock: nothing can wake this line (waiting on callback)\ncancelled: deadlock\n>")
    s:line("=8")
    s:wait_for("> =8\n8\n>")
  end)

  it("shows an error with its traceback and carries on", function()
    open()
    s:line("error('boom')")
    s:wait_for("> error('boom')\nstdin:1: boom\nstack traceback:\n")
    s:wait_prompt()
    s:line("=1")
    s:wait_for("> =1\n1\n>")
    s:key("C-d")
    assert.are.equal(0, s:wait_exit())   -- a line's error is no failure
  end)

  it("cancels the running line on Ctrl-C, not itself", function()
    open()
    s:line("sluice.sleep(100)")
    s:wait_for("> sluice.sleep(100)")
    nap()
    s:key("C-c")
    s:wait_for("cancelled: interrupted\n>")
    s:line("=5")
    s:wait_for("> =5\n5\n>")
  end)

  it("drops the line being typed on Ctrl-C", function()
    open()
    s:tmux("send-keys -t repl -l " .. q("half a line"))
    s:wait_for("> half a line")
    s:key("C-c")
    s:wait_prompt()
    s:line("=7")
    s:wait_for("\n> =7\n7\n>")
    assert.is_nil(s:screen():find("stdin:", 1, true))
  end)

  it("exits on Ctrl-D with status 0 and keeps the history", function()
    open()
    s:line("x = 40")
    s:wait_prompt()
    s:line("=x + 2")
    s:wait_for("\n42\n>")
    s:key("C-d")
    assert.are.equal(0, s:wait_exit())
    for _ = 1, 10 do
      if not s:alive() then break end
      nap()
    end
    assert.is_false(s:alive())
    assert.are.equal("x = 40\n=x + 2\n", slurp(s.dir .. "/.sluice_history"))
  end)

  it("with -i, prompts once the script has finished", function()
    s = start("-i script.lua", {
      ["script.lua"] = "local sluice = require 'sluice'\n" ..
                       "sluice.sleep(0.3)\n" ..
                       "print('script says hi')\n" ..
                       "greeting = 'hello'\n",
    })
    finally(function() s:close() end)
    local screen = s:wait_for("\nscript says hi\n>")
    assert.is_nil(screen:find("\n>.*script says hi"))   -- no prompt before it
    s:line("=greeting")
    s:wait_for("> =greeting\nhello\n>")
  end)
end)
