export type Pair<T> = {first: T, second: T}
return {}
