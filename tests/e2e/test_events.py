"""The events bus through the real binary (wippy-compat.md §3.16): two producer services and
a collector with a pattern subscription (all events, in order per sender, a kind filter), a
slow subscriber whose bounded buffer drops and counts instead of stalling the senders, the
host's own lifecycle events (process exit, service restart, job finished, reload applied,
reload refused), and the errors of send/subscribe."""
import json
import os
import re
import time

import th

OVERRIDE = ["-o", "app:gateway:addr=127.0.0.1:0"]

INDEX = """
version: "1.0"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: ":8080"
    lifecycle: {auto_start: true}
  - name: root
    kind: http.router
    meta: {server: app:gateway}
    prefix: /
  - name: host
    kind: process.host
    workers: 2
    lifecycle: {auto_start: true}
  - name: producer
    kind: process.lua
    source: file://producer.lua
    method: main
    modules: [events, logger]
  - name: producer_eu
    kind: process.service
    process: app:producer
    host: app:host
    input: ["orders.eu"]
    lifecycle: {auto_start: true}
  - name: producer_us
    kind: process.service
    process: app:producer
    host: app:host
    input: ["orders.us"]
    lifecycle: {auto_start: true}
  - name: collector_p
    kind: process.lua
    source: file://collector.lua
    method: main
    modules: [events, logger, json]
  - name: collector
    kind: process.service
    process: app:collector_p
    host: app:host
    lifecycle: {auto_start: true}
  - name: slow_p
    kind: process.lua
    source: file://slow.lua
    method: main
    modules: [events, logger]
  - name: slow
    kind: process.service
    process: app:slow_p
    host: app:host
    lifecycle: {auto_start: true}
  - name: watcher_p
    kind: process.lua
    source: file://watcher.lua
    method: main
    modules: [events, logger, json]
  - name: watcher
    kind: process.service
    process: app:watcher_p
    host: app:host
    lifecycle: {auto_start: true}
  - name: crasher_p
    kind: process.lua
    source: file://crasher.lua
    method: main
    modules: [events]
  - name: crasher
    kind: process.service
    process: app:crasher_p
    host: app:host
    lifecycle:
      auto_start: true
      restart: {initial_delay: 50ms, max_attempts: 1}
  - name: jobs
    kind: queue.queue
    driver: memory
    max_retries: 1
    backoff: {base: 10ms}
  - name: work
    kind: function.lua
    source: file://work.lua
    method: run
  - name: workers
    kind: queue.consumer
    queue: app:jobs
    func: app:work
    lifecycle: {auto_start: true}
  - name: api
    kind: function.lua
    source: file://api.lua
    method: handle
    modules: [events, http, queue]
  - name: api.ep
    kind: http.endpoint
    meta: {router: app:root}
    method: POST
    path: /api/{what}
    func: app:api
"""

PRODUCER = """
local events = require("events")
local logger = require("logger")
local function main(system)
  local go = events.subscribe("control", "go")
  logger:info("ready " .. system)
  go:channel():receive()
  for i = 1, 50 do
    assert(events.send(system, i % 10 == 0 and "cancelled" or "created", "/orders/" .. i, {i = i, system = system}))
  end
  logger:info("sent " .. system)
end
return {main = main}
"""

COLLECTOR = """
local events = require("events")
local logger = require("logger")
local json = require("json")
local function main()
  local all = events.subscribe("orders.*")
  local cancelled = events.subscribe("orders.*", "cancelled")
  logger:info("ready collector")
  local last, count, in_order, paths_ok = {}, 0, true, true
  local ch = all:channel()
  while count < 100 do
    local ev = ch:receive()
    count = count + 1
    if ev.data.i ~= (last[ev.system] or 0) + 1 then in_order = false end
    if ev.path ~= "/orders/" .. ev.data.i or ev.data.system ~= ev.system then paths_ok = false end
    last[ev.system] = ev.data.i
  end
  local kinds = {}
  for _ = 1, 10 do
    local ev = cancelled:channel():receive()
    kinds[#kinds + 1] = ev.kind .. ":" .. ev.system .. ev.path
  end
  table.sort(kinds)
  logger:info("collected", {count = count, in_order = in_order, paths_ok = paths_ok, kinds = json.encode(kinds),
                            eu = last["orders.eu"], us = last["orders.us"], dropped = all:dropped()})
  events.send("test", "collected", "/")
end
return {main = main}
"""

