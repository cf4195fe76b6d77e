local x: number = 5
