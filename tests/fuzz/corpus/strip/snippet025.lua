local x: number?
local y = x
