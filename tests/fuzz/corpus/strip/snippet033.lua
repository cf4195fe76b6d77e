for i: number = 1, 10 do end
