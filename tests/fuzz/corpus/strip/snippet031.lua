local x <const> = 5
local f <close> = nil
local a <const>, b = 1, 2
