--[[
local x: T = 1
]]
--[==[
]]
type X = Y
]==]
return 1
