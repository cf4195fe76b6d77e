"""String patterns cannot hang a thread: Lua's matcher backtracks in C where the watchdog's
hook never fires, so the sandbox's find/match/gmatch/gsub (host/value/lpattern.c) poll the stop
reasons themselves. A catastrophic pattern

    ("a"):rep(3000):find(("a*"):rep(8) .. "b")

(here fed a request body, as a ReDoS would be) is stopped by
- a handler's deadline (timeouts.write): 500, and the next request is served;
- a job's timeout and a cancel;
- process.terminate (also inside a plain coroutine and under pcall);
- shutdown (SIGTERM) with such matches running in a handler, a job and a process.
"""
import json
import threading
import time

import th

REDOS = """
local PAT = ("a*"):rep(8) .. "b"
local function redos(s)
  s = s or ("a"):rep(3000)
  -- a pcall does not keep it running, nor does a plain coroutine
  local ok = pcall(function()
    return coroutine.wrap(function() return s:find(PAT) end)()
  end)
  for _ in s:gmatch(PAT) do end
  return "caught"
end
"""

INDEX = """
version: "1.0"
namespace: app
entries:
  - name: processes
    kind: process.host
    host: {workers: 2}
    lifecycle: {auto_start: true}
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:0"
    timeouts: {write: 1s}
    lifecycle: {auto_start: true}
  - {name: root, kind: http.router, meta: {server: gateway}}
  - {name: api_fn, kind: function.lua, source: "file://api.lua", method: handle, modules: [http]}
  - {name: redos, kind: http.endpoint, meta: {router: root}, method: POST, path: /redos, func: api_fn}
  - {name: ping, kind: http.endpoint, meta: {router: root}, method: GET, path: /ping, func: api_fn}
  - {name: work, kind: function.lua, source: "file://work.lua", method: run}
  - {name: jobs, kind: queue.queue, driver: memory, max_retries: 0, timeout: 1s}
  - {name: workers, kind: queue.consumer, queue: app:jobs, func: app:work, lifecycle: {auto_start: true}}
  - {name: jobs.api, kind: queue.http, meta: {router: app:root}, queue: app:jobs, path: /jobs}
  - {name: slow, kind: queue.queue, driver: memory, max_retries: 0, timeout: 1h}
  - {name: slowworkers, kind: queue.consumer, queue: app:slow, func: app:work, lifecycle: {auto_start: true}}
  - {name: slow.api, kind: queue.http, meta: {router: app:root}, queue: app:slow, path: /slow}
  - {name: proc, kind: process.lua, source: "file://proc.lua", method: main, modules: [process]}
"""

API = REDOS + """
local http = require("http")
return { handle = function()
  local req, res = http.request(), http.response()
  if req:path() == "/redos" then return res:write(redos(req:body())) end
  return res:write("pong")
end }
"""

WORK = REDOS + """
return { run = function(job) return redos() end }
"""

PROC = REDOS + """
return { main = function(parent)
  if parent then process.send(parent, "started") end
  return redos()
end }
"""

MAIN = """
local io = require("io")
return { main = function()
  local events, inbox = process.events(), process.inbox()
  local pid = process.spawn_monitored("app:proc", "app:processes", process.pid())
  local other = process.spawn_monitored("app:proc", "app:processes", process.pid())
  inbox:receive()
  inbox:receive()                 -- both are about to start the match
  assert(process.terminate(pid))
  assert(process.terminate(other))
  for _ = 1, 2 do
    local ev = events:receive()
    io.print("exit", ev.from == pid or ev.from == other, tostring(ev.result and ev.result.error))
  end
  -- the terminal host's own thread: a match stays exact and quick when it is not hostile
  io.print("terminal", ("  trim  "):match("^%s*(.-)%s*$"), (("a"):rep(3000):find(("a*"):rep(8) .. "$")))
  return 0
end }
"""

TERMINAL = """
  - {name: terminal, kind: terminal.host, lifecycle: {auto_start: true}}
  - {name: main, kind: process.lua, source: "file://main.lua", method: main, modules: [io, process]}
"""


def project(index=INDEX):
    return th.make_project({"src/_index.yaml": index, "src/api.lua": API, "src/work.lua": WORK,
                            "src/proc.lua": PROC, "src/main.lua": MAIN,
                            "taskhost.yaml": "shutdown:\n  timeout: 1s\n"})


def wait_job(port, path, jid, states, timeout=20):
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        status, _, body = th.http(port, "GET", f"{path}/{jid}")
        info = json.loads(body) if status == 200 else None
        if info and info["state"] in states:
            return info
        time.sleep(0.02)
    raise AssertionError(f"job {jid} never reached {states}: {info}")


def submit(test, port, path):
    status, _, body = th.http(port, "POST", path, "{}")
    test.assertEqual(status, 202, body)
    return json.loads(body)["id"]


class Server(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = th.Server(project())
        cls.port = cls.server.ports()[0]

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def test_handler_redos_meets_its_deadline(self):
        for _ in range(2):
            status, _, body = th.http(self.port, "POST", "/redos", "a" * 3000, timeout=30)
            self.assertEqual(status, 500, body)
            self.assertIn("did not finish in time", body)
            self.assertEqual(th.http(self.port, "GET", "/ping")[::2], (200, "pong"))

    def test_job_redos_times_out(self):
        info = wait_job(self.port, "/jobs", submit(self, self.port, "/jobs"), ["failed"])
        self.assertIn("timed out", info["errors"][-1]["error"])

    def test_job_redos_is_cancelled(self):
        jid = submit(self, self.port, "/slow")
        wait_job(self.port, "/slow", jid, ["running"])
        time.sleep(0.2)                     # inside the match by now (not needed to pass)
        status, _, body = th.http(self.port, "DELETE", f"/slow/{jid}")
        self.assertEqual(status, 202, body)
        wait_job(self.port, "/slow", jid, ["cancelled"], timeout=10)


class Processes(th.TestCase):
    def test_terminate_stops_a_process_inside_a_match(self):
        r = th.run(["run", project(INDEX + TERMINAL), "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("exit\ttrue\tterminated"), 2, r.stdout)
        self.assertIn("terminal\ttrim\t1", r.stdout)


class Shutdown(th.TestCase):
    def test_sigterm_with_matches_running_everywhere_completes(self):
        index = INDEX + """
  - name: matcher
    kind: process.service
    process: proc
    host: processes
    lifecycle: {auto_start: true, stop_timeout: 200ms}
"""
        server = th.Server(project(index))
        port = server.ports()[0]
        jid = submit(self, port, "/slow")
        wait_job(port, "/slow", jid, ["running"])
        t = threading.Thread(target=lambda: th.http(port, "POST", "/redos", "a" * 3000, timeout=60),
                             daemon=True)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        code = server.stop(timeout=60)
        self.assertEqual(code, 0, server.log())
        self.assertLess(time.monotonic() - t0, 30, server.log())   # hang detector
        t.join(timeout=60)


if __name__ == "__main__":
    th.main()
