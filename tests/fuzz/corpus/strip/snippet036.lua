function f(a: string, b: number?, ...: any) end
