local function f(...) return select('#', ...) end
