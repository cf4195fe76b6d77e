"""Job storage faults and caller identity through the real binary: the data directory removed
under a publishing client, a read-only and a full file system (a tmpfs the test mounts), and
ids, idempotency keys and numeric options that are too long, malformed or out of range (job
API and queue.publish). A fault must never crash the host nor give a 202 for a job that is
not on disk; the host answers 503 meanwhile, recovers once the disk is back, and after a
restart every job that got a 202 is there."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import th

OVERRIDE = ["-o", "app:gateway:addr=127.0.0.1:0"]

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
    addr: ":8080"
    lifecycle: {auto_start: true}
  - name: root
    kind: http.router
    meta: {server: app:gateway}
    prefix: /
  - name: jobs
    kind: queue.queue
    capacity: 100000
    retention: 1h
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
    path: /jobs
    health_path: /healthz
  - name: pub
    kind: function.lua
    source: file://pub.lua
    method: handle
    modules: [http, json, queue]
  - {name: pub.one, kind: http.endpoint, meta: {router: app:root}, method: POST, path: /lua/publish, func: app:pub}
  - {name: pub.cases, kind: http.endpoint, meta: {router: app:root}, method: GET, path: /lua/cases, func: app:pub}
"""

WORK = """
local function run(job) return {n = job.n} end
return {run = run}
"""

# /lua/publish: one queue.publish; /lua/cases: every option case, each {ok | kind, error}.
PUB = """
local http = require("http")
local json = require("json")
local queue = require("queue")

local function try(f, ...)
  local v, err = f(...)
  if v then return {ok = type(v) == "table" and #v or v} end
  return {kind = err:kind(), error = tostring(err)}
end

local CASES = {
  id_255 = {id = string.rep("i", 255)},
  id_256 = {id = string.rep("i", 256)},
  id_empty = {id = ""},
  key_255 = {idempotency_key = string.rep("k", 255)},
  key_256 = {idempotency_key = string.rep("k", 256)},
  priority_max = {priority = 2147483647},
  priority_over = {priority = 2147483648},
  priority_under = {priority = -2147483649},
  priority_float = {priority = 1.5},
  retries_negative = {max_retries = -1},
  retries_over = {max_retries = 1 << 40},
  delay_negative = {delay = -1},
  delay_huge = {delay = 1e300},
  delay_nan = {delay = 0/0},
  delay_bad_string = {delay = "5 parsecs"},
  delay_negative_string = {delay = "-5s"},
  delay_ok = {delay = "1h"},
}

local function handle()
  local req, res = http.request(), http.response()
  if req:path() == "/lua/publish" then
    return res:write_json(try(queue.publish, "jobs", {n = 0}))
  end
  local out = {}
  for name, opts in pairs(CASES) do out[name] = try(queue.publish, "jobs", {case = name}, opts) end
  out.batch_id = try(queue.publish_batch, "jobs", {{}, {}}, {id = "b"})
  out.batch_retries = try(queue.publish_batch, "jobs", {{}, {}}, {max_retries = 1 << 33})
  out.batch_ok = try(queue.publish_batch, "jobs", {{}, {}}, {priority = -3})
  return res:write_json(out)
end
return {handle = handle}
"""


def new_project():
    return th.make_project({"src/_index.yaml": INDEX, "src/work.lua": WORK, "src/pub.lua": PUB})


class Publisher:
    """Publishes jobs with ids p0, p1, … in a loop on its own thread, one connection each,
    recording every answer; bounded (stops by itself after `limit` requests)."""

    def __init__(self, port, payload="", limit=200000):
        self.port, self.payload, self.limit = port, payload, limit
        self.answers = []                     # (id, status)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        for i in range(self.limit):
            if self.stopping.is_set():
                break
            jid = f"p{i}"
            try:
                status, _, _ = th.http(self.port, "POST", f"/jobs?id={jid}",
                                       json.dumps({"n": i, "pad": self.payload}))
            except OSError:
                status = None
            with self.lock:
                self.answers.append((jid, status))

    def count(self, status):
        with self.lock:
            return sum(1 for _, s in self.answers if s == status)

    def wait_count(self, status, n, timeout=60):
        deadline = time.monotonic() + timeout
        while self.count(status) < n:
            if time.monotonic() > deadline or not self.t.is_alive():
                raise AssertionError(f"fewer than {n} answers {status}: {self.summary()}")
            time.sleep(0.02)

    def summary(self):
        with self.lock:
            out = {}
            for _, s in self.answers:
                out[s] = out.get(s, 0) + 1
            return out

    def stop(self):
        self.stopping.set()
        self.t.join(timeout=60)
        with self.lock:
            return list(self.answers)


