local time = require("time")
return { main = function(ms)
  local t0 = time.now()
  time.sleep(ms * 1000000)
  return time.now():sub(t0):milliseconds()
end }
