local y = x :: number
