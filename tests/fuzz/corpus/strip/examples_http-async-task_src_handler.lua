-- POST /api/tasks {"name": "...", "duration": N}: answers 202 at once and runs the task in a
-- coroutine that outlives the response (it moves to app:processes when the handler returns).
local http = require("http")
local json = require("json")
local time = require("time")
local logger = require("logger")

local function bad_request(res, message)
    res:set_status(400)
    return res:write_json({ error = message })
end

local function handler()
    local req = http.request()
    local res = http.response()

    local body, err = req:body_json()
    if err or type(body) ~= "table" then
        return bad_request(res, err and tostring(err) or "the body must be a JSON object")
    end
    if type(body.name) ~= "string" or #body.name == 0 then
        return bad_request(res, "name is required and must be a non-empty string")
    end
    local duration = body.duration or 3
    if math.type(duration) ~= "integer" or duration < 0 or duration > 3600 then
        return bad_request(res, "duration must be an integer number of seconds (0-3600)")
    end

    local task_id = "task_" .. os.time()
    coroutine.spawn(function()
        logger:info("Task started", { task_id = task_id, name = body.name })
        for step = 1, duration do
            time.sleep("1s")
            logger:info("Task progress", { task_id = task_id, step = step, total = duration })
        end
        logger:info("Task completed", { task_id = task_id })
    end)

    res:set_status(202)
    return res:write_json({
        task_id = task_id,
        name = body.name,
        status = "accepted",
        message = string.format("Task will run for %d seconds in background", duration),
    })
end

return { handler = handler }
