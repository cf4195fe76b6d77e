local x <const>: number = 5
