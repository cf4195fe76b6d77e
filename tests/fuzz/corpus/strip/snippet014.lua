local type = 1
print(type(x))
t.type = 2
x = type
return type
