function obj.a.b:c(x, y) return self, x, y end
