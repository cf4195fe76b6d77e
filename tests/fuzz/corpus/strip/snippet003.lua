type Cb = (msg: string, n: number?) -> (boolean, string?)
return 1
