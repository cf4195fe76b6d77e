local y = f(x :: {string}, 2)
