-- A long I/O-bound task: waits TASK_MIN_SECONDS..TASK_MAX_SECONDS (default 180..300),
-- reporting progress every second, and returns "io work result = N". ERROR_RATE % of tasks
-- (default 10) fail part way through (shown as "failed by io bound"). A DELETE of the task
-- wakes the wait at once (it ends as cancelled).
local time = require("time")
local env = require("env")
local queue = require("queue")

local function run()
    local lo = tonumber(env.get("TASK_MIN_SECONDS") or "") or 180
    local hi = tonumber(env.get("TASK_MAX_SECONDS") or "") or 300
    local rate = tonumber(env.get("ERROR_RATE") or "") or 10
    if hi < lo then hi = lo end
    local seconds = math.random(math.floor(lo), math.floor(hi))
    local fail_at = math.random() * 100 < rate and math.random(0, seconds) or nil
    for done = 1, seconds do
        if done - 1 == fail_at then error("io bound failure") end
        time.sleep("1s")
        queue.progress({ elapsed = done, total = seconds })
    end
    if fail_at then error("io bound failure") end
    return string.format("io work result = %d", seconds % 10)
end

return { run = run }
