local y = x as number
