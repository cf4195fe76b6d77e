function f(): (A, B)
  (g)()
end
