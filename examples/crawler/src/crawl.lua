-- A breadth-first crawler: the coordinator keeps the queue and the set of seen URLs and hands
-- URLs to CRAWL_FETCHERS fetcher coroutines over a channel; each fetcher GETs its URL with
-- http_client (parking only its own coroutine) and sends back the status, the title and the
-- links found with Lua patterns. Links on the same host are followed up to CRAWL_DEPTH.
local io = require("io")
local time = require("time")
local env = require("env")
local http_client = require("http_client")

local origin = "http://127.0.0.1:" .. env.get("CRAWL_PORT")

-- Absolute URL of href on this site (fragment dropped), or nil for another host.
local function resolve(href)
    href = href:gsub("#.*$", "")
    if href:sub(1, 1) == "/" then return origin .. href end
    if href:sub(1, #origin + 1) == origin .. "/" then return href end
    return nil
end

local function extract(body)
    local links = {}
    for href in body:gmatch('<a%s[^>]-href="([^"]*)"') do links[#links + 1] = href end
    return links, body:match("<title>(.-)</title>")
end

local function fetcher(jobs, results)
    while true do
        local job = jobs:receive()
        if not job then return end
        local res, err = http_client.get(job.url, { timeout = "10s" })
        local r = { url = job.url, depth = job.depth, links = {} }
        if res then
            r.status = res.status_code
            r.links, r.title = extract(res.body)
        else
            r.err = tostring(err)
        end
        results:send(r)
    end
end

local function crawl(start, max_depth, n_fetchers)
    local jobs, results = channel.new(), channel.new()
    for _ = 1, n_fetchers do coroutine.spawn(function() fetcher(jobs, results) end) end
    local queue, seen, pending = { { url = start, depth = 0 } }, { [start] = true }, 0
    local pages, external = {}, 0
    while #queue > 0 or pending > 0 do
        local cases = { results:case_receive() }
        if #queue > 0 then cases[2] = jobs:case_send(queue[1]) end
        local r = channel.select(cases)
        if r.channel == results then
            local page = r.value
            pending = pending - 1
            pages[#pages + 1] = page
            for _, href in ipairs(page.links) do
                local url = resolve(href)
                if not url then
                    external = external + 1
                elseif not seen[url] and page.depth < max_depth then
                    seen[url] = true
                    queue[#queue + 1] = { url = url, depth = page.depth + 1 }
                end
            end
        else
            table.remove(queue, 1)
            pending = pending + 1
        end
    end
    jobs:close()
    return pages, external
end

local function main()
    local max_depth = tonumber(env.get("CRAWL_DEPTH"))
    local n_fetchers = tonumber(env.get("CRAWL_FETCHERS"))
    local t0 = time.now()
    local pages, external = crawl(origin .. "/page/1", max_depth, n_fetchers)
    local ms = time.now():sub(t0):milliseconds()
    table.sort(pages, function(a, b)
        if a.depth ~= b.depth then return a.depth < b.depth end
        if #a.url ~= #b.url then return #a.url < #b.url end  -- /page/9 before /page/10
        return a.url < b.url
    end)
    local errors = 0
    for _, p in ipairs(pages) do
        local ok = p.status == 200
        if not ok then errors = errors + 1 end
        local what = ok and string.format("%s (%d links)", p.title, #p.links) or p.err or p.title
        io.print(string.format("depth %d  %-4s %-12s %s", p.depth, p.status or "ERR",
            p.url:sub(#origin + 1), what))
    end
    io.print(string.format("crawled %d URLs (%d ok, %d failed) to depth %d with %d fetchers in %d ms; "
        .. "%d links to other hosts not followed", #pages, #pages - errors, errors, max_depth,
        n_fetchers, math.floor(ms), external))
    return 0
end

return { main = main }
