local a: T, b: U
