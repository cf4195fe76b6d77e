"""Hot reload through the real binary: edits of a handler and of registry files are served
by the next requests while a client keeps sending (no failed request, no connection error);
a broken edit keeps the old code (file:line in the log) until it is fixed; endpoints appear
and disappear with their files; SIGHUP; --no-watch."""
import json
import os
import signal
import threading
import time

import th

OVERRIDE = ["-o", "app:gateway:addr=127.0.0.1:0"]

INDEX = th.HELLO_INDEX

HELLO = """
local http = require("http")
local function handler()
  local res = http.response()
  res:write_json({version = %s})
end
return {handler = handler}
"""

EXTRA = """
version: "1.0"
namespace: extra
entries:
  - name: bye
    kind: function.lua
    source: file://bye.lua
    method: handler
    modules: [http]
  - name: bye.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: GET
    path: /bye
    func: extra:bye
"""

BYE = """
local http = require("http")
return {handler = function() http.response():write_json({bye = true}) end}
"""


def write(project, rel, text):
    path = os.path.join(project, "src", rel)
    tmp = path + ".tmp-write"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "w") as f:              # like an editor: a temp file renamed over the real one
        f.write(text)
    os.replace(tmp, path)


def version(port):
    status, _, body = th.http(port, "GET", "/api/hello")
    return status, (json.loads(body).get("version") if status == 200 else body)


def wait_version(port, want, timeout=5):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = version(port)
        except OSError as e:                  # a listener that is not up yet
            got = repr(e)
        if got == (200, want):
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError(f"version never became {want}: last {got}")


class Client(threading.Thread):
    """Sends requests in a loop on fresh and kept-alive connections; records every answer."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.results, self.errors = port, threading.Event(), [], []

    def run(self):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        deadline = time.monotonic() + 60                   # bounded whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                c.request("GET", "/api/hello")
                r = c.getresponse()
                body = r.read()
                self.results.append((r.status, json.loads(body)["version"] if r.status == 200 else body))
            except Exception as e:                           # noqa: BLE001 - recorded and asserted
                self.errors.append(repr(e))
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


class Reload(th.TestCase):
    def setUp(self):
        self.project = th.make_project({"src/_index.yaml": INDEX, "src/hello.lua": HELLO % "1"})
        self.server = th.Server(self.project, OVERRIDE)
        self.port = self.server.ports()[0]

    def tearDown(self):
        code = self.server.stop()
        self.assertEqual(code, 0, self.server.log())

    def test_edits_are_served_at_once_without_failed_requests(self):
        clients = [Client(self.port) for _ in range(3)]
        for c in clients:
            c.start()
        try:
            for v in range(2, 7):
                t0 = time.monotonic()
                write(self.project, "hello.lua", HELLO % v)
                t1 = wait_version(self.port, v)
                self.assertLess(t1 - t0, 5)
                time.sleep(0.05)
        finally:
            for c in clients:
                c.stop.set()
            for c in clients:
                c.join(timeout=10)
        results = [r for c in clients for r in c.results]
        self.assertEqual([e for c in clients for e in c.errors], [])
        self.assertGreater(len(results), 50)
        self.assertEqual([r for r in results if r[0] != 200], [])
        versions = [r[1] for r in results]
        self.assertIn(6, versions)
        self.assertRegex(self.server.log(), r"reloaded \(hello\.lua changed")

    def test_a_broken_edit_keeps_the_old_code_until_fixed(self):
        wait_version(self.port, 1)
        write(self.project, "hello.lua", "local x = = 1\n" + HELLO % 2)
        self.server.wait_for(r"hello\.lua:1: [\s\S]*reload .* refused")
        self.assertEqual(version(self.port), (200, 1))
        write(self.project, "_index.yaml", INDEX + "  - name: broken\n    kind: http.endpoint\n"
              "    meta: {router: app:api}\n    method: GET\n    path: /x\n    func: app:missing\n")
        self.server.wait_for(r"_index\.yaml:\d+: .*app:missing[\s\S]*refused")
        self.assertEqual(version(self.port), (200, 1))
        write(self.project, "_index.yaml", INDEX)
        write(self.project, "hello.lua", HELLO % 3)
        wait_version(self.port, 3)

    def test_endpoints_come_and_go_with_their_files(self):
        self.assertEqual(th.http(self.port, "GET", "/api/bye")[0], 404)
        write(self.project, "extra/bye.lua", BYE)
        write(self.project, "extra/_index.yaml", EXTRA)       # a new directory too
        deadline = time.monotonic() + 5
        while th.http(self.port, "GET", "/api/bye")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        status, _, body = th.http(self.port, "GET", "/api/bye")
        self.assertEqual((status, json.loads(body)), (200, {"bye": True}))
        os.remove(os.path.join(self.project, "src", "extra", "_index.yaml"))
        deadline = time.monotonic() + 5
        while th.http(self.port, "GET", "/api/bye")[0] != 404 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(th.http(self.port, "GET", "/api/bye")[0], 404)
        self.assertEqual(version(self.port), (200, 1))

    def test_sighup_reloads(self):
        with open(os.path.join(self.project, "src", "hello.lua"), "w") as f:
            f.write(HELLO % 9)
        self.server.p.send_signal(signal.SIGHUP)
        wait_version(self.port, 9)


SERVICES = """
version: "1.0"
namespace: app
entries:
  - name: processes
    kind: process.host
    host: {workers: 2}
    lifecycle: {auto_start: true}
  - name: a
    kind: process.lua
    source: file://a.lua
    method: main
    modules: [time, logger]
  - name: b
    kind: process.lua
    source: file://b.lua
    method: main
    modules: [time, logger]
  - name: svc_a
    kind: process.service
    process: app:a
    host: app:processes
    lifecycle: {auto_start: true}
  - name: svc_b
    kind: process.service
    process: app:b
    host: app:processes
    lifecycle: {auto_start: true}
