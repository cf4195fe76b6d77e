function f() : T local x = 1 end
