-- Fetches FANOUT_URLS items one by one, then all at once (one coroutine per URL, results
-- collected on a channel), then as one request_batch, and prints the time of each and the
-- speed-up. http_client calls park the calling coroutine, never the worker thread.
local io = require("io")
local time = require("time")
local env = require("env")
local http_client = require("http_client")

local function ms_since(t0)
    return time.now():sub(t0):milliseconds()
end

local function urls()
    local base = "http://127.0.0.1:" .. env.get("FANOUT_PORT") .. "/item/"
    local list = {}
    for i = 1, tonumber(env.get("FANOUT_URLS")) do list[i] = base .. i end
    return list
end

-- Each fetcher returns the number of 200 answers.
local function one_by_one(list)
    local ok = 0
    for _, url in ipairs(list) do
        local res = http_client.get(url, { timeout = "10s" })
        if res and res.status_code == 200 then ok = ok + 1 end
    end
    return ok
end

local function concurrently(list)
    local done = channel.new(#list)
    for _, url in ipairs(list) do
        coroutine.spawn(function()
            local res = http_client.get(url, { timeout = "10s" })
            done:send(res ~= nil and res.status_code == 200)
        end)
    end
    local ok = 0
    for _ = 1, #list do
        if done:receive() then ok = ok + 1 end
    end
    return ok
end

local function batch(list)
    local items = {}
    for i, url in ipairs(list) do items[i] = { "GET", url, { timeout = "10s" } } end
    local responses = http_client.request_batch(items)
    local ok = 0
    for i = 1, #list do
        if responses[i] and responses[i].status_code == 200 then ok = ok + 1 end
    end
    return ok
end

local function timed(name, fn, list)
    local t0 = time.now()
    local ok = fn(list)
    local ms = math.floor(ms_since(t0))
    io.print(string.format("%-12s %d/%d ok in %d ms", name, ok, #list, ms))
    return ms
end

local function main()
    local list = urls()
    io.print(string.format("fetching %d URLs, each answered after %s", #list, env.get("FANOUT_DELAY")))
    local seq = timed("one by one", one_by_one, list)
    local par = timed("coroutines", concurrently, list)
    local bat = timed("batch", batch, list)
    io.print(string.format("speed-up: %.1fx (coroutines), %.1fx (batch)",
        seq / math.max(par, 1), seq / math.max(bat, 1)))
    return 0
end

return { main = main }
