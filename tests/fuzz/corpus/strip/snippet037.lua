local function f(x: T) return x end
