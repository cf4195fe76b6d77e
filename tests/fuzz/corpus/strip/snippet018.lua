if type(v) == "table" then return type end
local export = 1
export = type
