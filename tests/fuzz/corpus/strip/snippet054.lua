function f(): A | B
  return nil
end
