local id = function<T>(x: T): T return x end
