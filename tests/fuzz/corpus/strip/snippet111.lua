-- type X = number
--[[ function f(a: T): U end ]]
return 1
