return { main = function()
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    if m:topic() == "stop" then return 0 end
    process.send(m:from(), "pong", m:payload():data())
  end
end }