def wait_health(port, want, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = th.http(port, "GET", "/healthz")
        if status == want:
            return json.loads(body)
        time.sleep(0.05)
    raise AssertionError(f"/healthz never answered {want} (last {status} {body})")


def all_ids(port):
    ids, after = set(), "0"
    for _ in range(10000):                    # bounded: pages of 1000
        status, _, body = th.http(port, "GET", f"/jobs?limit=1000&after={after}")
        page = json.loads(body)
        ids.update(j["id"] for j in page["jobs"])
        if page["next"] is None:
            return ids
        after = page["next"]
    raise AssertionError("the job list did not end")


class FaultCase(th.TestCase):
    def run_outage(self, project, break_disk, repair_disk, payload="", ok_before=20,
                   pattern=r"ERROR jobstore .*app\.jobs\.db: ", stalled=None):
        """Publishes in a loop; breaks the disk; checks 503s, the ERROR, /healthz and
        queue.publish's UNAVAILABLE (and waits for `stalled` in the log: a recovery attempt
        that failed); repairs it; checks recovery; restarts and checks every job that got a
        202."""
        s = th.Server(project, OVERRIDE)
        pub = None
        try:
            port = s.ports()[0]
            pub = Publisher(port, payload)
            pub.wait_count(202, ok_before)
            break_disk()
            s.wait_for(pattern, timeout=60)
            self.assertEqual(wait_health(port, 503)["status"], "unavailable")
            n503 = pub.count(503)
            pub.wait_count(503, n503 + 5)
            status, headers, _ = th.http(port, "POST", "/jobs", "{}")
            self.assertEqual((status, headers.get("retry-after")), (503, "1"))
            status, _, body = th.http(port, "POST", "/lua/publish", "")
            self.assertEqual(json.loads(body).get("kind"), "UNAVAILABLE", body)
            if stalled:
                s.wait_for(stalled, timeout=30)
                self.assertEqual(wait_health(port, 503)["status"], "unavailable")
            repair_disk()
            s.wait_for(r"INFO  jobstore .*app\.jobs\.db: writable again", timeout=30)
            self.assertEqual(wait_health(port, 200)["status"], "ok")
            n202 = pub.count(202)
            pub.wait_count(202, n202 + 5)
            answers = pub.stop()
            status, _, body = th.http(port, "POST", "/lua/publish", "")
            self.assertIn("ok", json.loads(body), body)
        finally:
            if pub:
                pub.stop()
            code = s.stop()
        self.assertEqual(code, 0, s.log())
        statuses = {st for _, st in answers}
        self.assertLessEqual(statuses, {202, 503}, pub.summary())   # no 500, no dropped answer
        accepted = [jid for jid, st in answers if st == 202]
        refused = [jid for jid, st in answers if st == 503]
        s2 = th.Server(project, OVERRIDE)
        try:
            port = s2.ports()[0]
            ids = all_ids(port)
            missing = [j for j in accepted if j not in ids]
            self.assertEqual(missing, [], f"{len(missing)} of {len(accepted)} accepted jobs lost")
            stored = [j for j in refused if j in ids]
            self.assertEqual(stored, [], "jobs refused with 503 were stored anyway")
        finally:
            self.assertEqual(s2.stop(), 0, s2.log())
        return s.log()


class RemovedDataDir(FaultCase):
    def test_rm_rf_data_refuses_logs_and_recovers_without_losing_accepted_jobs(self):
        project = new_project()
        data = os.path.join(project, "data")

        def remove():
            shutil.rmtree(data)
            with open(data, "w") as f:       # a file in its way: the outage lasts until removed
                f.write("not a directory\n")

        def repair():
            os.remove(data)                  # the host creates data/ again by itself

        log = self.run_outage(project, remove, repair, pattern=r"ERROR jobstore .*gone",
                              stalled=r"WARN  jobstore .*still not writable: .*Not a directory")
        self.assertRegex(log, r"writable again \(\d+ rows written\)")
        self.assertTrue(os.path.exists(os.path.join(data, "app.jobs.db.lock")))


class Tmpfs(FaultCase):
    """The project's data/ on a small tmpfs. Skipped where mounting is not permitted."""

    def setUp(self):
        self.project = new_project()
        self.data = os.path.join(self.project, "data")
        os.makedirs(self.data)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", self.data],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self.addCleanup(self.unmount)

    def unmount(self):
        for _ in range(3):                   # the read-only one on top, then the test's own
            if subprocess.run(["umount", self.data], capture_output=True).returncode != 0:
                break

    def test_read_only_file_system(self):
        # `mount -o remount,ro` is refused (EBUSY) while the host holds its file open for
        # writing, so a read-only tmpfs goes over data/: from then on the path names a
        # read-only file system (the host cannot even create a lock file there) until it is
        # unmounted and the path names the host's own files again.
        def make_read_only():
            subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", self.data],
                           check=True)

        def make_writable():
            subprocess.run(["umount", self.data], check=True)

        self.run_outage(self.project, make_read_only, make_writable,
                        stalled=r"WARN  jobstore .*still not writable: .*Read-only file system")

    def test_full_file_system(self):
        filler = os.path.join(self.data, "filler")

        def fill():
            with open(filler, "wb", buffering=0) as f:
                for size in (1 << 16, 4096, 1):
                    try:
                        for _ in range(1 << 20):     # bounded: 8 MB is full long before
                            f.write(b"\0" * size)
                    except OSError:
                        pass

        log = self.run_outage(self.project, fill, lambda: os.remove(filler), payload="x" * 2000)
        self.assertRegex(log, r"full")


