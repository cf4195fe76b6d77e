--[==[ a ]] local x: T ]==]
local s = [==[ a ]] type X = 1 ]==]
