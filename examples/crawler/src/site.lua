-- The site the crawler walks: /page/N (N = 1..CRAWL_PAGES) links to /page/2N, /page/2N+1,
-- /about, the home page and a page on another host; /about links home. Pages past
-- CRAWL_PAGES are 404. Every answer waits CRAWL_DELAY first, like a slow upstream.
local http = require("http")
local time = require("time")
local env = require("env")

local function html(title, links)
    local items = {}
    for i, href in ipairs(links) do
        items[i] = string.format('<li><a class="link" href="%s">%s</a></li>', href, href)
    end
    return string.format("<!doctype html><html><head><title>%s</title></head>"
        .. "<body><h1>%s</h1><ul>%s</ul></body></html>", title, title, table.concat(items))
end

local function handler()
    local req, res = http.request(), http.response()
    time.sleep(env.get("CRAWL_DELAY") or "50ms")
    res:set_content_type("text/html")
    if req:path() == "/about" then
        return res:write(html("About", { "/page/1" }))
    end
    local n = tonumber(req:param("id"))
    if not n or n < 1 or n > tonumber(env.get("CRAWL_PAGES")) then
        res:set_status(404)
        return res:write(html("Not found", {}))
    end
    return res:write(html("Page " .. n, {
        "/page/" .. 2 * n, "/page/" .. 2 * n + 1, "/about", "/page/1#top",
        "http://elsewhere.invalid/page/" .. n,
    }))
end

return { handler = handler }
