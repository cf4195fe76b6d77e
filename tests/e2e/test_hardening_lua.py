"""Lua runtime hardening: no script crashes or wedges the host.

- Deep C-level recursion (through pcall, coroutine.wrap, string.gsub callbacks, __tostring,
  __concat) ends in a "stack overflow" error on every kind of thread that runs Lua: HTTP
  handlers (civetweb workers), process-host workers, the terminal host, queue consumers and
  the registry loader of `taskhost check`.
- Busy loops inside plain coroutine.create/wrap coroutines (nested) are reached by the
  watchdog: handler deadlines, job timeout and cancel, process.terminate, preemption and
  shutdown.
- setmetatable refuses __gc (finalizers run with hooks off: a looping one could never be
  stopped).
- The Lua heap limit (limits.process_memory in taskhost.yaml) turns unbounded allocation
  into "not enough memory" for a handler, a job and a process.
"""
import json
import os
import resource
import subprocess
import threading
import time

import th

# Every taskhost here runs under `ulimit -s 256`: threads created without an explicit stack
# size (and the main thread) would get 256 KB, less than Lua's 200 C levels need, so the
# tests see whether the host sizes its Lua threads itself.
SMALL_STACK = 256 * 1024


def small_stack():
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    resource.setrlimit(resource.RLIMIT_STACK, (SMALL_STACK, hard))


