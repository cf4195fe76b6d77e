return function(a, b) end, function() end
