function f(): T
  return 1
end
