-- One job: 100-500 ms of simulated work that fails ERROR_RATE % of the time (default 20).
-- A raised error is a failed attempt: the queue retries it with backoff until max_retries.
local time = require("time")
local env = require("env")
local logger = require("logger")
local queue = require("queue")

local function run(data)
    local job = queue.job()
    local rate = tonumber(env.get("ERROR_RATE") or "") or 20
    time.sleep(string.format("%dms", math.random(100, 500)))
    if math.random() * 100 < rate then
        error(string.format("simulated failure of %s (attempt %d)", job.id, job.attempt))
    end
    logger:info("job done", { id = job.id, attempt = job.attempt })
    return { payload = data.payload, attempts = job.attempt }
end

return { run = run }
