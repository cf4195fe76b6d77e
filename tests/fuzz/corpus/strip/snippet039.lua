function obj:method(a: T) end
