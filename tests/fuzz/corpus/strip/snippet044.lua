function f(
  a: string,
  b: {
    x: number,
  }
) end
