-- n round trips with a pong process; returns how many answers matched.
return { main = function(n)
  local pong = process.spawn("app:pong", "app:processes")
  local inbox = process.inbox()
  local good = 0
  for i = 1, n do
    process.send(pong, "ping", i)
    local m = inbox:receive()
    if m:payload():data() == i and math.type(m:payload():data()) == "integer" then good = good + 1 end
  end
  process.send(pong, "stop")
  return good
end }
