-- The ksu HTTP contract (seeds/004) over the app:tasks queue; one handler per route.
--   POST   /task              202 {"id", "created_at", "duration": 0}
--   GET    /task/{id}/status  200 {"status", "created_at", "duration"}
--   GET    /task/{id}/result  200 {"result": "io work result = N"} when completed, else
--                             202 (waiting or in process) / 409 (failed) with
--                             {"problem": "task running or failed, no result, check status"}
--   DELETE /task/{id}         204: the task is gone from then on; a waiting or running one
--                             is cancelled (a running one stops within moments), a finished
--                             one is forgotten
--   GET    /task              200 [{id, result, status, created_at, duration}, ...] (result
--                             null unless completed)
-- An unknown (or deleted) id answers 404 {"problem": "task not found"}; the seed does not say
-- what ksu answers there. duration: whole seconds the task has been running (0 before it
-- starts; its final run time once finished).
local http = require("http")
local queue = require("queue")
local time = require("time")
local json = require("json")

local QUEUE = "tasks"
local NO_RESULT = "task running or failed, no result, check status"

-- queue job states → ksu statuses; a cancelled (deleted) task is not shown
local STATUS = {
    queued = "created, but waiting to start", scheduled = "created, but waiting to start",
    retrying = "created, but waiting to start", running = "in process",
    done = "completed", failed = "failed by io bound",
}

local function reply(status, body)
    local res = http.response()
    res:set_status(status)
    if body ~= nil then res:write_json(body) end
end

-- "2025-06-23T09:21:18.261Z" (as the queue writes times, UTC) → milliseconds since the epoch
local function epoch_ms(s)
    local y, mo, d, h, mi, se, ms = s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
    y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
    if mo <= 2 then y = y - 1 end
    local era = y // 400
    local yoe = y - era * 400
    local doy = (153 * ((mo + 9) % 12) + 2) // 5 + d - 1
    local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return (((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60 + tonumber(se)) * 1000 + tonumber(ms)
end

local function duration(job)
    if not job.started_at then return 0 end
    local stop = job.finished_at and epoch_ms(job.finished_at) or time.now():unix_milli()
    return math.max(0, (stop - epoch_ms(job.started_at)) // 1000)
end

-- The task's job, or nil after answering 404.
local function find(id)
    local job = queue.get(QUEUE, id)
    if job and STATUS[job.state] then return job end
    reply(404, { problem = "task not found" })
end

local function create()
    local id, err = queue.publish(QUEUE, {})
    if not id then
        local busy = err:kind() == "RATE_LIMITED" or err:kind() == "UNAVAILABLE"
        return reply(busy and 503 or 500, { problem = tostring(err) })
    end
    local job = assert(queue.get(QUEUE, id))
    http.response():set_header("Location", "/task/" .. id)
    reply(202, { id = id, created_at = job.created_at, duration = 0 })
end

local function status()
    local job = find(http.request():param("id"))
    if not job then return end
    reply(200, { status = STATUS[job.state], created_at = job.created_at, duration = duration(job) })
end

local function result()
    local job = find(http.request():param("id"))
    if not job then return end
    if job.state == "done" then return reply(200, { result = job.result }) end
    reply(job.state == "failed" and 409 or 202, { problem = NO_RESULT })
end

local function delete()
    local job = find(http.request():param("id"))
    if not job then return end
    local was = queue.cancel(QUEUE, job.id)
    if was == "done" or was == "failed" then
        local ok, err = queue.forget(QUEUE, job.id)
        if not ok then return reply(500, { problem = tostring(err) }) end
    end
    reply(204)
end

local function list()
    local out, after = {}, 0
    repeat
        local jobs, next = assert(queue.list(QUEUE, { limit = 1000, after = after }))
        for _, job in ipairs(jobs) do
            if STATUS[job.state] then
                out[#out + 1] = {
                    id = job.id, status = STATUS[job.state], created_at = job.created_at,
                    duration = duration(job),
                    result = job.state == "done" and job.result or json.null,
                }
            end
        end
        after = next
    until not after
    reply(200, out)
end

return { create = create, status = status, result = result, delete = delete, list = list }
