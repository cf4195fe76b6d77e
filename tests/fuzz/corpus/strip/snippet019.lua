function type(x) return x end
function m.type(a) end
obj:type(1)
