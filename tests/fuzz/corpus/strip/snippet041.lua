function a.b:c(x: T, y: {T}) end