SLOW = """
local events = require("events")
local logger = require("logger")
local function main()
  local sub = events.subscribe("orders.*", nil, {buffer = 4})
  local done = events.subscribe("test", "collected")
  logger:info("ready slow")
  done:channel():receive()                  -- not reading sub meanwhile
  local got = {}
  while true do
    local r = channel.select({sub:channel():case_receive(), default = true})
    if r.default then break end
    got[#got + 1] = r.value.system .. r.value.path
  end
  logger:info("slow", {received = #got, dropped = sub:dropped(), first = got[1] or ""})
  assert(sub:close() == true and sub:close() == false)
  local v, ok = sub:channel():receive()
  logger:info("slow closed", {value = tostring(v), ok = ok})
end
return {main = main}
"""

WATCHER = """
local events = require("events")
local logger = require("logger")
local json = require("json")
local function main()
  local ch = events.subscribe("taskhost.*"):channel()
  logger:info("ready watcher")
  while true do
    local ev = ch:receive()
    logger:info("host event", {system = ev.system, kind = ev.kind, path = ev.path, data = json.encode(ev.data or {})})
  end
end
return {main = main}
"""

CRASHER = """
local events = require("events")
local function main()
  local go = events.subscribe("control", "crash")
  go:channel():receive()
  error("crash on purpose")
end
return {main = main}
"""

WORK = """
local function run(job) if job.fail then return nil, "failed on purpose" end return {ok = true} end
return {run = run}
"""

API = """
local events = require("events")
local http = require("http")
local queue = require("queue")
local function try(...)
  local ok, a, b = pcall(...)
  if not ok then return {raised = tostring(a)} end
  if a == nil then return {error = tostring(b), kind = b:kind()} end
  return {ok = a}
end
local function handle()
  local req, res = http.request(), http.response()
  local what = req:param("what")
  if what == "go" or what == "crash" then return res:write_json(try(events.send, "control", what, "/")) end
  if what == "job" then return res:write_json(try(queue.publish, "app:jobs", req:body_json() or {})) end
  local c = {}; c.c = c
  return res:write_json({
    host = try(events.send, "taskhost.process", "exit", "/"),
    long = try(events.send, string.rep("s", 129), "k", "/"),
    path = try(events.send, "s", "k", string.rep("p", 1025)),
    cycle = try(events.send, "s", "k", "/", c),
    func = try(events.send, "s", "k", "/", function() end),
    empty = try(events.send, "", "k", "/"),
    sub_fn = try(events.subscribe, "x"),
    no_subscriber = try(events.send, "nobody", "k", "/p", {1, 2}),
  })
end
return {handle = handle}
"""

FILES = {"src/_index.yaml": INDEX, "src/producer.lua": PRODUCER, "src/collector.lua": COLLECTOR,
         "src/slow.lua": SLOW, "src/watcher.lua": WATCHER, "src/crasher.lua": CRASHER,
         "src/work.lua": WORK, "src/api.lua": API}


def post(port, what, body=None):
    status, _, text = th.http(port, "POST", "/api/" + what, json.dumps(body) if body is not None else "")
    assert status == 200, (status, text)
    return json.loads(text)


def fields(line):
    return json.loads(line[line.index("{"):])


