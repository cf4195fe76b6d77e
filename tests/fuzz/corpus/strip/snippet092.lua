local z = x!.y
