-- The service's API documentation, shipped with the app (no network needed):
--   GET /docs/ (or /docs/openapi.json)     the OpenAPI 3.0 document of its routes (JSON)
--   GET /swagger/ (or /swagger/index.html) a self-contained page that renders that document
-- Anything else under /docs/ or /swagger/ is 404.
local http = require("http")

local function json_body(schema) return { content = { ["application/json"] = { schema = schema } } } end
local function answer(text, schema)
    local r = { description = text }
    if schema then r.content = { ["application/json"] = { schema = schema } } end
    return r
end
local ERROR = { ["$ref"] = "#/components/schemas/Error" }
local JOB = { ["$ref"] = "#/components/schemas/Job" }
local ID = { name = "id", ["in"] = "path", required = true, schema = { type = "string" } }
local function job_route(summary, responses, method)
    return { [method or "get"] = { summary = summary, tags = { "jobs" }, parameters = { ID }, responses = responses } }
end

local SPEC = {
    openapi = "3.0.3",
    info = {
        title = "kaspGO job queue (taskhost example)", version = "1.0",
        description = "Jobs are accepted into a durable queue holding at most QUEUE_SIZE jobs waiting "
            .. "to start, run by WORKERS workers (100-500 ms each, ERROR_RATE % fail) and retried "
            .. "with exponential backoff and full jitter up to max_retries times.",
    },
    paths = {
        ["/enqueue"] = { post = {
            summary = "Queue a job", tags = { "service" },
            requestBody = { required = true, content = { ["application/json"] = { schema = {
                type = "object", required = { "id" },
                properties = {
                    id = { type = "string", minLength = 1 },
                    payload = { type = "string" },
                    max_retries = { type = "integer", minimum = 0, maximum = 100, default = 3 },
                } } } } },
            responses = {
                ["202"] = answer("Queued", { type = "object", properties = { status = { type = "string", enum = { "queued" } } } }),
                ["400"] = answer("Bad JSON or fields", ERROR),
                ["409"] = answer("A job with this id already exists; nothing was queued", ERROR),
                ["413"] = answer("Body larger than 64 KB", ERROR),
                ["429"] = answer("QUEUE_SIZE jobs are already waiting (Retry-After: 1)", ERROR),
                ["503"] = answer("Shutting down (Retry-After: 5)", ERROR),
            } } },
        ["/healthz"] = { get = { summary = "Health", tags = { "service" }, responses = {
            ["200"] = answer("Accepting jobs"), ["503"] = answer("Draining") } } },
        ["/jobs"] = {
            get = { summary = "List jobs, oldest first", tags = { "jobs" },
                parameters = {
                    { name = "state", ["in"] = "query", schema = { type = "string",
                      enum = { "queued", "scheduled", "running", "retrying", "done", "failed", "cancelled" } } },
                    { name = "limit", ["in"] = "query", schema = { type = "integer", minimum = 1, maximum = 1000, default = 100 } },
                    { name = "after", ["in"] = "query", schema = { type = "string" }, description = "the next cursor of the previous page" },
                },
                responses = { ["200"] = answer("A page of jobs", { type = "object", properties = {
                    jobs = { type = "array", items = JOB }, next = { type = "string", nullable = true } } }) } },
            post = { summary = "Submit a job through the generic job API (any JSON body)", tags = { "jobs" },
                requestBody = json_body({ description = "any JSON value: the job's data" }),
                responses = { ["202"] = answer("Accepted", JOB), ["200"] = answer("The id or Idempotency-Key names a job already there", JOB),
                              ["429"] = answer("Full", ERROR), ["503"] = answer("Shutting down", ERROR) } },
        },
        ["/jobs/{id}"] = {
            get = { summary = "A job's record", tags = { "jobs" }, parameters = { ID },
                    responses = { ["200"] = answer("The job", JOB), ["404"] = answer("No such job", ERROR) } },
            delete = { summary = "Cancel a job", tags = { "jobs" }, parameters = { ID },
                       responses = { ["200"] = answer("Cancelled"), ["202"] = answer("Running: cancel requested"),
                                     ["409"] = answer("Already finished", ERROR), ["404"] = answer("No such job", ERROR) } },
        },
        ["/jobs/{id}/status"] = job_route("A job's record", { ["200"] = answer("The job", JOB), ["404"] = answer("No such job", ERROR) }),
        ["/jobs/{id}/result"] = job_route("A job's result", {
            ["200"] = answer("Done: {id, state, result}"), ["202"] = answer("Not finished yet: {id, state}"),
            ["409"] = answer("Failed or cancelled: {id, state, error}"), ["404"] = answer("No such job", ERROR) }),
        ["/jobs/{id}/cancel"] = job_route("Cancel a job (as DELETE /jobs/{id})", {
            ["200"] = answer("Cancelled"), ["202"] = answer("Running: cancel requested"),
            ["409"] = answer("Already finished", ERROR), ["404"] = answer("No such job", ERROR) }, "post"),
        ["/metrics"] = { get = { summary = "Prometheus metrics of the queue", tags = { "service" },
            responses = { ["200"] = { description = "text/plain; version=0.0.4" } } } },
    },
    components = { schemas = {
        Error = { type = "object", properties = { error = { type = "string" } } },
        Job = { type = "object", properties = {
            id = { type = "string" }, queue = { type = "string" },
            state = { type = "string", enum = { "queued", "scheduled", "running", "retrying", "done", "failed", "cancelled" } },
            attempt = { type = "integer" }, max_retries = { type = "integer" }, priority = { type = "integer" },
            created_at = { type = "string", format = "date-time" },
            run_at = { type = "string", format = "date-time", nullable = true },
            started_at = { type = "string", format = "date-time", nullable = true },
            finished_at = { type = "string", format = "date-time", nullable = true },
            progress = { nullable = true }, result = { nullable = true },
            errors = { type = "array", items = { type = "object", properties = {
                attempt = { type = "integer" }, at = { type = "integer" }, error = { type = "string" } } } },
        } },
    } },
}