def submit(port, query="", headers=None):
    status, _, body = th.http(port, "POST", "/jobs" + query, "{}", headers)
    return status, json.loads(body)


class CallerIdentity(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = th.Server(new_project(), OVERRIDE)
        cls.port = cls.server.ports()[0]

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0, cls.server.log()

    def test_id_up_to_the_limit_is_honoured_longer_is_400(self):
        jid = "a" * 255
        status, info = submit(self.port, f"?id={jid}")
        self.assertEqual((status, info["id"]), (202, jid))
        self.assertEqual(submit(self.port, f"?id={jid}")[0], 200)         # a retry finds it
        for bad in ("b" * 256, "c" * 5000, ""):
            status, info = submit(self.port, f"?id={bad}")
            self.assertEqual(status, 400, (len(bad), info))
            self.assertIn("255 bytes", info["error"])
        self.assertEqual(th.http(self.port, "GET", "/jobs/" + "b" * 255)[0], 404)

    def test_idempotency_key_up_to_the_limit_is_honoured_longer_is_400(self):
        key = "k" * 255
        s1, a = submit(self.port, "?delay=1h", {"Idempotency-Key": key})
        s2, b = submit(self.port, "?delay=1h", {"Idempotency-Key": key})
        self.assertEqual((s1, s2, a["id"]), (202, 200, b["id"]))
        for bad in ("x" * 256, "y" * 1000):
            for _ in range(2):                                            # every retry: 400
                status, info = submit(self.port, "", {"Idempotency-Key": bad})
                self.assertEqual(status, 400, info)
                self.assertIn("idempotency key must be 1 to 255 bytes", info["error"])

    def test_numeric_options_out_of_range_or_malformed_are_400(self):
        bad = ["priority=2147483648", "priority=-2147483649", "priority=99999999999999999999999",
               "priority=1x", "priority=", "priority=1.5", "max_retries=-1",
               "max_retries=4294967296", "max_retries=abc", "delay=-5s", "delay=1e30s",
               "delay=5", "delay=" + "1" * 100 + "s", "priority=" + "1" * 100]
        for q in bad:
            status, info = submit(self.port, "?" + q)
            self.assertEqual(status, 400, (q, info))
            self.assertIn(q.split("=")[0], info["error"])
        status, info = submit(self.port, "?priority=-2147483648&max_retries=2147483647&delay=1h")
        self.assertEqual(status, 202, info)
        self.assertEqual((info["priority"], info["max_retries"]), (-2147483648, 2147483647))
        for q in ("limit=x", "after=-1", "after=1y"):
            self.assertEqual(th.http(self.port, "GET", "/jobs?" + q)[0], 400, q)

    def test_queue_publish_options(self):
        status, _, body = th.http(self.port, "GET", "/lua/cases")
        self.assertEqual(status, 200, body)
        out = json.loads(body)
        self.assertEqual(out["id_255"], {"ok": "i" * 255})
        self.assertIn("ok", out["key_255"])
        self.assertIn("ok", out["priority_max"])
        self.assertIn("ok", out["delay_ok"])
        self.assertEqual(out["batch_ok"], {"ok": 2})
        invalid = ["id_256", "id_empty", "key_256", "priority_over", "priority_under",
                   "priority_float", "retries_negative", "retries_over", "delay_negative",
                   "delay_huge", "delay_nan", "delay_bad_string", "delay_negative_string",
                   "batch_id", "batch_retries"]
        for name in invalid:
            self.assertEqual(out[name].get("kind"), "INVALID", (name, out[name]))
        self.assertIn("255 bytes", out["id_256"]["error"])
        self.assertIn("2147483647", out["priority_over"]["error"])


if __name__ == "__main__":
    th.main()
