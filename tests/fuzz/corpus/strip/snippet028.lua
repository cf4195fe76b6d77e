local x: T
(print)(x)
