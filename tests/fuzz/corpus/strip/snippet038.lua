local g = function(a: T, b) return a end
