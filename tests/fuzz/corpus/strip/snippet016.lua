x = type
Name = 1
