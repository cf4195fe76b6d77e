return { main = function(n) return n * 2 end }
