"""http_client under load and cancellation, through the real binary: 2000 requests in flight
from one process on a 2-worker process.host while another process's ticker keeps its rate
(no worker blocks); process.terminate, a process's exit, a job cancel, a job timeout and an
HTTP handler's deadline each abort the transfers in flight — the server sees the connection
closed while the host still runs."""
import json
import queue
import subprocess
import threading
import time
import urllib.parse

import th
from httpd_lua import MODULES
from httpd_misbehave import Server

INFLIGHT_ENTRIES = """
- name: fetcher
  kind: process.lua
  source: file://fetcher.lua
  method: main
  modules: %(m)s
- name: ticker
  kind: process.lua
  source: file://ticker.lua
  method: main
  modules: %(m)s
""" % {"m": MODULES}

INFLIGHT_MAIN = """
local io = require("io")
local json = require("json")
local time = require("time")
return {main = function(arg)
  local inbox = process.inbox()
  local me = process.pid()
  local tk = process.spawn("app:ticker", "app:processes", me)
  local function wait(topic, limit)
    local deadline = time.after(limit)
    while true do
      local r = channel.select{inbox:case_receive(), deadline:case_receive()}
      if r.channel == deadline then error("no " .. topic .. " within " .. limit) end
      if r.value:topic() == topic then return r.value:payload():data() end
    end
  end
  wait("ticking", "30s")
  process.spawn("app:fetcher", "app:processes", me, arg)
  local fetched = wait("fetched", "150s")
  process.send(tk, "stop", true)
  local ticks = wait("ticks", "30s")
  io.print(json.encode({fetched = fetched, ticks = ticks}))
  return 0
end}
"""

INFLIGHT_FETCHER = """
local http_client = require("http_client")
local json = require("json")
local time = require("time")
return {main = function(parent, arg)
  local C = json.decode(arg)
  local done = channel.new(C.n)
  local t0 = time.now():unix_nano()
  for i = 1, C.n do
    coroutine.spawn(function()
      local res, err = http_client.get(C.url, {timeout = "120s"})
      done:send(res and res.status_code == 200 and "ok" or tostring(err and err:kind() or err))
    end)
  end
  local kinds = {}
  for i = 1, C.n do
    local k = done:receive()
    kinds[k] = (kinds[k] or 0) + 1
  end
  process.send(parent, "fetched", {kinds = kinds, ms = (time.now():unix_nano() - t0) / 1e6})
end}
"""

INFLIGHT_TICKER = """
local time = require("time")
return {main = function(parent)
  local inbox = process.inbox()
  local every_ms = 20
  local ticker = time.ticker(every_ms .. "ms")
  local ch = ticker:channel()
  process.send(parent, "ticking", true)
  local t0 = time.now():unix_nano()
  local last, n, max_gap = t0, 0, 0
  while true do
    local r = channel.select{ch:case_receive(), inbox:case_receive()}
    if r.channel == inbox then break end
    local now = time.now():unix_nano()
    n = n + 1
    max_gap = math.max(max_gap, (now - last) / 1e6)
    last = now
  end
  ticker:stop()
  local ms = (time.now():unix_nano() - t0) / 1e6
  process.send(parent, "ticks", {n = n, ms = ms, every_ms = every_ms, max_gap_ms = max_gap})
end}
"""