def run(args, timeout=120):
    p = subprocess.Popen([th.BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=small_stack)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"taskhost {args} timed out\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(args, p.returncode, out, err)


class SmallStackServer(th.Server):
    """th.Server, started under the small stack limit."""

    def __init__(self, project):
        self.p = subprocess.Popen([th.BIN, "run", project], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, preexec_fn=small_stack)
        self.lines = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

DEEP = """
local deep = {}
function deep.pcall()
  local function f() local ok, e = pcall(f) if not ok then error(e, 0) end end
  f()
end
function deep.wrap()
  local function g() return coroutine.wrap(g)() end
  g()
end
function deep.gsub()
  local function h(s) return (string.gsub(s, "x", h)) end
  h("x")
end
function deep.tostring()
  local t = setmetatable({}, {__tostring = function(self) return tostring(self) end})
  return tostring(t)
end
function deep.concat()
  local mt = {}
  mt.__concat = function(a, b) return a .. b end
  local t = setmetatable({}, mt)
  return t .. "x"
end
-- an error value whose __tostring recurses: reporting it must not crash the host either
function deep.errobj()
  error(setmetatable({}, {__tostring = function(self) return tostring(self) end}))
end
"""

# A busy loop two plain coroutines deep; the outer one catches the inner one's errors and
# resumes it again, the inner one catches its own.
SPIN = """
local function spin()
  coroutine.wrap(function()
    local inner = coroutine.create(function()
      while true do pcall(function() while true do end end) end
    end)
    while true do pcall(coroutine.resume, inner) end
  end)()
end
local function hog()
  local t = {}
  while true do t[#t + 1] = string.rep("x", 1 << 20) .. #t end
end
"""

KINDS = ["pcall", "wrap", "gsub", "tostring", "concat", "errobj"]

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
  - {name: deep, kind: http.endpoint, meta: {router: root}, method: GET, path: "/deep/{kind}", func: api_fn}
  - {name: spin, kind: http.endpoint, meta: {router: root}, method: GET, path: /spin, func: api_fn}
  - {name: hog, kind: http.endpoint, meta: {router: root}, method: GET, path: /hog, func: api_fn}
  - {name: ping, kind: http.endpoint, meta: {router: root}, method: GET, path: /ping, func: api_fn}
  - name: jobs
    kind: queue.queue
    driver: memory
    max_retries: 0
    timeout: 1s
  - {name: work, kind: function.lua, source: "file://work.lua", method: run}
  - name: workers
    kind: queue.consumer
    queue: app:jobs
    func: app:work
    concurrency: 2
    lifecycle: {auto_start: true}
  - {name: jobs.api, kind: queue.http, meta: {router: app:root}, queue: app:jobs, path: /jobs}
  # a function whose chunk never returns: the call's deadline, timeout and shutdown stop it
  - {name: top_fn, kind: function.lua, source: "file://top.lua", method: handle}
  - {name: top, kind: http.endpoint, meta: {router: root}, method: GET, path: /top, func: top_fn}
  - {name: topjobs, kind: queue.queue, driver: memory, max_retries: 0, timeout: 1s}
  - {name: topworkers, kind: queue.consumer, queue: app:topjobs, func: app:top_fn, lifecycle: {auto_start: true}}
  - {name: topjobs.api, kind: queue.http, meta: {router: app:root}, queue: app:topjobs, path: /topjobs}
  - {name: proc, kind: process.lua, source: "file://proc.lua", method: main, modules: [time]}
"""

API = DEEP + SPIN + """
local http = require("http")
return { handle = function()
  local req, res = http.request(), http.response()
  local p = req:path()
  if p:match("^/deep/") then deep[req:param("kind")]() end
  if p == "/spin" then spin() end
  if p == "/hog" then hog() end
  return res:write("pong")
end }
"""

WORK = DEEP + SPIN + """
return { run = function(job)
  if job.deep then deep[job.deep]() end
  if job.spin then spin() end
  if job.hog then hog() end
  return "ok"
end }
"""

PROC = DEEP + SPIN + """
local time = require("time")
return { main = function(mode)
  if deep[mode] then deep[mode]() end
  if mode == "spin" then spin() end
  if mode == "hog" then hog() end
  -- hooks are off in finalizers, so a looping __gc could never be stopped: refused
  if mode == "gc" then setmetatable({}, {__gc = function() while true do end end}) end
  if mode == "tick" then for _ = 1, 20 do time.sleep("10ms") end end
  return mode
end }
"""

SETTINGS = "limits:\n  process_memory: 32MB\nshutdown:\n  timeout: 1s\n"


def project(extra_files=None, index=INDEX):
    files = {"src/_index.yaml": index, "src/api.lua": API, "src/work.lua": WORK,
             "src/proc.lua": PROC, "taskhost.yaml": SETTINGS,
             "src/top.lua": "coroutine.wrap(function() while true do end end)()\nreturn {}\n"}
    files.update(extra_files or {})
    return th.make_project(files)


def wait_job(port, jid, states, timeout=20, path="/jobs"):
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        status, _, body = th.http(port, "GET", f"{path}/{jid}")
        info = json.loads(body) if status == 200 else None
        if info and info["state"] in states:
            return info
        time.sleep(0.02)
    raise AssertionError(f"job {jid} never reached {states}: {info}")


class Server(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = SmallStackServer(project())
        cls.port = cls.server.ports()[0]

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def ping(self):
        self.assertEqual(th.http(self.port, "GET", "/ping")[::2], (200, "pong"))

    def submit(self, data):
        status, _, body = th.http(self.port, "POST", "/jobs", json.dumps(data))
        self.assertEqual(status, 202, body)
        return json.loads(body)["id"]

    def test_handler_recursion_is_a_500_stack_overflow(self):
        for kind in KINDS:
            status, _, body = th.http(self.port, "GET", f"/deep/{kind}", timeout=30)
            self.assertEqual(status, 500, (kind, body))
            self.assertIn("stack overflow", body, kind)
            self.ping()

    def test_job_recursion_fails_the_attempt(self):
        for kind in KINDS:
            info = wait_job(self.port, self.submit({"deep": kind}), ["failed"])
            self.assertIn("stack overflow", info["errors"][-1]["error"], kind)

    def test_handler_nested_coroutine_spin_meets_its_deadline(self):
        status, _, body = th.http(self.port, "GET", "/spin", timeout=30)
        self.assertEqual(status, 500, body)
        self.assertIn("did not finish in time", body)
        self.ping()

    def test_a_chunk_that_never_returns_is_stopped_by_the_deadline_and_timeout(self):
        status, _, body = th.http(self.port, "GET", "/top", timeout=30)
        self.assertEqual(status, 500, body)
        self.assertIn("did not finish in time", body)
        self.ping()
        status, _, body = th.http(self.port, "POST", "/topjobs", "{}")
        self.assertEqual(status, 202, body)
        info = wait_job(self.port, json.loads(body)["id"], ["failed"], path="/topjobs")
        self.assertIn("timed out", info["errors"][-1]["error"])

    def test_job_nested_coroutine_spin_times_out_and_cancels(self):
        info = wait_job(self.port, self.submit({"spin": True}), ["failed"])
        self.assertIn("timed out", info["errors"][-1]["error"])
        jid = self.submit({"spin": True})
        wait_job(self.port, jid, ["running"])
        status, _, body = th.http(self.port, "DELETE", f"/jobs/{jid}")
        self.assertEqual(status, 202, body)
        wait_job(self.port, jid, ["cancelled"], timeout=5)

    def test_unbounded_allocation_is_not_enough_memory(self):
        status, _, body = th.http(self.port, "GET", "/hog", timeout=30)
        self.assertEqual(status, 500, body)
        self.assertIn("not enough memory", body)
        self.ping()
        info = wait_job(self.port, self.submit({"hog": True}), ["failed"])
        self.assertIn("not enough memory", info["errors"][-1]["error"])
        self.ping()


MAIN = DEEP + """
local io = require("io")
return { main = function()
  -- on the terminal host's thread
  for _, kind in ipairs({"pcall", "wrap", "gsub", "tostring", "concat"}) do
    local ok, err = pcall(deep[kind])
    io.print("terminal", kind, ok, tostring(err):match("stack overflow"))
  end
  -- on process-host workers; the host keeps serving spawns
  local events = process.events()
  for _, mode in ipairs({"pcall", "wrap", "gsub", "tostring", "concat", "errobj", "hog", "gc", "tick"}) do
    local pid = process.spawn_monitored("app:proc", "app:processes", mode)
    local ev = events:receive()
    local err = ev.result and ev.result.error
    io.print("process", mode, ev.from == pid, tostring(err and (tostring(err):match("stack overflow")
      or tostring(err):match("not enough memory") or tostring(err):match("__gc metamethods are not supported"))),
      tostring(ev.result and ev.result.value))
  end
  return 0
end }
"""

SPINNERS = """
local io = require("io")
return { main = function()
  local events = process.events()
  local a = process.spawn_monitored("app:proc", "app:processes", "spin")
  local b = process.spawn_monitored("app:proc", "app:processes", "spin")
  local t = process.spawn_monitored("app:proc", "app:processes", "tick")
  local ev = events:receive()
  io.print("first exit", ev.from == t, tostring(ev.result.value))
  assert(process.terminate(a))
  assert(process.terminate(b))
  for _ = 1, 2 do
    ev = events:receive()
    io.print("terminated", ev.from == a or ev.from == b, tostring(ev.result.error))
  end
  return 0
end }
"""

TERMINAL = """
  - name: terminal
    kind: terminal.host
    lifecycle: {auto_start: true}
  - {name: main, kind: process.lua, source: "file://main.lua", method: main, modules: [io, process]}
"""


class Processes(th.TestCase):
    def run_main(self, lua):
        d = project({"src/main.lua": lua}, index=INDEX + TERMINAL)
        return run(["run", d, "-x", "app:main"])

    def test_recursion_and_heap_limit_fail_the_process_not_the_host(self):
        r = self.run_main(MAIN)
        self.assertEqual(r.returncode, 0, r.stderr)
        for kind in KINDS[:-1]:
            self.assertIn(f"terminal\t{kind}\tfalse\tstack overflow", r.stdout)
        for kind in KINDS:
            self.assertIn(f"process\t{kind}\ttrue\tstack overflow\tnil", r.stdout)
        self.assertIn("process\thog\ttrue\tnot enough memory\tnil", r.stdout)
        self.assertIn("process\tgc\ttrue\t__gc metamethods are not supported\tnil", r.stdout)
        self.assertIn("process\ttick\ttrue\tnil\ttick", r.stdout)

    def test_nested_coroutine_spinners_are_preempted_and_terminated(self):
        r = self.run_main(SPINNERS)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("first exit\ttrue\ttick", r.stdout)
        self.assertEqual(r.stdout.count("terminated\ttrue\tterminated"), 2, r.stdout)

    def test_default_heap_limit_is_256_mib(self):
        lua = """
local io = require("io")
local function fill(n)
  local t = {}
  return pcall(function() for i = 1, n do t[i] = string.rep("x", 1 << 20) .. i end end)
end
return { main = function()
  for _, mib in ipairs({200, 300}) do
    local ok, err = fill(mib)
    io.print("alloc", mib, ok, tostring(err):match("not enough memory"))
  end
  return 0
end }
"""
        r = th.run(["run", th.script_project(lua), "-x", "app:main"], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("alloc\t200\ttrue\tnil", r.stdout)
        self.assertIn("alloc\t300\tfalse\tnot enough memory", r.stdout)


class Shutdown(th.TestCase):
    def test_sigterm_ends_nested_coroutine_loops_everywhere(self):
        index = INDEX.replace("timeout: 1s", "timeout: 1h") + """
  - name: spinner
    kind: process.service
    process: proc
    host: processes
    input: ["spin"]
    lifecycle: {auto_start: true, stop_timeout: 200ms}
"""
        server = SmallStackServer(project(index=index))
        port = server.ports()[0]
        status, _, body = th.http(port, "POST", "/jobs", json.dumps({"spin": True}))
        self.assertEqual(status, 202, body)
        wait_job(port, json.loads(body)["id"], ["running"])
        results = []
        t = threading.Thread(target=lambda: results.append(
            th.http(port, "GET", "/spin", timeout=60)), daemon=True)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        code = server.stop(timeout=60)
        self.assertEqual(code, 0, server.log())
        self.assertLess(time.monotonic() - t0, 30, server.log())   # hang detector


CHECK_FILE = DEEP + """
deep.%s()
return { namespace = "x", entries = {} }
"""


class Check(th.TestCase):
    def test_registry_file_recursion_is_a_file_error(self):
        for kind in ["pcall", "gsub", "tostring", "concat"]:
            d = th.make_project({"src/_index.yaml": "version: \"1.0\"\nnamespace: app\nentries: []\n",
                                 "src/deep.registry.lua": CHECK_FILE % kind})
            r = run(["check", d])
            self.assertEqual(r.returncode, 3, (kind, r.stdout, r.stderr))
            self.assertIn("deep.registry.lua:", r.stdout + r.stderr, kind)
            self.assertIn("stack overflow", r.stdout + r.stderr, kind)


if __name__ == "__main__":
    th.main()
