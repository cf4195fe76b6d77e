local s = a..b..'c'
local n = 0x1p-4 + 1e+5 + .5 + 3 // 2 + 0xFF ~ 1