class InFlight(th.TestCase):
    def test_2000_requests_in_flight_from_one_process_while_a_ticker_keeps_its_rate(self):
        n = 2000
        srv = Server()
        try:
            project = th.script_project(INFLIGHT_MAIN, extra_entries=INFLIGHT_ENTRIES,
                                        extra_files={"src/fetcher.lua": INFLIGHT_FETCHER,
                                                     "src/ticker.lua": INFLIGHT_TICKER},
                                        modules=MODULES)
            cfg = {"n": n, "url": srv.url("/slow?delay=0.5&tag=inflight")}
            r = th.run(["run", project, "-x", "app:main", json.dumps(cfg)], timeout=170)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            self.assertEqual(out["fetched"]["kinds"], {"ok": n}, out)
            self.assertEqual(srv.events.count("done", "inflight"), n)
            # many at once on the wire (curl keeps the rest queued on its connections)
            self.assertGreaterEqual(srv.events.max_active, 100, out)
            t = out["ticks"]
            expected = t["ms"] / t["every_ms"]
            self.assertGreaterEqual(t["n"], 0.5 * expected, t)   # the ticker kept its rate
            self.assertLess(t["max_gap_ms"], 2000, t)             # hang detector: no long stall
        finally:
            srv.stop()

    def test_default_limits_let_320_requests_reach_one_host_at_once(self):
        # max_connections_per_host defaults to 1024 (README): with the old 256, curl queued
        # the rest and the server never saw more than 256 at once
        n = 320
        srv = Server()
        try:
            project = th.script_project(INFLIGHT_MAIN, extra_entries=INFLIGHT_ENTRIES,
                                        extra_files={"src/fetcher.lua": INFLIGHT_FETCHER,
                                                     "src/ticker.lua": INFLIGHT_TICKER},
                                        modules=MODULES)
            cfg = {"n": n, "url": srv.url("/slow?delay=3&tag=wide")}
            r = th.run(["run", project, "-x", "app:main", json.dumps(cfg)], timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            self.assertEqual(out["fetched"]["kinds"], {"ok": n}, out)
            self.assertGreater(srv.events.max_active, 256, out)
            self.assertGreater(srv.events.conns, 256, out)
        finally:
            srv.stop()


class Host:
    """`taskhost run DIR -x app:main ARG` with pipes: the test reads its stdout lines and
    writes lines to its stdin to step it. Killed by PID if it overstays."""

    def __init__(self, project, arg):
        self.p = subprocess.Popen([th.BIN, "run", project, "-x", "app:main", arg],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.err = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.te = threading.Thread(target=lambda: self.err.extend(self.p.stderr), daemon=True)
        self.te.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def expect(self, line, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                got = None
            if got == line:
                return
            if got is None:
                raise AssertionError(f"no line {line!r} from the host; stderr:\n{self.finish()}")

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def alive(self):
        return self.p.poll() is None

    def finish(self, timeout=30):
        if self.p.stdin and not self.p.stdin.closed:
            self.p.stdin.close()
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(timeout=5)
        self.te.join(timeout=5)
        return "".join(self.err)


CANCEL_ENTRIES = """
- name: child
  kind: process.lua
  source: file://child.lua
  method: main
  modules: %s
""" % MODULES

CANCEL_MAIN = """
local io = require("io")
return {main = function(url)
  local inbox = process.inbox()
  -- terminate: the child waits in http_client.get on a server that never answers
  local a = process.spawn("app:child", "app:processes", process.pid(), url .. "?tag=terminate", "wait")
  io.print("spawned") io.flush()
  io.readline()
  process.terminate(a)
  io.print("terminated") io.flush()
  io.readline()
  -- exit: the child's request runs in a coroutine; its main returns when told to
  local b = process.spawn("app:child", "app:processes", process.pid(), url .. "?tag=exit", "spawn")
  io.print("spawned") io.flush()
  io.readline()
  process.send(b, "go", true)
  io.print("told") io.flush()
  io.readline()
  return 0
end}
"""

CANCEL_CHILD = """
local http_client = require("http_client")
return {main = function(parent, url, mode)
  if mode == "wait" then
    local res, err = http_client.get(url, {timeout = "120s"})
    return
  end
  coroutine.spawn(function() http_client.get(url, {timeout = "120s"}) end)
  process.inbox():receive()
end}
"""

CANCEL_INDEX = """
version: "1.0"
namespace: app
entries:
  - name: processes
    kind: process.host
    lifecycle: {auto_start: true}
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:0"
    timeouts: {write: 1s}
    lifecycle: {auto_start: true}
  - {name: root, kind: http.router, meta: {server: gateway}, prefix: /}
  - {name: fetch, kind: function.lua, source: "file://fetch.lua", method: handler,
     modules: [http, http_client]}
  - {name: fetch.ep, kind: http.endpoint, meta: {router: root}, method: GET, path: /fetch, func: fetch}
  - {name: jobs, kind: queue.queue, driver: memory, max_retries: 0, timeout: 3s}
  - {name: work, kind: function.lua, source: "file://work.lua", method: run, modules: [http_client]}
  - {name: workers, kind: queue.consumer, queue: jobs, func: work, concurrency: 2,
     lifecycle: {auto_start: true}}
  - {name: jobs.api, kind: queue.http, meta: {router: root}, queue: jobs, path: /jobs}
"""

CANCEL_FETCH = """
local http = require("http")
local http_client = require("http_client")
return {handler = function()
  local res, err = http_client.get(http.request():query("url"), {timeout = "120s"})
  http.response():write(res and "answered" or tostring(err))
end}
"""

CANCEL_WORK = """
local http_client = require("http_client")
return {run = function(job)
  local res, err = http_client.get(job.url, {timeout = "120s"})
  return res and res.status_code or nil, err
end}
"""


def job_state(port, jid, states, timeout=15):
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        info = json.loads(th.http(port, "GET", f"/jobs/{jid}")[2])
        if info["state"] in states:
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {jid} never reached {states}: {info}")


class Cancellation(th.TestCase):
    def setUp(self):
        self.srv = Server()

    def tearDown(self):
        self.srv.stop()

    def test_terminate_and_exit_of_a_process_abort_its_requests(self):
        project = th.script_project(CANCEL_MAIN, extra_entries=CANCEL_ENTRIES,
                                    extra_files={"src/child.lua": CANCEL_CHILD}, modules=MODULES)
        h = Host(project, self.srv.url("/hang"))
        try:
            for tag, step in (("terminate", "terminated"), ("exit", "told")):
                h.expect("spawned")
                self.assertTrue(self.srv.wait_event("start", tag), tag)
                self.assertEqual(self.srv.events.count("closed", tag), 0)
                h.send("")
                h.expect(step)
                self.assertTrue(self.srv.wait_event("closed", tag, timeout=15), tag)
                self.assertTrue(h.alive(), tag)          # closed by the client, not by its exit
                h.send("")
        finally:
            err = h.finish()
        self.assertEqual(h.p.returncode, 0, err)

    def test_job_cancel_job_timeout_and_handler_deadline_abort_their_requests(self):
        project = th.make_project({"src/_index.yaml": CANCEL_INDEX, "src/fetch.lua": CANCEL_FETCH,
                                   "src/work.lua": CANCEL_WORK})
        host = th.Server(project)
        try:
            port = host.ports()[0]
            # job cancel (the queue's timeout is 3 s: cancel well before it could end the attempt)
            status, _, body = th.http(port, "POST", "/jobs?max_retries=0",
                                      json.dumps({"url": self.srv.url("/hang?tag=job-cancel")}))
            self.assertEqual(status, 202, body)
            jid = json.loads(body)["id"]
            self.assertTrue(self.srv.wait_event("start", "job-cancel"))
            status, _, body = th.http(port, "DELETE", f"/jobs/{jid}")
            self.assertIn(status, (200, 202), body)
            self.assertTrue(self.srv.wait_event("closed", "job-cancel", timeout=15))
            job_state(port, jid, ["cancelled"])
            # job timeout
            status, _, body = th.http(port, "POST", "/jobs?max_retries=0",
                                      json.dumps({"url": self.srv.url("/hang?tag=job-timeout")}))
            jid = json.loads(body)["id"]
            self.assertTrue(self.srv.wait_event("closed", "job-timeout", timeout=20))
            info = job_state(port, jid, ["failed"])
            self.assertIn("timed out", json.dumps(info["errors"]))
            # handler deadline (timeouts.write 1 s): 500, and the transfer is aborted
            q = urllib.parse.urlencode({"url": self.srv.url("/hang?tag=handler")})
            status, _, body = th.http(port, "GET", "/fetch?" + q, timeout=30)
            self.assertEqual(status, 500, body)
            self.assertTrue(self.srv.wait_event("closed", "handler", timeout=15))
            self.assertIsNone(host.p.poll())
        finally:
            code = host.stop()
        self.assertEqual(code, 0, host.log())


if __name__ == "__main__":
    th.main()
