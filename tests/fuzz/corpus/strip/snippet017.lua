x = a.type
Name = 1
local type
Name = 2
y = not type
Z = 3
