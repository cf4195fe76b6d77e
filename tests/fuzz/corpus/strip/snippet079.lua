local x: T -- trailing comment: T
= 1