export type Map<K, V> = {[K]: V}
