local time = require("time")
-- Returns "ok" or the first failed expectation.
return { main = function()
  local function expect(cond, what) if not cond then error(what, 2) end end
  local ch, buf, done = channel.new(), channel.new(3), channel.new()
  local got = {}
  coroutine.spawn(function()
    for i = 1, 5 do ch:send(i) end
    ch:close()
  end)
  coroutine.spawn(function()
    for v in function() local x, ok = ch:receive() if ok then return x end end do got[#got + 1] = v end
    done:send(true)
  end)
  expect(done:receive() == true, "done")
  expect(table.concat(got, ",") == "1,2,3,4,5", "fifo " .. table.concat(got, ","))
  buf:send("a"); buf:send("b"); buf:send("c")
  local r = channel.select { buf:case_send("d"), default = true }
  expect(r.default == true, "default when full")
  r = channel.select { buf:case_receive() }
  expect(r.channel == buf and r.value == "a" and r.ok, "select receive")
  -- a sender parked on a full buffer moves in when a slot frees
  coroutine.spawn(function() buf:send("e") end)
  local seq = {}
  for i = 1, 3 do seq[i] = buf:receive() end
  expect(table.concat(seq) == "bce", "after park " .. table.concat(seq))
  -- two-way select with timeout
  local never = channel.new()
  local t = time.after("20ms")
  r = channel.select { never:case_receive(), t:case_receive() }
  expect(r.channel == t, "timeout case")
  -- select send wakes a parked receiver
  local rc = channel.new()
  local seen
  coroutine.spawn(function() seen = rc:receive() end)
  r = channel.select { rc:case_send(42) }
  expect(r.channel == rc and r.ok, "select send")
  time.sleep(0)
  expect(seen == 42, "receiver got value")
  -- close wakes select receivers with ok = false
  local cc = channel.new()
  coroutine.spawn(function() time.sleep("5ms"); cc:close() end)
  r = channel.select { cc:case_receive() }
  expect(r.ok == false and r.value == nil, "closed select")
  local ok = pcall(function() cc:send(1) end)
  expect(not ok, "send on closed raises")
  local ok2, err = pcall(channel.select, { 5 })
  expect(not ok2 and tostring(err):match("not a channel case"), "bad case")
  return "ok"
end }
