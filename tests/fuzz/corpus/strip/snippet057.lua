local function g<K, V>(m: Map<K, V>): V? end