"""

SVC_LUA = """
local time = require("time")
local logger = require("logger")
local function main()
  logger:info("started %s", {version = %s, pid = process.pid()})
  local events = process.events()
  while true do
    local ev = events:receive()
    if ev and ev.kind == process.event.CANCEL then logger:info("stopping %s") return end
  end
end
return {main = main}
"""

SVC_C = """
  - name: c
    kind: process.lua
    source: file://a.lua
    method: main
    modules: [time, logger]
  - name: svc_c
    kind: process.service
    process: app:c
    host: app:processes
    lifecycle: {auto_start: true}
"""


class Services(th.TestCase):
    def test_changed_services_restart_and_unchanged_keep_running(self):
        project = th.make_project({"src/_index.yaml": SERVICES, "src/a.lua": SVC_LUA % ("a", 1, "a"),
                                   "src/b.lua": SVC_LUA % ("b", 1, "b")})
        s = th.Server(project)
        try:
            s.wait_for(r"started a \{[^\n]*\"version\":1")
            s.wait_for(r"started b \{[^\n]*\"version\":1")
            write(project, "a.lua", SVC_LUA % ("a", 2, "a"))
            s.wait_for(r"started a \{[^\n]*\"version\":2", timeout=15)
            self.assertIn("stopping a", s.log())                        # through CANCEL
            self.assertIn("service app:svc_a changed: restarting it", s.log())
            self.assertEqual(len(__import__("re").findall(r"started b ", s.log())), 1)   # untouched
            self.assertNotIn("stopping b", s.log())
            write(project, "_index.yaml", SERVICES + SVC_C)              # a new service starts
            s.wait_for(r"service app:svc_c is new: starting it")
            self.assertEqual(len(__import__("re").findall(r"started b ", s.log())), 1)
            write(project, "_index.yaml", SERVICES)                      # and goes again
            s.wait_for(r"service app:svc_c is gone from the registry: stopping it")
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_a_new_address_gets_a_new_listener_before_the_old_goes(self):
        port1, port2 = free_port(), free_port()
        index = INDEX.replace('addr: ":8080"', f'addr: "127.0.0.1:{port1}"')
        project = th.make_project({"src/_index.yaml": index, "src/hello.lua": HELLO % "1"})
        s = th.Server(project)
        try:
            s.ports()
            self.assertEqual(version(port1), (200, 1))
            write(project, "_index.yaml", index.replace(str(port1), str(port2)))
            wait_version(port2, 1, timeout=20)
            deadline = time.monotonic() + 30          # a bound, not a speed: on a loaded
            while time.monotonic() < deadline:        # machine the old server's stop took > 5 s
                try:
                    th.http(port1, "GET", "/api/hello", timeout=1)
                except OSError:
                    break
                time.sleep(0.05)
            with self.assertRaises(OSError):
                th.http(port1, "GET", "/api/hello", timeout=1)
        finally:
            self.assertEqual(s.stop(), 0, s.log())


JOBS = """
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
  - name: jobs
    kind: queue.queue
    driver: memory
  - name: work
    kind: function.lua
    source: file://work.lua
    method: run
  - name: workers
    kind: queue.consumer
    queue: app:jobs
    func: app:work
    concurrency: 2
    lifecycle: {auto_start: true}
  - name: jobs.api
    kind: queue.http
    meta: {router: app:root}
    queue: app:jobs
