function f(): {[string]: integer} return {} end
