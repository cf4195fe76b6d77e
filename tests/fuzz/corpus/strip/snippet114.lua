local s = "a\z
   b: c"
local t = "a\
local x: T"