"""

WORK = "return {run = function(data) return {version = %s} end}\n"


class Consumers(th.TestCase):
    def run_job(self, port):
        status, _, body = th.http(port, "POST", "/jobs", "{}")
        self.assertEqual(status, 202, body)
        jid = json.loads(body)["id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, _, body = th.http(port, "GET", f"/jobs/{jid}/result")
            if status == 200:
                return json.loads(body)["result"]
            time.sleep(0.02)
        raise AssertionError(f"job {jid} did not finish: {body}")

    def test_the_next_jobs_run_the_new_code(self):
        project = th.make_project({"src/_index.yaml": JOBS, "src/work.lua": WORK % 1})
        s = th.Server(project, OVERRIDE)
        try:
            port = s.ports()[0]
            self.assertEqual(self.run_job(port), {"version": 1})
            write(project, "work.lua", WORK % 2)
            s.wait_for(r"app:workers runs its next jobs on the new code")
            self.assertEqual(self.run_job(port), {"version": 2})
        finally:
            self.assertEqual(s.stop(), 0, s.log())


NEW_QUEUE = """
version: "1.0"
namespace: more
entries:
  - name: q2
    kind: queue.queue
    driver: memory
  - name: work2
    kind: function.lua
    source: file://work2.lua
    method: run
  - name: workers2
    kind: queue.consumer
    queue: more:q2
    func: more:work2
    lifecycle: {auto_start: true}
  - name: api2
    kind: queue.http
    meta: {router: app:root}
    queue: more:q2
    path: /jobs2
  - name: hosts2
    kind: process.host
    lifecycle: {auto_start: true}
  - name: p2
    kind: process.lua
    source: file://p2.lua
    method: main
    modules: [logger]
  - name: svc2
    kind: process.service
    process: more:p2
    host: more:hosts2
    lifecycle: {auto_start: true}
"""

P2 = """
local logger = require("logger")
return {main = function()
  logger:info("p2 up")
  local ev = process.events()
  while true do
    local e = ev:receive()
    if e and e.kind == process.event.CANCEL then return end
  end
end}
"""


class AddedEntries(th.TestCase):
    def test_new_queue_consumer_api_host_and_service_start(self):
        project = th.make_project({"src/_index.yaml": JOBS, "src/work.lua": WORK % 1})
        s = th.Server(project, OVERRIDE)
        try:
            port = s.ports()[0]
            self.assertEqual(th.http(port, "POST", "/jobs2", "{}")[0], 404)
            write(project, "more/work2.lua", "return {run = function(d) return {two = true} end}\n")
            write(project, "more/p2.lua", P2)
            write(project, "more/_index.yaml", NEW_QUEUE)
            s.wait_for(r"p2 up", timeout=10)
            self.assertIn("process host more:hosts2 started", s.log())
            deadline = time.monotonic() + 5
            while th.http(port, "POST", "/jobs2", "{}")[0] == 404 and time.monotonic() < deadline:
                time.sleep(0.05)
            status, _, body = th.http(port, "POST", "/jobs2", "{}")
            self.assertEqual(status, 202, body)
            jid = json.loads(body)["id"]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status, _, body = th.http(port, "GET", f"/jobs2/{jid}/result")
                if status == 200:
                    break
                time.sleep(0.05)
            self.assertEqual((status, json.loads(body)["result"]), (200, {"two": True}))
        finally:
            self.assertEqual(s.stop(), 0, s.log())


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NoWatch(th.TestCase):
    def test_no_watch_reloads_only_on_sighup(self):
        project = th.make_project({"src/_index.yaml": INDEX, "src/hello.lua": HELLO % "1"})
        server = th.Server(project, OVERRIDE + ["--no-watch"])
        try:
            port = server.ports()[0]
            write(project, "hello.lua", HELLO % 2)
            time.sleep(0.5)
            self.assertEqual(version(port), (200, 1))
            server.p.send_signal(signal.SIGHUP)
            wait_version(port, 2)
            server.wait_for(r"reloaded \(SIGHUP\)")   # logged after the swap it reports
        finally:
            self.assertEqual(server.stop(), 0, server.log())


if __name__ == "__main__":
    th.main()
