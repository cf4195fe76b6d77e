type Nested = Map<string, Array<number>>
local y = 2
