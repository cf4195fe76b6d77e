function f(): T? end
