local s = [[
type X = {
]]
local c = '::x::'
