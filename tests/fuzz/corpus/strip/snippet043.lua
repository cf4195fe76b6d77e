local t = { go = function(self: Obj, n: number) return n end }