class Events(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.project = th.make_project(FILES)
        cls.server = th.Server(cls.project, OVERRIDE + ["--admin", "127.0.0.1:0"])
        cls.port = cls.server.ports()[0]
        cls.admin = int(cls.server.wait_for(r"admin: serving GET /metrics on 127\.0\.0\.1:(\d+)").group(1))
        for who in ("orders.eu", "orders.us", "collector", "slow", "watcher"):
            cls.server.wait_for(r"ready " + re.escape(who))

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def host_events(self, system, kind, path=None, timeout=10):
        pat = r'host event \{[^\n]*\}'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in re.findall(pat, self.server.log()):
                f = fields(line)
                if f["system"] == system and f["kind"] == kind and (path is None or f["path"] == path):
                    return f
            time.sleep(0.05)
        raise AssertionError(f"no {system} {kind} {path} event in:\n{self.server.log()}")

    def test_1_producers_collector_and_a_slow_subscriber(self):
        self.assertEqual(post(self.port, "go"), {"ok": True})
        line = self.server.wait_for(r"collected \{[^\n]*\}").group(0)
        f = fields(line)
        self.assertEqual((f["count"], f["in_order"], f["paths_ok"], f["eu"], f["us"], f["dropped"]),
                         (100, True, True, 50, 50, 0), line)
        want = sorted(f"cancelled:orders.{s}/orders/{i}" for s in ("eu", "us") for i in range(10, 51, 10))
        self.assertEqual(json.loads(f["kinds"]), want)
        f = fields(self.server.wait_for(r"INFO  slow \{[^\n]*\}").group(0))
        self.assertEqual((f["received"], f["dropped"]), (4, 96), f)
        self.assertRegex(f["first"], r"^orders\.(eu|us)/orders/1$")
        status, _, text = th.http(self.admin, "GET", "/metrics")
        self.assertEqual(status, 200)
        series = dict(l.rsplit(" ", 1) for l in text.splitlines() if l.startswith("taskhost_events_"))
        self.assertGreaterEqual(float(series["taskhost_events_dropped_total"]), 96, series)
        self.assertGreaterEqual(float(series["taskhost_events_delivered_total"]), 100 + 10 + 4, series)
        self.assertGreaterEqual(float(series["taskhost_events_subscriptions"]), 2, series)   # watcher, crasher
        f = fields(self.server.wait_for(r"slow closed \{[^\n]*\}").group(0))
        self.assertEqual((f["value"], f["ok"]), ("nil", False), f)
        # the producers returned normally: exit events, not failed
        ev = self.host_events("taskhost.process", "exit")
        self.assertIn('"failed":false', ev["data"])

    def test_2_service_restart_and_process_failure(self):
        self.assertEqual(post(self.port, "crash"), {"ok": True})
        ev = self.host_events("taskhost.service", "restart", "app:crasher")
        data = json.loads(ev["data"])
        self.assertEqual(data["attempt"], 1)
        self.assertIn("crash on purpose", data["error"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            fails = [fields(l) for l in re.findall(r'host event \{[^\n]*\}', self.server.log())]
            fails = [f for f in fails if f["kind"] == "exit" and '"entry":"app:crasher_p"' in f["data"]]
            if fails:
                break
            time.sleep(0.05)
        data = json.loads(fails[0]["data"])
        self.assertEqual((data["failed"], data["entry"]), (True, "app:crasher_p"))
        self.assertIn("crash on purpose", data["error"])
        self.assertEqual(fails[0]["path"], data["pid"])

    def test_3_jobs_finished(self):
        jid = post(self.port, "job", {})["ok"]
        ev = self.host_events("taskhost.queue", "job.done", "app:jobs")
        self.assertEqual(json.loads(ev["data"])["id"], jid)
        jid = post(self.port, "job", {"fail": True})["ok"]
        deadline = time.monotonic() + 20
        while True:
            evs = [fields(l) for l in re.findall(r'host event \{[^\n]*\}', self.server.log())]
            evs = [json.loads(f["data"]) for f in evs if f["kind"] == "job.failed"]
            if evs or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertTrue(evs, self.server.log())
        self.assertEqual((evs[0]["id"], evs[0]["state"], evs[0]["attempt"]), (jid, "failed", 2))
        self.assertIn("failed on purpose", evs[0]["error"])

    def test_4_errors(self):
        out = post(self.port, "errors")
        self.assertEqual(out["host"]["kind"], "PERMISSION_DENIED", out)
        for k in ("long", "path", "cycle", "empty"):
            self.assertEqual(out[k].get("kind"), "INVALID", (k, out))
        self.assertIn("1 to 128 bytes", out["long"]["error"])
        self.assertIn("cannot send a function", out["func"]["error"])
        self.assertEqual(out["sub_fn"]["kind"], "INVALID")
        self.assertIn("only a process", out["sub_fn"]["error"])
        self.assertEqual(out["no_subscriber"], {"ok": True})

    def test_5_reload_events(self):
        path = os.path.join(self.project, "src", "work.lua")
        with open(path, "a") as f:
            f.write("\n-- touched\n")
        ev = self.host_events("taskhost.registry", "reload", timeout=20)
        data = json.loads(ev["data"])
        self.assertEqual(ev["path"], str(data["version"]))
        self.assertIn("work.lua", data["why"])
        with open(path, "a") as f:
            f.write("\nthis is not lua\n")
        ev = self.host_events("taskhost.registry", "reload.refused", timeout=20)
        self.assertIn("work.lua", json.loads(ev["data"])["why"])
        with open(path, "w") as f:
            f.write(WORK)


if __name__ == "__main__":
    th.main()
