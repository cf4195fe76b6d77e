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

INDEX = """
version: "1.0"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: ":8080"
    lifecycle: {auto_start: true}
  - name: api
    kind: http.router
    meta: {server: app:gateway}
    prefix: /api
  - name: hello
    kind: function.lua
    source: file://hello.lua
    method: handler
    modules: [http]
  - name: hello.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: GET
    path: /hello
    func: app:hello
"""

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
        got = version(port)
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
            self.assertRegex(server.log(), r"reloaded \(SIGHUP\)")
        finally:
            self.assertEqual(server.stop(), 0, server.log())


if __name__ == "__main__":
    th.main()
