-- examples/rate_limited_api.lua: per-host rate limits and a global
-- concurrency limit against a simulated API.
--
--   build/sluice examples/rate_limited_api.lua [--requests N] [--seed N]
--
-- The API (simulated with sluice.sleep) serves three hosts.  Each host
-- allows 10 requests a second with bursts of 5 and answers any request
-- beyond that with "429 Too Many Requests"; a response takes 20-120 ms.
-- The client may have at most 8 requests in flight (its connection pool).
--
-- First the requests go out with only the concurrency limit: most of them
-- are rejected.  Then every request first takes a token from its host's
-- bucket, sluice.keyed(...) making one token_bucket{capacity = 5,
-- rate = 10} per host on first use: none is rejected, each host sees
-- exactly 10 requests a second after its burst of 5, and at most 8 are
-- in flight.  The token is taken before the connection slot, so no slot
-- is held while waiting for the rate.  Idle buckets are dropped 2 s after
-- their host's last request, so a crawler meeting thousands of hosts
-- keeps memory bounded.
--
-- It runs on the virtual clock (sluice.run{clock = "virtual"}): the
-- simulated seconds pass in milliseconds and the figures are exact and the
-- same on every run.
local sluice = require "sluice"

local fmt, max = string.format, math.max

local opts = { requests = 150, seed = 1 }
do
  local i = 1
  while arg and arg[i] do
    local name = arg[i]:match("^%-%-(%a+)$")
    local v = tonumber(arg[i + 1])
    if not (name and opts[name] and v and v >= 1 and v % 1 == 0) then
      io.stderr:write("usage: sluice examples/rate_limited_api.lua [--requests N] [--seed N]\n")
      os.exit(1)
    end
    opts[name] = v
    i = i + 2
  end
end

local HOSTS = { "api.a.example", "api.b.example", "api.c.example" }
local RATE, BURST, CONNECTIONS = 10, 5, 8

---------------------------------------------------------------- the API

-- The server's own limit: a token count per host, refilled at RATE up to
-- BURST (a hair of slack for float rounding at the exact due times).
local function new_api()
  local api = { seen = {}, rejected = 0, served = 0, inflight = 0, peak = 0 }
  local allowance = {}
  function api.request(host, latency)
    local now = sluice.now()
    local a = allowance[host] or { tokens = BURST, at = now }
    allowance[host] = a
    a.tokens = math.min(BURST, a.tokens + (now - a.at) * RATE)
    a.at = now
    api.inflight = api.inflight + 1
    api.peak = max(api.peak, api.inflight)
    local seen = api.seen[host] or { n = 0 }
    api.seen[host] = seen
    seen.n = seen.n + 1
    seen.first = seen.first or now
    seen.last = now
    if seen.n == BURST + 1 then seen.after_burst = now end
    local ok = a.tokens >= 1 - 1e-9
    if ok then a.tokens = a.tokens - 1 end
    sluice.sleep(latency)
    api.inflight = api.inflight - 1
    if ok then api.served = api.served + 1 else api.rejected = api.rejected + 1 end
    return ok and 200 or 429
  end
  return api
end

---------------------------------------------------------------- the client

-- Request i goes to host HOSTS[i % 3 + 1] and takes latency[i].
math.randomseed(opts.seed)
local latency = {}
for i = 1, opts.requests do latency[i] = 0.020 + math.random(0, 100) / 1000 end

local function run(per_host)
  local api = new_api()
  local pool = sluice.semaphore(CONNECTIONS)
  sluice.scope(function(scope)
    for i = 1, opts.requests do
      local host = HOSTS[i % #HOSTS + 1]
      scope:spawn(function()
        if per_host then per_host:get(host):take() end
        pool:with(api.request, host, latency[i])
      end)
    end
  end)
  return api
end

local report = sluice.run({ clock = "virtual" }, function()
  local out = {}
  local function say(...) out[#out + 1] = fmt(...) end
  say("rate_limited_api: %d requests to %d hosts, at most %d in flight, each host allows %d/s (burst %d)",
    opts.requests, #HOSTS, CONNECTIONS, RATE, BURST)

  local t0 = sluice.now()
  local api = run(nil)
  say("only the connection limit: done in %.2f s, %d served, %d rejected with 429, peak %d in flight",
    sluice.now() - t0, api.served, api.rejected, api.peak)

  local per_host = sluice.keyed(function()
    return sluice.token_bucket{ capacity = BURST, rate = RATE }
  end, { idle = 2, max_keys = 1000 })
  t0 = sluice.now()
  api = run(per_host)
  say("a token bucket per host: done in %.2f s, %d served, %d rejected with 429, peak %d in flight (limit %d)",
    sluice.now() - t0, api.served, api.rejected, api.peak, CONNECTIONS)
  for _, host in ipairs(HOSTS) do
    local s = api.seen[host]
    say("  %s: %d requests; after the burst of %d, %.1f requests/s", host, s.n, BURST,
      (s.n - BURST - 1) / (s.last - s.after_burst))
  end
  say("buckets kept: %d; 2 s after the last request: %d", per_host.size, (function()
    sluice.sleep(2)
    return per_host.size
  end)())
  return table.concat(out, "\n")
end)
print(report)
