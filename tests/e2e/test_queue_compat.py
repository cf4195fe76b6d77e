"""Wippy's queue surface through the real binary (wippy-compat.md §3.15): a queue.queue whose
driver names a queue.driver.memory entry, queue.publish's third argument as message headers
(with taskhost's job options recognised by name and type), queue.message() inside a consumer
(:id, :header, :headers), headers kept by the SQLite driver across a restart, a version 1
database migrated in place, and the load errors of a driver that names the wrong entry."""
import json
import os
import sqlite3

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
  # as Wippy's docs write it
  - name: memory_driver
    kind: queue.driver.memory
    lifecycle:
      auto_start: true
  - name: tasks
    kind: queue.queue
    driver: app:memory_driver
  - name: durable
    kind: queue.queue
  - name: task_handler
    kind: function.lua
    source: file://work.lua
    method: handle
    modules: [queue]
  - name: task_consumer
    kind: queue.consumer
    queue: app:tasks
    func: app:task_handler
    concurrency: 2
    prefetch: 20
    lifecycle:
      auto_start: true
      depends_on:
        - app:tasks
  - name: tasks.api
    kind: queue.http
    meta: {router: app:root}
    queue: app:tasks
    path: /jobs
  - name: durable.api
    kind: queue.http
    meta: {router: app:root}
    queue: app:durable
    path: /durable
  - name: pub
    kind: function.lua
    source: file://pub.lua
    method: handle
    modules: [queue, http]
  - name: pub.ep
    kind: http.endpoint
    meta: {router: app:root}
    method: POST
    path: /pub/{case}
    func: app:pub
"""

WORK = """
local queue = require("queue")
local function handle(payload)
  local msg, err = queue.message()
  if not msg then error(tostring(err)) end
  local all = msg:headers()
  all.mutated = "yes"                         -- a copy: the message keeps its own
  return {id = msg:id(), priority = msg:header("priority"), missing = msg:header("nope"),
          headers = msg:headers(), payload = payload}
end
return {handle = handle}
"""

PUB = """
local queue = require("queue")
local http = require("http")
local function try(...)
  local ok, a, b = pcall(...)
  if not ok then return {raised = tostring(a)} end
  if a == nil then return {error = tostring(b), kind = b:kind()} end
  return {ok = a}
end
local big = {}
for i = 1, 65 do big["h" .. i] = "v" end
local CASES = {
  wippy = function(body) return try(queue.publish, "app:tasks", body, {priority = "high", correlation_id = body.rid}) end,
  mixed = function(body) return try(queue.publish, "tasks", body, {priority = 3, trace = "t1", attempt = 2, flag = true}) end,
  none = function(body) return try(queue.publish, "app:tasks", body) end,
  durable = function(body) return try(queue.publish, "app:durable", body, {delay = "1h", tenant = "acme"}) end,
  batch = function(body) return try(queue.publish_batch, "app:durable", {body, body}, {delay = "1h", origin = "batch"}) end,
  too_many = function(body) return try(queue.publish, "app:tasks", body, big) end,
  too_big = function(body) return try(queue.publish, "app:tasks", body, {blob = string.rep("x", 20000)}) end,
  bad_value = function(body) local c = {}; c.c = c; return try(queue.publish, "app:tasks", body, {cycle = c}) end,
  bad_key = function(body) return try(queue.publish, "app:tasks", body, {"positional"}) end,
  outside = function() return try(queue.message) end,
}
local function handle()
  local req, res = http.request(), http.response()
  local body = req:body_json() or {}
  return res:write_json(CASES[req:param("case")](body))
