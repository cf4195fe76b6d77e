local s = obj:method(a, b):other{1}:third"x"
local y = a.b:c()
