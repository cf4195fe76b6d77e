function f(): T end
