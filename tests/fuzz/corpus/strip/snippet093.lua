local as = 1
local x = as
as(1)
x = y
as{1}
t.as = as
