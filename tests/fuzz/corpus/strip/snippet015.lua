local t = { type = "a", [type] = 1 }
type(x)
type "s"
type {1}