end
return {handle = handle}
"""


def project():
    return th.make_project({"src/_index.yaml": INDEX, "src/work.lua": WORK, "src/pub.lua": PUB})


def pub(port, case, body=None):
    status, _, text = th.http(port, "POST", "/pub/" + case, json.dumps(body or {}))
    assert status == 200, (status, text)
    return json.loads(text)


def wait_done(port, path, jid):
    import time
    deadline = time.monotonic() + 10
    info = None
    while time.monotonic() < deadline:
        status, _, body = th.http(port, "GET", f"{path}/{jid}")
        info = json.loads(body) if status == 200 else None
        if info and info["state"] in ("done", "failed"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not finish: {info}")


class QueueCompat(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.project = project()
        cls.server = th.Server(cls.project, OVERRIDE)
        cls.port = cls.server.ports()[0]

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def test_wippy_headers_reach_the_consumer_through_queue_message(self):
        out = pub(self.port, "wippy", {"rid": "r-42", "n": 1})
        jid = out["ok"]
        info = wait_done(self.port, "/jobs", jid)
        self.assertEqual(info["state"], "done", info)
        self.assertEqual(info["result"], {
            "id": jid, "priority": "high",
            "headers": {"priority": "high", "correlation_id": "r-42"},
            "payload": {"rid": "r-42", "n": 1}})
        self.assertEqual(info["priority"], 0)      # "high" is a header, not the job option
        self.assertEqual(info["headers"], {"priority": "high", "correlation_id": "r-42"})

    def test_options_and_headers_in_one_table(self):
        jid = pub(self.port, "mixed")["ok"]
        info = wait_done(self.port, "/jobs", jid)
        self.assertEqual(info["priority"], 3)
        self.assertEqual(info["result"]["headers"], {"trace": "t1", "attempt": 2, "flag": True})
        self.assertIsNone(info["result"].get("priority"))

    def test_no_headers_is_an_empty_table(self):
        jid = pub(self.port, "none")["ok"]
        info = wait_done(self.port, "/jobs", jid)
        self.assertEqual(info["result"]["headers"], [])   # an empty Lua table encodes as []
        self.assertNotIn("headers", info)

    def test_message_outside_a_consumer(self):
        out = pub(self.port, "outside")
        self.assertEqual(out["kind"], "INVALID", out)
        self.assertIn("not inside a queue consumer", out["error"])

    def test_header_budgets_and_misuse(self):
        self.assertEqual(pub(self.port, "too_many")["kind"], "INVALID")
        self.assertIn("more than 64 headers", pub(self.port, "too_many")["error"])
        out = pub(self.port, "too_big")
        self.assertEqual(out["kind"], "INVALID", out)
        self.assertIn("16384 bytes", out["error"])
        self.assertEqual(pub(self.port, "bad_value")["kind"], "INVALID")
        self.assertIn("keys must be strings", pub(self.port, "bad_key")["raised"])


class DurableHeaders(th.TestCase):
    def test_headers_survive_a_restart_on_sqlite(self):
        proj = project()
        s = th.Server(proj, OVERRIDE)
        try:
            port = s.ports()[0]
            jid = pub(port, "durable", {"k": 1})["ok"]
            ids = pub(port, "batch", {"k": 2})["ok"]
        finally:
            self.assertEqual(s.stop(), 0, s.log())
        s = th.Server(proj, OVERRIDE)
        try:
            port = s.ports()[0]
            for i, want in [(jid, {"tenant": "acme"}), (ids[0], {"origin": "batch"}),
                            (ids[1], {"origin": "batch"})]:
                status, _, body = th.http(port, "GET", f"/durable/{i}")
                self.assertEqual(status, 200, body)
                info = json.loads(body)
                self.assertEqual((info["state"], info["headers"]), ("scheduled", want))
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_a_version_1_database_is_migrated(self):
        proj = project()
        os.makedirs(os.path.join(proj, "data"))
        db = sqlite3.connect(os.path.join(proj, "data", "app.durable.db"))
        db.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);
            CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,
              state INTEGER, priority INTEGER, attempt INTEGER, max_retries INTEGER,
              recoveries INTEGER, run_at INTEGER, created_at INTEGER, started_at INTEGER,
              finished_at INTEGER, data TEXT, result TEXT, errors TEXT, progress TEXT, idem_key TEXT);
            INSERT INTO meta VALUES('schema_version', 1);
            INSERT INTO jobs VALUES(7, 'old-job', 'app:durable', 0, 0, 0, 3, 0, 4102444800000,
              1700000000000, 0, 0, '{"v":1}', NULL, NULL, NULL, NULL);
        """)
        db.commit()
        db.close()
        s = th.Server(proj, OVERRIDE)
        try:
            port = s.ports()[0]
            status, _, body = th.http(port, "GET", "/durable/old-job")
            self.assertEqual(status, 200, body)
            self.assertNotIn("headers", json.loads(body))
            jid = pub(port, "durable", {"k": 3})["ok"]
            status, _, body = th.http(port, "GET", f"/durable/{jid}")
            self.assertEqual(json.loads(body)["headers"], {"tenant": "acme"})
        finally:
            self.assertEqual(s.stop(), 0, s.log())
        db = sqlite3.connect(os.path.join(proj, "data", "app.durable.db"))
        try:
            self.assertEqual(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone(), (2,))
            self.assertEqual(db.execute("SELECT headers FROM jobs WHERE id=?", (jid,)).fetchone(),
                             ('{"tenant":"acme"}',))
        finally:
            db.close()

    def test_a_newer_schema_is_refused(self):
        proj = project()
        os.makedirs(os.path.join(proj, "data"))
        db = sqlite3.connect(os.path.join(proj, "data", "app.durable.db"))
        db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);"
                         "INSERT INTO meta VALUES('schema_version', 3);")
        db.commit()
        db.close()
        r = th.run(["run", proj] + OVERRIDE, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("schema version 3 is newer than this taskhost supports (2)", r.stderr)


class DriverErrors(th.TestCase):
    def check(self, driver):
        files = {"src/_index.yaml": INDEX.replace("driver: app:memory_driver", "driver: " + driver),
                 "src/work.lua": WORK, "src/pub.lua": PUB}
        return th.run(["check", th.make_project(files)], timeout=30)

    def test_a_bare_driver_name_is_qualified(self):
        r = self.check("memory_driver")
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)

    def test_a_driver_that_is_not_a_queue_driver(self):
        r = self.check("app:task_handler")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("src/_index.yaml:", r.stderr + r.stdout)
        self.assertIn("queue.driver.memory", r.stderr + r.stdout)

    def test_an_unknown_driver(self):
        r = self.check("amqp")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("'app:amqp' not found", r.stderr + r.stdout)


if __name__ == "__main__":
    th.main()
