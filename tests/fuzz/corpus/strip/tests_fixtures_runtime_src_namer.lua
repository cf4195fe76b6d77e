return { main = function(name)
  assert(process.registry.register(name))
  local again = process.registry.register(name)
  assert(again, "registering our own name twice is fine")
  return 0
end }
