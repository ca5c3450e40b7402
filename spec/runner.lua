-- spec/runner.lua: runs busted inside the sluice binary, so the loop and
-- the scheduler are live while the specs run (as neovim runs its tests
-- inside nvim).
--
--   sluice --virtual-time spec/runner.lua [busted options] [files or dirs]
--
-- Every `it` body runs as its own sluice task, spawned and awaited by the
-- runner (the main chunk, itself a task), so spec bodies may block.  After
-- each `it` (and its `finally`) a leak check fails the test if it left
-- behind an unfinished task, an open libuv handle, a registry reference,
-- or a failed task nobody awaited; the leftovers are then cancelled or
-- closed so that the next test starts clean.
--
-- The output ends with a line "N passed, N failed" and the exit status is
-- non-zero when anything failed or errored.

local sluice = require "sluice"
local uv = sluice.uv

if not sluice.stats().virtual_clock then
  io.stderr:write("spec/runner.lua: the specs need the virtual clock; run them as\n" ..
    "  sluice --virtual-time spec/runner.lua [busted options] [spec files or dirs]\n")
  os.exit(2)
end

-- How long (virtual seconds) an `it` may stay blocked before it is
-- declared stuck and cancelled.  The clock only jumps when nothing else
-- can happen, so a test blocked with no timer of its own gets here at
-- once instead of deadlocking the whole run.
local STUCK_AFTER = 1e7

local getmetatable, pairs, type, tostring = getmetatable, pairs, type, tostring
local fmt = string.format
local task_mt = getmetatable(sluice.current())
local main_task = sluice.current()
local registry = debug.getregistry()

---------------------------------------------------------------- snapshots

local function is_task(v)
  return type(v) == "userdata" and getmetatable(v) ~= nil and
    getmetatable(v).__index == task_mt.__index
end

-- Registry references in use: luaL_ref hands out integer keys >= 1 and
-- luaL_unref turns a key into a free-list link (a number).
local function count_refs()
  local n = 0
  for k, v in pairs(registry) do
    if type(k) == "number" and k >= 1 and type(v) ~= "number" then n = n + 1 end
  end
  return n
end

