-- sluice.limit: (being written)
return function(M, I) end
