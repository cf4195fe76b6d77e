-- GET /item/{id}: a slow upstream. Waits FANOUT_DELAY, then answers {"id": ..., "name": ...}.
local http = require("http")
local time = require("time")
local env = require("env")

local function handler()
    local req, res = http.request(), http.response()
    time.sleep(env.get("FANOUT_DELAY") or "200ms")
    local id = req:param("id")
    return res:write_json({ id = id, name = "item " .. id })
end

return { handler = handler }
