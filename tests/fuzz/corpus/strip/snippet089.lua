local y = (x :: any).f
