local s = "unterminated
local x = 1
