function m.f<T...>(...: T...): T... end
