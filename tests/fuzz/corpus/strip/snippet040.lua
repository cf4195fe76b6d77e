function a.b.c(x: T) end
