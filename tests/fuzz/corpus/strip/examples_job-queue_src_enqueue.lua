-- POST /enqueue {"id": "...", "payload": "...", "max_retries": N}
--   202 {"status":"queued"}  accepted (durable: it survives a crash of the host)
--   400 bad JSON or fields   429 the queue is full   503 the service is shutting down
local http = require("http")
local queue = require("queue")

local function reply(res, status, body)
    res:set_status(status)
    return res:write_json(body)
end

local function handler()
    local req, res = http.request(), http.response()
    local body, err = req:body_json()
    if err or type(body) ~= "table" then
        return reply(res, 400, { error = "the body must be a JSON object" })
    end
    if type(body.id) ~= "string" or body.id == "" then
        return reply(res, 400, { error = "id is required and must be a non-empty string" })
    end
    if body.payload ~= nil and type(body.payload) ~= "string" then
        return reply(res, 400, { error = "payload must be a string" })
    end
    local retries = body.max_retries or 3
    if math.type(retries) ~= "integer" or retries < 0 or retries > 100 then
        return reply(res, 400, { error = "max_retries must be an integer from 0 to 100" })
    end

    local id, perr = queue.publish("jobs", { payload = body.payload }, { id = body.id, max_retries = retries })
    if not id then
        local kind = perr:kind()
        if kind == "RATE_LIMITED" then
            res:set_header("Retry-After", "1")
            return reply(res, 429, { error = "the queue is full" })
        elseif kind == "UNAVAILABLE" then
            res:set_header("Retry-After", "5")
            return reply(res, 503, { error = "the service is shutting down" })
        end
        return reply(res, 500, { error = tostring(perr) })
    end
    return reply(res, 202, { status = "queued", id = id })
end

return { handler = handler }
