-- sluice.weighted: (being written)
return function(M, I) end
