type A = {x: number} type B = {y: A}
return 1