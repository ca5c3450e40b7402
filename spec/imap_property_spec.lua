-- A randomized property test of sluice.imap: seeded schedules of a list,
-- an iterator function or a channel as the source, 0 to 40 items, a
-- concurrency of 1 to 5, ordered or not, calls that sleep random virtual
-- times (some fail, some return nothing), a consumer that is fast or slow
-- and may leave early (then closes the map) or be cancelled.
--
-- Checked, for every schedule:
--   - after every step: never more than concurrency calls in flight, and
--     never more than 2 x concurrency items pulled ahead of the results
--     consumed (bounded look-ahead);
--   - ordered: the results are fn's, in input order; unordered: each in
--     the order its call finished (ties by finishing first), each once;
--   - an item is called at most once, and every pulled item is called
--     unless the map ended first;
--   - a failing call ends the loop with that error, after the results
--     before it; after a close or an error no call is left running;
--   - at the end nothing is left parked (the scheduler's counts).
--
-- Environment: SLUICE_PROPERTY_SCHEDULES (default 10000) and
-- SLUICE_PROPERTY_SEED (first seed, default 1) to reproduce a failure.
local sluice = require "sluice"
local property = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/") .. "support/property.lua")

local fmt = string.format

local function run_schedule(seed)
  local rand = property.prng(seed)
  local problems = {}
  local function problem(s, ...) problems[#problems + 1] = fmt(s, ...) end

  local n, conc, ordered = rand(41) - 1, rand(5), rand(2) == 1
  local fail_at = rand(6) == 1 and rand(n + 1) or nil     -- this item's call raises
  local leave_at = rand(5) == 1 and rand(n + 1) or nil    -- the consumer breaks after this many
  local kind = rand(3)                                    -- 1 list, 2 iterator, 3 channel
  local delay = {}
  for i = 1, n do delay[i] = (rand(4) - 1) * 0.01 end
  local slow = rand(3) == 1

  local pulled, consumed, active, called = 0, 0, 0, {}
  local finished = {}                                     -- call order of finishing
  local function check()
    if active > conc then problem("%d calls in flight, concurrency %d", active, conc) end
    if pulled - consumed > 2 * conc then
      problem("%d items pulled, %d consumed, concurrency %d", pulled, consumed, conc)
    end
  end

  local source, producer
  if kind == 1 then
    source = {}
    for i = 1, n do source[i] = i end
  elseif kind == 2 then
    local i = 0
    source = function()
      if i >= n then return nil end
      i = i + 1
      pulled = pulled + 1
      check()
      return i
    end
  else
    source = sluice.channel(rand(3) - 1)
    producer = sluice.spawn(function()
      for i = 1, n do
        if not source:send(i) then break end
      end
      source:close()
    end)
  end

  local function fn(x)
    if called[x] then problem("item %d called twice", x) end
    called[x] = true
    -- a list's or a channel's item counts as pulled when it is called
    if kind ~= 2 then pulled = pulled + 1 end
    active = active + 1
    check()
    local ok, e = pcall(sluice.sleep, delay[x])
    active = active - 1
    if not ok then error(e, 0) end
    finished[#finished + 1] = x
    if x == fail_at then error("boom " .. x, 0) end
    return x * 10
  end

  local results = {}
  local it = sluice.imap(source, fn, { concurrency = conc, ordered = ordered })
  local ok, err = pcall(function()
    for r in it do
      consumed = consumed + 1
      results[#results + 1] = r
      check()
      if slow then sluice.sleep(0.015) end
      if leave_at and consumed >= leave_at then break end
    end
  end)
  it:close()
  if producer then
    source:close()
    pcall(producer.await, producer)
  end

  if active ~= 0 then problem("%d calls still in flight after close", active) end
  local failed = false                    -- the failing call ran to its error
  for _, x in ipairs(finished) do if x == fail_at then failed = true end end
  if not ok then
    if err ~= "boom " .. tostring(fail_at) or not failed then problem("raised %s", tostring(err)) end
  elseif failed and not (leave_at and consumed >= leave_at) then
    problem("the error of item %d was not raised", fail_at)
  end
  -- the results: each fn(x) once; in input order when ordered
  local seen = {}
  for i, r in ipairs(results) do
    local x = r / 10
    if seen[x] then problem("result of %d twice", x) end
    seen[x] = true
    if ordered and x ~= i then problem("result %d is item %d (ordered)", i, x) end
    if not called[x] then problem("result of %d, never called", x) end
  end
  if not ordered then
    -- as they finished: each result is the earliest finished not yet given
    local given = {}
    for _, r in ipairs(results) do given[r / 10] = true end
    local k = 0
    for _, x in ipairs(finished) do
      if given[x] then
        k = k + 1
        if results[k] / 10 ~= x then problem("result %d is %d, finished %d-th: %d", k, results[k] / 10, k, x) end
      end
    end
  end
  if ok and not leave_at and not fail_at and #results ~= n then
    problem("%d results of %d items", #results, n)
  end
  return problems
end

describe("sluice.imap property", function()
  property.batches(it, "schedules %d..%d: bounds, order, nothing lost or left", run_schedule)
end)