local PAGE = [==[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>API documentation</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .op{border:1px solid #ccc;border-radius:6px;margin:.8em 0}
.op summary{cursor:pointer;padding:.5em .8em;font-family:monospace;font-size:15px}
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}
.get .m{color:#1565c0}.post .m{color:#2e7d32}.delete .m{color:#c62828}
.body{padding:0 1em 1em} pre{background:#f5f5f5;padding:.6em;overflow:auto}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left;vertical-align:top}
</style></head>
<body><h1 id="title">API documentation</h1><p id="desc"></p>
<p>OpenAPI document: <a href="/docs/openapi.json">/docs/openapi.json</a></p><div id="ops">Loading…</div>
<script>
"use strict";
function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
function resolve(spec, s) {
  if (s && s["$ref"]) { var parts = s["$ref"].replace(/^#\//, "").split("/"), v = spec;
    parts.forEach(function (p) { v = v && v[p]; }); return v || s; }
  return s;
}
function schemaText(spec, s) { return JSON.stringify(resolve(spec, s), null, 2); }
function render(spec) {
  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  document.getElementById("desc").textContent = spec.info.description || "";
  var ops = document.getElementById("ops"); ops.textContent = "";
  Object.keys(spec.paths).sort().forEach(function (path) {
    var item = spec.paths[path];
    Object.keys(item).forEach(function (method) {
      var op = item[method], d = el("details", "op " + method), s = el("summary");
      s.appendChild(el("span", "m", method)); s.appendChild(document.createTextNode(path + "  — " + (op.summary || "")));
      d.appendChild(s); var b = el("div", "body");
      if (op.parameters && op.parameters.length) {
        b.appendChild(el("h4", null, "Parameters")); var t = el("table");
        op.parameters.forEach(function (p) { var r = el("tr");
          r.appendChild(el("td", null, p.name)); r.appendChild(el("td", null, p["in"] + (p.required ? ", required" : "")));
          r.appendChild(el("td", null, JSON.stringify(p.schema || {}) + (p.description ? " — " + p.description : ""))); t.appendChild(r); });
        b.appendChild(t);
      }
      if (op.requestBody) { b.appendChild(el("h4", null, "Request body"));
        var c = op.requestBody.content || {}; Object.keys(c).forEach(function (ct) {
          b.appendChild(el("div", null, ct)); b.appendChild(el("pre", null, schemaText(spec, c[ct].schema))); }); }
      b.appendChild(el("h4", null, "Responses")); var rt = el("table");
      Object.keys(op.responses || {}).sort().forEach(function (code) { var resp = op.responses[code], r = el("tr");
        r.appendChild(el("td", null, code)); var cell = el("td", null, resp.description || "");
        if (resp.content && resp.content["application/json"]) cell.appendChild(el("pre", null, schemaText(spec, resp.content["application/json"].schema)));
        r.appendChild(cell); rt.appendChild(r); });
      b.appendChild(rt); d.appendChild(b); ops.appendChild(d);
    });
  });
}
fetch("/docs/openapi.json").then(function (r) { return r.json(); }).then(render, function (e) {
  document.getElementById("ops").textContent = "cannot load /docs/openapi.json: " + e; });
</script></body></html>
]==]

local DOCS = { ["/docs/"] = "spec", ["/docs/openapi.json"] = "spec", ["/swagger/"] = "page", ["/swagger/index.html"] = "page" }

local function handler()
    local res = http.response()
    local what = DOCS[http.request():path()]
    if what == "spec" then return res:write_json(SPEC) end
    if what == "page" then
        res:set_content_type("text/html; charset=utf-8")
        return res:write(PAGE)
    end
    res:set_status(404)
    res:write_json({ error = "no such document (try /docs/ or /swagger/)" })
end

return { handler = handler }