-- Unfinished tasks other than the runner's own, found through the
-- anchors the scheduler keeps on them (its anchor table, in the registry
-- as "sluice.anchors": each task's userdata and coroutine).
local anchors = registry["sluice.anchors"]
local function live_tasks()
  local list = {}
  for k, v in pairs(anchors) do
    if type(k) == "number" and is_task(v) and v ~= main_task then
      local st = v.status
      if st ~= "done" and st ~= "failed" and st ~= "cancelled" then list[#list + 1] = v end
    end
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

local function handles()
  local list = {}
  uv.walk(function(h) list[#list + 1] = h end)
  return list
end

local function any_closing()
  local closing = false
  uv.walk(function(h) if h:is_closing() then closing = true end end)
  return closing
end

-- Lets the loop turn until closing handles have had their close
-- callbacks (luv drops its references there), then collects garbage.
local function quiesce()
  for _ = 1, 1000 do
    if not any_closing() then break end
    sluice.sleep(0)
  end
  collectgarbage()
  collectgarbage()
end

local function unobserved()
  local set = {}
  for t in pairs(registry["sluice.unobserved"] or {}) do set[t] = true end
  return set
end

local function snapshot()
  quiesce()
  local hs = {}
  for _, h in ipairs(handles()) do hs[h] = true end
  return { stats = sluice.stats(), handles = hs, refs = count_refs(), unobserved = unobserved() }
end

---------------------------------------------------------------- the check

-- Compares against the snapshot taken before the test; returns a list of
-- problems and cleans up what it found.
local function leak_check(before)
  local problems = {}
  -- Before any collection: a failed task nobody awaited is reported
  -- (outside any test) when it is collected.
  for t in pairs(unobserved()) do
    if not before.unobserved[t] then
      local _, err = t:result()   -- observed now: no report at exit
      problems[#problems + 1] = fmt("%s failed and nobody awaited it: %s", tostring(t), tostring(err))
    end
  end
  quiesce()
  local tasks = live_tasks()
  local st = sluice.stats()
  if #tasks > 0 or st.tasks ~= before.stats.tasks or st.waiting ~= before.stats.waiting or
     st.ready ~= before.stats.ready or st.timers ~= before.stats.timers then
    local names = {}
    for i, t in ipairs(tasks) do names[i] = tostring(t) end
    problems[#problems + 1] = fmt("%d task(s) left unfinished [%s]" ..
      " (stats before: tasks=%d waiting=%d ready=%d timers=%d; after: tasks=%d waiting=%d ready=%d timers=%d)",
      #tasks, table.concat(names, ", "),
      before.stats.tasks, before.stats.waiting, before.stats.ready, before.stats.timers,
      st.tasks, st.waiting, st.ready, st.timers)
    for _, t in ipairs(tasks) do t:cancel("leaked by a test") end
    for _ = 1, 1000 do
      if #live_tasks() == 0 then break end
      sluice.sleep(0)
    end
    for _, t in ipairs(tasks) do t:result() end   -- observed: no report at exit
  end
  local open = {}
  for _, h in ipairs(handles()) do
    if not before.handles[h] then open[#open + 1] = h end
  end
  if #open > 0 then
    local names = {}
    for i, h in ipairs(open) do
      names[i] = tostring(h)
      if not h:is_closing() then h:close() end
    end
    problems[#problems + 1] = fmt("%d libuv handle(s) left open [%s]", #open, table.concat(names, ", "))
  end
  quiesce()
  local refs = count_refs()
  if refs > before.refs then
    problems[#problems + 1] = fmt("registry references not back to baseline: %d before, %d after",
      before.refs, refs)
  end
  return problems
end

---------------------------------------------------------------- running an `it`

local busted   -- the busted instance, captured when it is created

-- "file:line: " of the spec's `it` (or "").
local function spec_position(element)
  if not element.trace then return "" end
  return fmt("%s:%d: ", element.trace.short_src, element.trace.currentline)
end

-- Busted computes where an error happened (the trace: file, line,
-- traceback) from the stack of the coroutine that catches it, which is
-- the runner's, not the test's.  So the trace is computed inside the
-- test's task, kept here by error value, and handed back to busted.
local traces = {}

-- The stack level, seen from error_handler's closure, of the innermost
-- frame in the spec file, or 2 (the raiser).
local function spec_level(element)
  local src = element.trace and element.trace.source
  for l = 3, 200 do
    local info = debug.getinfo(l, "S")
    if not info then break end
    if info.source == src then return l - 1 end
  end
  return 2
end

-- xpcall handler inside the test's task: the error passes unchanged
-- (busted tells failures, pending and errors apart by its type).  An
-- error value that is not a string (a sluice error table) carries no
-- position of its own: it is placed at the spec's line that led to it.
local function error_handler(element)
  return function(e)
    if e == nil then return e end
    local level = type(e) == "string" and 2 or spec_level(element)
    -- getTrace's levels count itself and the wrapper in install()
    traces[e] = busted.getTrace(element, level + 1, e)
    return e
  end
end

-- Runs fn in a new task; returns true or false, err.  A watchdog task
-- (spawned first, so it is parked by the time fn starts) cancels fn's task
-- if it is still blocked after STUCK_AFTER virtual seconds.
local function run_task(element, what, fn)
  local t, stuck
  local dog = sluice.spawn(function()
    if pcall(sluice.sleep, STUCK_AFTER) then
      stuck = true
      t:cancel("stuck")
    end
  end)
  dog.name = "watchdog"
  t = sluice.spawn(function() return xpcall(fn, error_handler(element)) end)
  t.name = what .. ": " .. element.name
  local ok, err = t:await()
  dog:cancel()
  dog:await()
  if stuck then
    return false, fmt("%s%s: still blocked after %g s of virtual time (cancelled)",
      spec_position(element), t.name, STUCK_AFTER)
  end
  return ok, err
end

-- The replacement for an `it` element's run: body and finally each in a
-- task, then the leak check.  Busted's own `finally` is taken over so the
-- check runs after it.
local function wrap_it(element)
  local body = element.sluice_body or element.run
  element.sluice_body = body
  local finally_fn
  element.env.finally = function(fn) finally_fn = fn end
  element.run = function()
    -- Start every test on a whole virtual second, so that times within a
    -- test (t0 + 0.25 + ...) are exact whatever ran before it: c - x is
    -- exact for x in [c/2, 2c], so x + (c - x) lands on c exactly.
    local now = sluice.now()
    if now ~= math.floor(now) then sluice.sleep(math.ceil(now) - now) end
    local before = snapshot()
    local ok, err = run_task(element, "it", body)
    local fok, ferr = true, nil
    if finally_fn then fok, ferr = run_task(element, "finally", finally_fn) end
    -- leftovers are cleaned up even when the test failed; its own error
    -- is then the one reported
    local problems = leak_check(before)
    if not ok then error(err, 0) end
    if not fok then error(ferr, 0) end
    if #problems > 0 then
      busted.fail(spec_position(element) .. "leak check: " .. table.concat(problems, "; "), 0)
    end
  end
end

---------------------------------------------------------------- counting

local passed, failed, suite_started = 0, 0, false

local function install(b)
  busted = b
  local get_trace = b.getTrace
  b.getTrace = function(element, level, msg)
    local trace = msg ~= nil and traces[msg]
    if trace then return trace end
    trace = get_trace(element, level + 1, msg)   -- not a tail call: one frame more
    return trace
  end
  b.subscribe({ "test", "end" }, function() traces = {}; return nil, true end)
  b.subscribe({ "suite", "start" }, function() suite_started = true; return nil, true end)
  b.subscribe({ "test", "start" }, function(element)
    if element.descriptor == "it" then wrap_it(element) end
    return nil, true
  end)
  b.subscribe({ "test", "end" }, function(element, parent, status)
    if status == "success" then passed = passed + 1 end
    return nil, true
  end)
  b.subscribe({ "failure" }, function() failed = failed + 1; return nil, true end)
  b.subscribe({ "error" }, function() failed = failed + 1; return nil, true end)
end

-- Busted's runner builds its instance from busted.core; wrap that factory
-- to subscribe before any output handler or test file is loaded.
local make_core = require "busted.core"
package.loaded["busted.core"] = function(...)
  local b = make_core(...)
  install(b)
  return b
end

-- Called from a Lua function of this file (not straight from pcall):
-- busted then reports failures by raising instead of calling os.exit.
local function run_busted()
  require "busted.runner" { standalone = false }
end

local ok, err = pcall(run_busted)
if not ok and err ~= nil then
  io.stderr:write("spec/runner.lua: busted failed: ", tostring(err), "\n")
end
if not suite_started then os.exit(1) end
io.stdout:write(fmt("%d passed, %d failed\n", passed, failed))
io.stdout:flush()
if failed > 0 or (not ok and err ~= nil) then os.exit(1) end
