type Deep = {
  a: { b: {string}, c: {[string]: {x: number?}} },
  -- a comment: with colon
  d: (number) -> (),
}
return 1
