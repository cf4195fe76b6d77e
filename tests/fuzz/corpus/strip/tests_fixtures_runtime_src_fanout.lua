-- Spawns n monitored children and waits for every EXIT; returns the sum of their results.
return { main = function(n)
  local events = process.events()
  for i = 1, n do assert(process.spawn_monitored("app:double", "app:processes", i)) end
  local sum = 0
  for _ = 1, n do
    local ev = events:receive()
    sum = sum + ev.result.value
  end
  return sum
end }
