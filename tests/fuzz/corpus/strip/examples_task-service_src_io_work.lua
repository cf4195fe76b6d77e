-- A long I/O-bound task: waits TASK_MIN_SECONDS..TASK_MAX_SECONDS (default 180..300),
-- reporting progress every second, and returns "io work result = N". A DELETE of the task
-- wakes the wait at once (it ends as cancelled).
local time = require("time")
local env = require("env")
local queue = require("queue")

local function run()
    local lo = tonumber(env.get("TASK_MIN_SECONDS") or "") or 180
    local hi = tonumber(env.get("TASK_MAX_SECONDS") or "") or 300
    if hi < lo then hi = lo end
    local seconds = math.random(math.floor(lo), math.floor(hi))
    for done = 1, seconds do
        time.sleep("1s")
        queue.progress({ elapsed = done, total = seconds })
    end
    return string.format("io work result = %d", seconds % 10)
end

return { run = run }
