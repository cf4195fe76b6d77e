function f(): (string, string) return "a", "b" end
