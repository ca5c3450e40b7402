-- examples/pipeline.lua: a three-stage channel pipeline with backpressure.
--
--   build/sluice examples/pipeline.lua [items=200] [capacity=8] [workers=4]
--
-- A fast producer (one item per millisecond) feeds a channel; a stage of
-- `workers` parallel calls (sluice.imap over that channel, 20 ms each)
-- feeds a second channel; a slow consumer (50 ms per item) drains it.
-- Nothing polls and nothing grows: the consumer sets the pace, the full
-- channels block the stages upstream, and the queues never hold more
-- than their capacity.  It runs on a virtual clock (sluice.run), so the
-- simulated seconds pass at once and the figures are exact.
local sluice = require "sluice"

local N = tonumber(arg and arg[1]) or 200
local CAP = tonumber(arg and arg[2]) or 8
local WORKERS = tonumber(arg and arg[3]) or 4
local fmt = string.format

local function pipeline()
  local raw, out = sluice.channel(CAP), sluice.channel(CAP)
  local blocked, depth_raw, depth_out, pulled_ahead = 0, 0, 0, 0
  local produced, consumed = 0, 0
  local t0 = sluice.now()

  sluice.spawn(function()                 -- producer: fast
    for i = 1, N do
      sluice.sleep(0.001)
      local t = sluice.now()
      raw:send(i)
      blocked = blocked + (sluice.now() - t)
      produced = i
      if raw.count > depth_raw then depth_raw = raw.count end
    end
    raw:close()
  end)

  sluice.spawn(function()                 -- middle stage: parallel
    for sq in sluice.imap(raw, function(x)
      sluice.sleep(0.02)
      return x * x
    end, { concurrency = WORKERS }) do
      out:send(sq)
      if out.count > depth_out then depth_out = out.count end
    end
    out:close()
  end)

  local sum = 0
  for v in out:iter() do                  -- consumer: slow
    sluice.sleep(0.05)
    sum = sum + v
    consumed = consumed + 1
    local ahead = produced - consumed
    if ahead > pulled_ahead then pulled_ahead = ahead end
  end
  return sluice.now() - t0, blocked, depth_raw, depth_out, pulled_ahead, sum
end

local elapsed, blocked, depth_raw, depth_out, ahead, sum = sluice.run({ clock = "virtual" }, pipeline)
print(fmt("pipeline: %d items, channels of capacity %d, %d parallel workers (virtual clock)", N, CAP, WORKERS))
print(fmt("  total time           %.2f s (the consumer's pace: %d x 50 ms = %.2f s)", elapsed, N, N * 0.05))
print(fmt("  producer blocked     %.2f s of %.2f s (it could go 50x faster)", blocked, elapsed))
print(fmt("  deepest queues       %d and %d (capacity %d)", depth_raw, depth_out, CAP))
-- in flight: both buffers, imap's look-ahead (2 x workers), one item in
-- the middle stage's hand and one in the consumer's
print(fmt("  most items in flight %d produced and not yet consumed (bound: %d + %d + %d + 2 = %d)",
  ahead, CAP, 2 * WORKERS, CAP, 2 * CAP + 2 * WORKERS + 2))
print(fmt("  checksum             %d (expected %d)", sum, N * (N + 1) * (2 * N + 1) / 6))
assert(depth_raw <= CAP and depth_out <= CAP, "a queue grew beyond its capacity")
print("  backpressure held: no queue grew beyond its capacity")
