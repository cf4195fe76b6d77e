local x: { -- comment: {
  a: T } = 1