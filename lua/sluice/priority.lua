-- sluice.priority: (being written)
return function(M, I) end
