type List<T = string> = {T}
