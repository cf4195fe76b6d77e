local n = 0
setmetatable({}, {__gc = function() n = n + 1 end})
collectgarbage = nil
return {namespace = "app", entries = {{name = "f", kind = "function.lua", source = "return 1", method = "m", n = n}}}
