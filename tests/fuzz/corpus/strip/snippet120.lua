local x: T = "a: b" -- c: d
type S = string -- type Q = R
