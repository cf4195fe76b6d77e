return { main = function()
  coroutine.spawn(function() error("boom in a coroutine") end)
  local inbox = process.inbox()
  inbox:receive()
  return 0
end }
