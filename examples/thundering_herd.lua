-- examples/thundering_herd.lua: 1,000 concurrent requests for one expired
-- key, over real HTTP, with and without sluice.cache.
--
--   build/sluice examples/thundering_herd.lua [--n 1000]
--
-- An origin server (127.0.0.1, random port) answers /profile/<id> in
-- 50 ms and counts its hits.  A front service caches the profiles for
-- 1 s.  When the entry expires under load, a naive cache (a table with
-- expiry times) lets every request that finds it expired go to the origin:
-- --n requests at once make --n origin hits, just when the origin is
-- busiest.  sluice.cache runs one fetch per key and every request waits
-- for it: one origin hit.
local sluice = require "sluice"
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local report = require "support.report"
local http = sluice.http

local o = report.options("thundering_herd", { n = 1000 }, "[--n 1000]")
local TTL = 1

local hits, active, peak = 0, 0, 0
local origin = http.serve { port = 0, handler = function(req)
  hits = hits + 1
  active = active + 1
  if active > peak then peak = active end
  sluice.sleep(0.05)
  active = active - 1
  return "profile " .. req.path:match("%d+")
end }
local base = "http://127.0.0.1:" .. origin.port .. "/profile/"

local function load(key)
  local res = http.get(base .. key)
  assert(res.status == 200, "origin answered " .. res.status)
  return res.body
end

-- The naive cache: check, and on a miss fetch and store.
local naive = {}
local function naive_get(key)
  local e = naive[key]
  if e and e.expires > sluice.now() then return e.value end
  local v = load(key)
  naive[key] = { value = v, expires = sluice.now() + TTL }
  return v
end

local cache = sluice.cache { ttl = TTL }
local function cached_get(key) return cache:get(key, load) end

-- Warms the key, lets it expire, then sends n concurrent requests for it.
local function herd(label, get)
  get(42)
  sluice.sleep(TTL + 0.1)
  hits, peak = 0, 0
  local failed, t0 = 0, sluice.now()
  sluice.scope(function(s)
    for i = 1, o.n do
      s:spawn(function()
        local ok, v = pcall(get, 42)
        if not (ok and v == "profile 42") then failed = failed + 1 end
      end)
    end
  end)
  print(string.format("  %-13s %4d origin hit%s (at most %d at once), %d failed, all answered in %.0f ms",
    label, hits, hits == 1 and "" or "s", peak, failed, (sluice.now() - t0) * 1000))
  return hits, failed
end

print(string.format("thundering herd: %d concurrent requests for one expired key (origin: 50 ms a request, 127.0.0.1:%d)",
  o.n, origin.port))
local naive_hits, f1 = herd("naive cache", naive_get)
local cache_hits, f2 = herd("sluice.cache", cached_get)
print(string.format("origin hits: %d without sluice.cache, %d with it", naive_hits, cache_hits))
print(string.format("failures: %d", f1 + f2))
cache:close()
origin:close()
os.exit((cache_hits == 1 and f1 + f2 == 0) and 0 or 1)
