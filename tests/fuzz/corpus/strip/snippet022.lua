local a: T, b: U = 1, 2
