local t = {a = 1, [k] = v, f = function(a) return a end; 3}
