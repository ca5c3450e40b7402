-- bench/timing.lua: what every bench script does with its measurement:
-- one warm-up run that is not counted, then reps counted runs.  Returns
-- the median and the times sorted.  Plain Lua, so bench/floor.lua can use
-- it under luajit alone too.
return function(once, reps)
  once()
  local times = {}
  for r = 1, reps do times[r] = once() end
  table.sort(times)
  local n = #times
  if n % 2 == 1 then return times[(n + 1) / 2], times end
  return (times[n / 2] + times[n / 2 + 1]) / 2, times
end
