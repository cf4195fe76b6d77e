local s = "local x: T = 1"
