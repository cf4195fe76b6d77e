local x = 1 type Id = string | number
