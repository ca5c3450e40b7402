-- The sluice command line, run as a child process (synchronous bodies).
local sluice = require "sluice"

local BIN = os.getenv("SLUICE_BIN") or "build/sluice"

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local temps = {}
local function script(text)
  local path = os.tmpname()
  spit(path, text)
  temps[#temps + 1] = path
  return path
end

-- Runs `sluice <args>` through the shell; returns {out=, err=, code=}.
-- stdin is `input` (or empty) so the child never reads the test's own.
local function run(args, input, env)
  local out, err, inp = os.tmpname(), os.tmpname(), os.tmpname()
  spit(inp, input or "")
  local cmd = (env or "") .. " " .. q(BIN) .. " " .. args ..
    " <" .. inp .. " >" .. out .. " 2>" .. err .. "; echo $?"
  local p = assert(io.popen(cmd))
  local code = tonumber(p:read("*a"))
  p:close()
  local r = { out = slurp(out), err = slurp(err), code = code }
  os.remove(out); os.remove(err); os.remove(inp)
  return r
end

describe("the sluice command", function()
  after_each(function()
    for _, p in ipairs(temps) do os.remove(p) end
    temps = {}
  end)

  it("-e runs a statement", function()
    assert.same({ out = "hi\t3\n", err = "", code = 0 }, run([[-e 'print("hi", 1 + 2)']]))
  end)

  it("runs a script with its arguments in arg and ...", function()
    local path = script([[
print(arg[0], arg[1], arg[2], #arg, arg[-1] ~= nil)
print(select("#", ...), ...)
]])
    assert.same({ out = path .. "\ta\tb c\t2\ttrue\n2\ta\tb c\n", err = "", code = 0 },
      run(q(path) .. " a 'b c'"))
  end)

  it("runs the main chunk as a task: top-level code may block", function()
    local path = script([[
local sluice = require "sluice"
local t = sluice.spawn(function() sluice.sleep(0.01) return "child" end)
print(t:await(), sluice.current().name)
]])
    assert.same({ out = "child\tmain\n", err = "", code = 0 }, run(q(path)))
  end)

  it("exits 1 on a script error, with 'sluice: ' and the message, then a traceback", function()
    local path = script("local x = 1\nerror('boom')\n")
    local r = run(q(path))
    assert.equal(1, r.code)
    assert.equal("", r.out)
    local first, second = r.err:match("^([^\n]*)\n([^\n]*)\n")
    assert.equal("sluice: " .. path .. ":2: boom", first)
    assert.equal("stack traceback:", second)
    assert.is_truthy(r.err:find("\n\t" .. path .. ":2: in ", 1, true))
  end)

  it("exits 1 on a syntax error", function()
    local path = script("local = 1\n")
    local r = run(q(path))
    assert.equal(1, r.code)
    assert.equal("sluice: " .. path .. ":1: '<name>' expected near '='", r.err:match("^[^\n]*"))
  end)

  it("exits 1 reporting a failed task nobody awaited, with its traceback", function()
    local path = script([[
local sluice = require "sluice"
sluice.spawn(function() error("background boom") end)
print("main done")
]])
    local r = run(q(path))
    assert.equal(1, r.code)
    assert.equal("main done\n", r.out)
    local first, rest = r.err:match("^([^\n]*)\n(.*)$")
    assert.equal("sluice: task #2 failed: " .. path .. ":2: background boom", first)
    assert.equal("stack traceback:\n", rest:sub(1, 17))
    assert.is_truthy(rest:find(path .. ":2:", 1, true))
  end)

  it("does not report a failed task that was awaited", function()
    local path = script([[
local sluice = require "sluice"
local t = sluice.spawn(function() error("handled", 0) end)
print(pcall(t.await, t))
]])
    assert.same({ out = "false\thandled\n", err = "", code = 0 }, run(q(path)))
  end)

  it("exits non-zero on a deadlock, naming the parked tasks and what they wait on", function()
    local path = script([[
local sluice = require "sluice"
local t = sluice.spawn(function() sluice.await(function(cb) end) end)
t.name = "stuck one"
t:await()
]])
    local r = run(q(path))
    assert.equal(2, r.code)
    local lines = {}
    for line in r.err:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("sluice: deadlock: 2 tasks are waiting and nothing can wake them:", lines[1])
    assert.equal("  task #1 (main, waiting) waiting on await task #2 (stuck one, waiting)", lines[2])
    local second
    for i = 3, #lines do
      if lines[i]:match("^  task #2") then second = lines[i] end
    end
    assert.equal("  task #2 (stuck one, waiting) waiting on callback", second)
    assert.is_truthy(r.err:find(path .. ":4:", 1, true))   -- where main waits
    assert.is_truthy(r.err:find(path .. ":2:", 1, true))   -- where the task waits
  end)

  it("-v prints the versions", function()
    local r = run("-v")
    assert.equal(0, r.code)
    assert.equal("", r.err)
    assert.equal(sluice._VERSION .. " (LuaJIT ", r.out:sub(1, #sluice._VERSION + 9))
    assert.is_truthy(r.out:match("^sluice [%d.]+ %(LuaJIT [^,]+, libuv [%d.]+, luv [%d.]+%)\n$"))
  end)

  it("-l requires a module into a global of its name, before -e", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. q(dir)) == 0)
    spit(dir .. "/slmod.lua", "return { answer = 42 }\n")
    local r = run([[-l slmod -e 'print(slmod.answer, package.loaded.slmod == slmod)']], nil,
      "LUA_PATH=" .. q(dir .. "/?.lua;;"))
    os.remove(dir .. "/slmod.lua")
    os.remove(dir)
    assert.same({ out = "42\ttrue\n", err = "", code = 0 }, r)
  end)

  it("runs stdin with '-', passing the rest as arguments", function()
    assert.same({ out = "from stdin\t2\tx\ty\n", err = "", code = 0 },
      run("- x y", 'print("from stdin", select("#", ...), ...)\n'))
  end)

  it("reads the script from stdin when none is named and stdin is not a terminal", function()
    assert.same({ out = "piped\n", err = "", code = 0 }, run("", 'print("piped")\n'))
  end)

  it("stops handling options at --", function()
    local path = script('print(..., arg[0] ~= nil)\n')
    assert.same({ out = "-v\ttrue\n", err = "", code = 0 }, run("-- " .. q(path) .. " -v"))
  end)

  it("runs a script whose first line is a shebang, also as an executable", function()
    local path = script('#!/usr/bin/env sluice\nprint("shebang ok", ...)\n')
    assert.same({ out = "shebang ok\t1\n", err = "", code = 0 }, run(q(path) .. " 1"))
    assert(os.execute("chmod +x " .. q(path)) == 0)
    local dir = BIN:match("^(.*)/[^/]*$") or "."
    local out = os.tmpname()
    local code = os.execute("PATH=" .. q(dir) .. ":\"$PATH\" " .. q(path) .. " x </dev/null >" .. out .. " 2>&1")
    local text = slurp(out)
    os.remove(out)
    assert.equal(0, code)
    assert.equal("shebang ok\tx\n", text)
  end)

  it("exits with the status given to os.exit", function()
    assert.same({ out = "before\n", err = "", code = 3 }, run([[-e 'print("before") os.exit(3)']]))
  end)

  it("--virtual-time runs on the virtual clock", function()
    assert.same({ out = "3600\ttrue\n", err = "", code = 0 },
      run([[--virtual-time -e 'local s = require "sluice" s.sleep(3600) print(s.now(), s.stats().virtual_clock)']]))
    assert.same({ out = "false\n", err = "", code = 0 },
      run([[-e 'print(require("sluice").stats().virtual_clock)']]))
  end)

  it("rejects an unknown option with the usage", function()
    local r = run("-x")
    assert.equal(1, r.code)
    assert.equal("", r.out)
    assert.is_truthy(r.err:match("^usage: [^\n]* %[options%] %[script %[args%]%]\n"))
  end)
end)
