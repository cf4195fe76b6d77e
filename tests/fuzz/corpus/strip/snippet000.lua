type Id = string
local x = 1
