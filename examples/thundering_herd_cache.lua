-- examples/thundering_herd_cache.lua: 1,000 concurrent requests for one
-- expired cache key, with and without sluice.cache.
--
--   build/sluice examples/thundering_herd_cache.lua [--requests N]
--
-- A naive cache (a table with expiry times, as in the seed article) lets
-- every request that sees the expired entry call the backend: a herd of
-- N requests makes N backend calls at once, just when the backend is
-- busiest.  sluice.cache runs one fetch per key and makes every request
-- wait for it.  The backend takes 50 ms; the run uses the virtual clock,
-- so it is fast and its figures are exact.
local sluice = require "sluice"

local N = 1000
if arg and arg[1] == "--requests" then
  N = tonumber(arg[2])
  if not N or N < 1 or N % 1 ~= 0 then
    io.stderr:write("thundering_herd_cache: --requests needs a positive integer\n")
    os.exit(1)
  end
elseif arg and arg[1] then
  io.stderr:write("usage: sluice examples/thundering_herd_cache.lua [--requests N]\n")
  os.exit(1)
end

local TTL, BACKEND_LATENCY = 60, 0.05

-- The backend: counts its calls and the most it served at once.
local function new_backend()
  local b = { calls = 0, active = 0, peak = 0 }
  function b.load(key)
    b.calls = b.calls + 1
    local n = b.calls
    b.active = b.active + 1
    if b.active > b.peak then b.peak = b.active end
    sluice.sleep(BACKEND_LATENCY)
    b.active = b.active - 1
    return "profile of " .. key .. " #" .. n
  end
  return b
end

-- The seed's naive cache: check, miss, fetch, store.
local function naive_cache(ttl)
  local entries = {}
  return function(key, fetch)
    local e = entries[key]
    if e and e.expires > sluice.now() then return e.value end
    local v = fetch(key)
    entries[key] = { value = v, expires = sluice.now() + ttl }
    return v
  end
end

-- Warms the key, lets it expire, then sends N concurrent requests.
local function herd(get)
  get("user:42")
  sluice.sleep(TTL + 1)
  local t0, answers, same = sluice.now(), {}, true
  sluice.scope(function(s)
    for i = 1, N do s:spawn(function() answers[i] = get("user:42") end) end
  end)
  for i = 2, N do same = same and answers[i] == answers[1] end
  return sluice.now() - t0, answers[1], same
end

local function report(name, backend, took, answer, same)
  print(string.format("%-13s backend calls %5d (peak %4d at once)  all %d requests answered in %.0f ms%s",
    name, backend.calls - 1, backend.peak, N, took * 1000, same and ", all the same value" or ", values differ"))
  return answer
end

sluice.run({ clock = "virtual" }, function()
  print(string.format("%d concurrent requests for one expired key (ttl %g s, backend %g ms):", N, TTL,
    BACKEND_LATENCY * 1000))

  local b1 = new_backend()
  local naive = naive_cache(TTL)
  report("naive cache", b1, herd(function(k) return naive(k, b1.load) end))

  local b2 = new_backend()
  local cache = sluice.cache { ttl = TTL }
  local answer = report("sluice.cache", b2, herd(function(k) return cache:get(k, b2.load) end))
  local st = cache:stats()
  print(string.format("sluice.cache stats: hits %d, misses %d, fetches %d, errors %d", st.hits, st.misses,
    st.fetches, st.errors))
  print("every request got: " .. answer)
  cache:close()
end)
