-- examples/priority_queue.lua: a rate-limited API served by priority.
--
--   build/sluice examples/priority_queue.lua
--
-- An API allows 5 requests per second and 3 in flight.  A batch of 12
-- low-priority report requests is queued first; half a second later, 4
-- user-facing requests arrive with a better priority.  sluice.queue
-- starts at most 5 requests in any 1 s window (a sliding window: a start
-- frees exactly 1 s after it happened), at most 3 at once, and always
-- the best pending request next: the user requests overtake the reports
-- still waiting.  (Lower numbers run first, as in
-- sluice.priority_semaphore; p-queue counts the other way round.)
--
-- It runs on the virtual clock (sluice.run{clock = "virtual"}), so the
-- simulated seconds pass at once and every time printed is exact.
local sluice = require "sluice"

local USER, REPORT = 0, 10     -- priorities: lower runs first

local log = {}

local function request(name, took)
  return function()
    log[#log + 1] = ("%5.2f s  start %s"):format(sluice.now(), name)
    sluice.sleep(took)          -- the API call
    return name
  end
end

sluice.run({ clock = "virtual" }, function()
  local api = sluice.queue { concurrency = 3, interval = 1, interval_cap = 5 }
  local handles = {}
  for i = 1, 12 do
    handles[#handles + 1] = api:add(request("report " .. i, 0.3), { priority = REPORT })
  end
  sluice.sleep(0.5)
  print(("at 0.50 s: %d running, %d waiting"):format(api.pending, api.size))
  for i = 1, 4 do
    handles[#handles + 1] = api:add(request("user " .. i, 0.2), { priority = USER })
  end
  for _, h in ipairs(handles) do h:await() end
  api:on_idle()
  for _, line in ipairs(log) do print(line) end
  local st = api:stats()
  print(("%d requests in %.2f s; %d held back by the 5/s cap; longest wait %.2f s"):format(
    st.started, sluice.now(), st.throttled, st.wait_max))
end)
