"""The Postgres queue driver (queue.queue driver: postgres; host/jobs/pgq*.c) through the real
binary against a private PostgreSQL 15 (pgserver.py): one host's whole job life (publish,
batch, retry with its error kept, caller-given id, progress, get/list/cancel/forget, counts
from the database); two hosts sharing one queue, every job run exactly once (each run is
recorded as a row through the sql module, keyed by job and attempt); a host killed (SIGKILL) while
its jobs ran: another host rescues them after the lease (attempt 2, "worker lost"), never
while the first host's lease was live;
a schema newer than the host's refused at start; the database stopped under a running host (publish 503, health 503)
and started again (202 again, the jobs run); job records answer 503 while it is down."""
import json
import os
import re
import time
import unittest

import pgserver
import th

INDEX_HEAD = """
version: "1.0"
namespace: app
entries:
  - {name: terminal, kind: terminal.host}
  - name: processes
    kind: process.host
    host: {workers: 2}
    lifecycle: {auto_start: true}
  - name: jobs
    kind: queue.queue
    driver: postgres
    dsn: "${env:DATABASE_URL}"
    max_retries: 1
    backoff: {base: 10ms, jitter: none}
    poll_interval: 200ms
  - name: db
    kind: db.sql.postgres
    dsn: "${env:DATABASE_URL}"
  - {name: work, kind: function.lua, source: file://work.lua, method: run, modules: [queue, sql, env, time]}
"""
CONSUMER = """
  - name: consumer
    kind: queue.consumer
    queue: app:jobs
    func: app:work
    concurrency: 3
    lifecycle: {auto_start: true}
"""
MAIN_ENTRY = """
  - {name: main, kind: process.lua, source: file://main.lua, method: main, modules: [queue, time, io, json, sql]}
"""
# A host without CONSUMER shares the queue (publish, get, cancel, job API) but runs no job.
INDEX = INDEX_HEAD + CONSUMER + MAIN_ENTRY

HTTP_ENTRIES = """
  - name: gateway
    kind: http.service
    addr: ":8080"
    lifecycle: {auto_start: true}
  - name: root
    kind: http.router
    meta: {server: app:gateway}
    prefix: /
  - name: jobs.api
    kind: queue.http
    meta: {router: app:root}
    queue: app:jobs
    path: /jobs
    health_path: /healthz
"""

# Every run of a job is a row: (job id, attempt, host), its start (the column's default
# clock_timestamp(), the server's clock) and its end (NULL until the handler finished its work:
# a run that was stopped — killed, cancelled — keeps NULL). The primary key makes a second run
# of the same attempt fail loudly.
RUNS_DDL = ("DROP TABLE IF EXISTS taskhost_jobs, taskhost_meta, runs CASCADE;"
            "CREATE TABLE runs (jid text, attempt int, host text,"
            " started timestamptz NOT NULL DEFAULT clock_timestamp(), ended timestamptz,"
            " PRIMARY KEY (jid, attempt))")


def timed_runs(pg):
    """[(jid, attempt, host, started, ended)] with the times as epoch seconds (ended None)."""
    out = pg.psql("SELECT jid, attempt, host, extract(epoch FROM started), extract(epoch FROM ended) FROM runs")
    rows = []
    for line in out.strip().splitlines():
        if line.strip():
            jid, attempt, host, started, ended = line.split("|")
            rows.append((jid, int(attempt), host, float(started), float(ended) if ended else None))
    return rows


# Records every run (see RUNS_DDL), sleeps when asked, fails the first attempt of jobs that ask.
WORK = """
local queue = require("queue")
local sql = require("sql")
local env = require("env")
local time = require("time")
local function run(job)
  local j = queue.job()
  local db = assert(sql.get("app:db"))
  assert(db:execute("INSERT INTO runs (jid, attempt, host) VALUES ($1, $2, $3)",
                    {j.id, j.attempt, env.get("HOST_TAG") or "?"}))
  if job.sleep then time.sleep(job.sleep) end
  assert(db:execute("UPDATE runs SET ended = clock_timestamp() WHERE jid = $1 AND attempt = $2", {j.id, j.attempt}))
  if job.fail and j.attempt == 1 then error("boom") end
  queue.progress({step = 1})
  return {double = (job.i or 0) * 2}
end
return {run = run}
"""

LIFECYCLE = """
local queue = require("queue"); local time = require("time"); local io = require("io")
local json = require("json")
local function main()
  local items = {}
  for i = 1, 300 do items[i] = {i = i} end
  local ids = assert(queue.publish_batch("jobs", items))
  local failing = assert(queue.publish("jobs", {i = 7, fail = true}))
  local fixed = assert(queue.publish("jobs", {i = 8}, {id = "fixed-1"}))
  local again = assert(queue.publish("jobs", {i = 9}, {id = "fixed-1"}))
  -- a key names a job until it finishes: this one waits an hour
  local keyed = assert(queue.publish("jobs", {i = 11}, {idempotency_key = "k-1", delay = "1h"}))
  local keyed_again = assert(queue.publish("jobs", {i = 12}, {idempotency_key = "k-1"}))
  local later = assert(queue.publish("jobs", {i = 10}, {delay = "1h"}))
  local deadline = time.now():unix() + 30
  while queue.info("jobs").done < 302 and time.now():unix() < deadline do time.sleep("20ms") end
  local out = {info = queue.info("jobs"), failing = queue.get("jobs", failing),
               one = queue.get("jobs", ids[5]), fixed = fixed, again = again,
               keyed = keyed, keyed_again = keyed_again,
               later = queue.get("jobs", later)}
  local page, cursor = queue.list("jobs", {limit = 2})
  out.page_len, out.cursor = #page, cursor
  out.cancel_later = queue.cancel("jobs", later)
  out.later_after = queue.get("jobs", later).state
  out.cancel_done = queue.cancel("jobs", ids[1])
  out.forget = queue.forget("jobs", ids[1])
  local gone, err = queue.get("jobs", ids[1])
  out.gone = gone == nil and tostring(err) or "still there"
  io.print("OUT " .. json.encode(out))
end
return {main = main}
"""

SHARED = """
local queue = require("queue"); local time = require("time"); local io = require("io")
local function main(n)
  n = tonumber(n)
  local items = {}
  for i = 1, n do items[i] = {i = i, sleep = "2ms"} end
  assert(queue.publish_batch("jobs", items))
  local deadline = time.now():unix() + 60
  while queue.info("jobs").done < n and time.now():unix() < deadline do time.sleep("20ms") end
  io.print("DONE " .. queue.info("jobs").done)
end
return {main = main}
"""

# The table is locked by a transaction of this same process: a publish that held its thread
# until the INSERT committed would keep the task below from ever rolling the lock back.
PARKED = """
local queue = require("queue"); local time = require("time"); local io = require("io")
local sql = require("sql")
local function main()
  local tx = assert(assert(sql.get("app:db")):begin())
  assert(tx:execute("LOCK TABLE taskhost_jobs IN EXCLUSIVE MODE"))
  local published, got
  coroutine.spawn(function() published = {queue.publish("jobs", {i = 1})} end)
  coroutine.spawn(function() got = {queue.get("jobs", "no-such-job")} end)
  local ticks = 0
  for _ = 1, 30 do time.sleep("10ms"); ticks = ticks + 1 end
  local waiting = published == nil
  assert(tx:rollback())
  local deadline = time.now():unix() + 20
  while not (published and got) and time.now():unix() < deadline do time.sleep("5ms") end
  io.print(string.format("PARKED waiting=%s ticks=%d id=%s get=%s", tostring(waiting), ticks,
    tostring(published and published[1]), tostring(got and got[2])))
end
return {main = main}
"""

# The operator's hands: a failed job retried (runs again, attempts afresh), a scheduled one
# requeued (runs now), and the states neither takes.
REVIVE = """
local queue = require("queue"); local time = require("time"); local io = require("io")
local json = require("json")
local function wait(id, want, errors)
  local deadline, r = time.now():unix() + 20, nil
  repeat
    r = queue.get("jobs", id)
    if r and r.state == want and #r.errors >= (errors or 0) then return r end
    time.sleep("10ms")
  until time.now():unix() > deadline
  return r
end
local function res(v, err) return {v = v, kind = err and err:kind() or json.null} end
local function main()
  local out = {}
  local bad = assert(queue.publish("jobs", {fail = true}, {max_retries = 0}))
  out.first = wait(bad, "failed", 1)
  out.requeue_failed = res(queue.requeue("jobs", bad))
  out.retry = res(queue.retry("jobs", bad))
  out.second = wait(bad, "failed", 2)
  local later = assert(queue.publish("jobs", {i = 5}, {delay = "1h"}))
  out.retry_scheduled = res(queue.retry("jobs", later))
  out.requeue = res(queue.requeue("jobs", later))
  out.later = wait(later, "done")
  out.retry_done = res(queue.retry("jobs", later))
  out.unknown = res(queue.retry("jobs", "no-such-job"))
  io.print("OUT " .. json.encode(out))
end
return {main = main}
"""


@unittest.skipUnless(pgserver.available(), "PostgreSQL 15 server binaries not installed (scripts/setup)")
class QueuePostgres(pgserver.ServerPerClass, th.TestCase):
    def setUp(self):
        self.pg.psql(RUNS_DDL)
        self.env = {"DATABASE_URL": self.pg.dsn, "HOST_TAG": "A"}

    def project(self, main, extra=""):
        return th.make_project({"src/_index.yaml": INDEX + extra, "src/work.lua": WORK, "src/main.lua": main})

    def runs(self):
        out = self.pg.psql("SELECT jid, attempt, host FROM runs")
        return [tuple(l.split("|")) for l in out.strip().splitlines() if l.strip()]

    def test_lifecycle_on_one_host(self):
        r = th.run(["run", self.project(LIFECYCLE), "-x", "app:terminal/app:main"], env=self.env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.split("OUT ", 1)[1])
        info = out["info"]
        self.assertEqual(info["done"], 302, info)
        self.assertEqual(info["retries"], 1)
        self.assertEqual(info["scheduled"], 2)                 # later, keyed
        f = out["failing"]
        self.assertEqual((f["state"], f["attempt"]), ("done", 2))
        self.assertEqual(len(f["errors"]), 1)
        self.assertIn("boom", f["errors"][0]["error"])
        self.assertEqual(f["result"], {"double": 14})
        self.assertEqual(out["one"]["progress"], {"step": 1})
        self.assertEqual((out["fixed"], out["again"]), ("fixed-1", "fixed-1"))
        self.assertEqual(out["keyed_again"], out["keyed"])     # the key names the job there
        self.assertEqual(out["later"]["state"], "scheduled")
        self.assertEqual((out["page_len"], out["cancel_later"], out["later_after"]), (2, "scheduled", "cancelled"))
        self.assertEqual((out["cancel_done"], out["forget"]), ("done", True))
        self.assertIn("no job", out["gone"])
        runs = self.runs()
        self.assertEqual(len(runs), 303)            # 302 jobs, one of them twice (attempt 1, 2)
        self.assertEqual(len(set((j, a) for j, a, _ in runs)), 303)

    def test_retry_and_requeue(self):
        self.pg.psql("ALTER TABLE runs DROP CONSTRAINT runs_pkey")    # a retried job's attempt 1 runs twice
        r = th.run(["run", self.project(REVIVE), "-x", "app:terminal/app:main"], env=self.env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.split("OUT ", 1)[1])
        self.assertEqual((out["first"]["state"], out["first"]["attempt"]), ("failed", 1))
        self.assertEqual(out["requeue_failed"], {"kind": "CONFLICT"})
        self.assertEqual(out["retry"], {"v": "failed", "kind": None})
        second = out["second"]
        self.assertEqual((second["state"], second["attempt"], len(second["errors"])), ("failed", 1, 2))
        self.assertEqual(out["retry_scheduled"], {"kind": "CONFLICT"})
        self.assertEqual(out["requeue"], {"v": "scheduled", "kind": None})
        self.assertEqual((out["later"]["state"], out["later"]["result"]), ("done", {"double": 10}))
        self.assertEqual(out["retry_done"], {"kind": "CONFLICT"})
        self.assertEqual(out["unknown"], {"kind": "NOT_FOUND"})
        runs = [j for j, _, _ in self.runs()]
        self.assertEqual(runs.count(second["id"]), 2)

    def test_the_dashboard_shows_and_acts_on_a_postgres_queue(self):
        self.pg.psql("ALTER TABLE runs DROP CONSTRAINT runs_pkey")    # a retried job's attempt 1 runs twice
        s = th.Server(self.project(LIFECYCLE, HTTP_ENTRIES),
                      ["-o", "app:gateway:addr=127.0.0.1:0", "--admin", "127.0.0.1:0"], env=self.env)
        try:
            port = s.ports()[0]
            admin = int(s.wait_for(r"admin: serving GET /metrics on 127\.0\.0\.1:(\d+)").group(1))
            act = {"X-Taskhost-Action": "1"}
            st, _, body = th.http(port, "POST", "/jobs?max_retries=0", json.dumps({"fail": True}))
            self.assertEqual(st, 202, body)
            bad = json.loads(body)["id"]
            st, _, body = th.http(port, "POST", "/jobs?delay=1h", json.dumps({"i": 4}))
            later = json.loads(body)["id"]

            def state():
                st, _, body = th.http(admin, "GET", "/_taskhost/api/state")
                self.assertEqual(st, 200, body)
                return next(q for q in json.loads(body)["queues"] if q["id"] == "app:jobs")

            q = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                q = state()
                if q["states"]["failed"] == 1 and q["states"]["scheduled"] == 1:
                    break
                time.sleep(0.1)
            self.assertEqual((q["states"]["failed"], q["states"]["scheduled"]), (1, 1), q)   # the database's counts
            self.assertEqual([f["id"] for f in q["failures"]], [bad])
            st, _, body = th.http(admin, "GET", "/_taskhost/api/jobs?queue=app:jobs&state=failed")
            self.assertEqual((st, [j["id"] for j in json.loads(body)["jobs"]]), (200, [bad]), body)
            st, _, body = th.http(admin, "POST", f"/_taskhost/api/job/retry?queue=app:jobs&id={bad}", headers=act)
            self.assertEqual((st, json.loads(body)["was"]), (200, "failed"), body)
            st, _, body = th.http(admin, "POST", f"/_taskhost/api/job/requeue?queue=app:jobs&id={later}", headers=act)
            self.assertEqual((st, json.loads(body)["was"]), (200, "scheduled"), body)
            st, _, body = th.http(admin, "POST", f"/_taskhost/api/job/requeue?queue=app:jobs&id={later}", headers=act)
            self.assertEqual(st, 409, body)                     # queued now (or already run)
            done = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done = json.loads(th.http(port, "GET", f"/jobs/{later}")[2])
                if done["state"] == "done":
                    break
                time.sleep(0.05)
            self.assertEqual(done["result"], {"double": 8})
            runs = [j for j, _, _ in self.runs()]
            deadline = time.monotonic() + 20
            while runs.count(bad) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
                runs = [j for j, _, _ in self.runs()]
            self.assertEqual(runs.count(bad), 2)                # the retried job ran again
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_a_publish_parks_its_task_not_its_thread(self):
        r = th.run(["run", self.project(PARKED), "-x", "app:terminal/app:main"], env=self.env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"PARKED waiting=(\w+) ticks=(\d+) id=(\S+) get=(.*)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertEqual((m.group(1), m.group(2)), ("true", "30"))     # it waited for the lock
        self.assertRegex(m.group(3), r"^[0-9a-f]{24}$")                 # then it committed
        self.assertIn("no job", m.group(4))                             # get answered meanwhile
        self.assertEqual(self.pg.psql("SELECT count(*) FROM taskhost_jobs").strip(), "1")

    def test_another_host_is_woken_by_notify_not_by_its_poll(self):
        # The consumer host polls once a minute; the publishing host has no consumer. Jobs
        # done well inside that minute reached it through NOTIFY taskhost_jobs.
        slow = INDEX.replace("poll_interval: 200ms", "poll_interval: 60s")
        consumer_block = slow[slow.index("  - name: consumer"):slow.index("  - {name: main")]
        other = th.Server(th.make_project({"src/_index.yaml": slow, "src/work.lua": WORK, "src/main.lua": SHARED}),
                          env=dict(self.env, HOST_TAG="B"))
        try:
            other.wait_for(r"running .*entries")
            time.sleep(0.5)                                   # past its first (empty) claim
            publisher = th.make_project({"src/_index.yaml": slow.replace(consumer_block, ""),
                                         "src/work.lua": WORK, "src/main.lua": SHARED})
            r = th.run(["run", publisher, "-x", "app:terminal/app:main", "20"], env=self.env, timeout=40)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("DONE 20", r.stdout)
        finally:
            other.stop()
        self.assertEqual({h for _, _, h in self.runs()}, {"B"})

    def test_two_hosts_share_the_queue_and_run_each_job_once(self):
        n = 600
        other = th.Server(self.project(SHARED), env=dict(self.env, HOST_TAG="B"))
        try:
            other.wait_for(r"running .*entries")
            r = th.run(["run", self.project(SHARED), "-x", "app:terminal/app:main", str(n)],
                       env=self.env, timeout=90)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"DONE {n}", r.stdout)
        finally:
            other.stop()
        runs = self.runs()
        self.assertEqual(len(runs), n)
        self.assertEqual(len(set(j for j, _, _ in runs)), n)
        self.assertEqual(set(a for _, a, _ in runs), {"1"})
        hosts = {h for _, _, h in runs}
        self.assertEqual(hosts, {"A", "B"}, f"runs per host: {[h for _, _, h in runs].count('A')} on A")

    def test_a_killed_hosts_jobs_are_rescued_by_another(self):
        lease = INDEX.replace("poll_interval: 200ms", "poll_interval: 200ms\n    lease: 1s")
        mk = lambda main, extra="": th.make_project({"src/_index.yaml": lease + extra, "src/work.lua": WORK,
                                                      "src/main.lua": main})
        b = th.Server(mk(LIFECYCLE, HTTP_ENTRIES), ["-o", "app:gateway:addr=127.0.0.1:0"],
                      env=dict(self.env, HOST_TAG="B"))
        try:
            port = b.ports()[0]
            ids = [json.loads(th.http(port, "POST", "/jobs", json.dumps({"sleep": "20s"}))[2])["id"] for _ in range(2)]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(self.runs()) < 2:
                time.sleep(0.05)
            self.assertEqual(sorted(h for _, _, h in self.runs()), ["B", "B"])
            alive_at = float(self.pg.psql("SELECT extract(epoch FROM clock_timestamp())"))
            b.p.kill()                       # kill -9: no drain, the leases just stop
            b.p.wait()
        finally:
            b.stop()
        # Until its lease ran out, B's run of attempt 1 was live as far as any host could know.
        leases = dict(l.split("|") for l in self.pg.psql(
            "SELECT jid, extract(epoch FROM lease_until) FROM taskhost_jobs").split())
        self.assertEqual(sorted(leases), sorted(ids))
        # Host A: the rescued jobs run again there (attempt 2) and finish quickly this time.
        self.pg.psql("UPDATE taskhost_jobs SET data = '{}'")
        wait = """
local queue = require("queue"); local time = require("time"); local io = require("io")
local json = require("json")
local function main(a, b)
  local deadline = time.now():unix() + 40
  local out = {}
  for _, id in ipairs({a, b}) do
    local j = queue.get("jobs", id)
    while j.state ~= "done" and time.now():unix() < deadline do time.sleep("50ms"); j = queue.get("jobs", id) end
    out[#out + 1] = j
  end
  io.print("OUT " .. json.encode(out))
end
return {main = main}
"""
        r = th.run(["run", mk(wait), "-x", "app:terminal/app:main"] + ids, env=self.env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        jobs = json.loads(r.stdout.split("OUT ", 1)[1])
        for j in jobs:
            self.assertEqual((j["state"], j["attempt"]), ("done", 2), j)
            self.assertIn("worker lost", j["errors"][0]["error"])
        runs = sorted((jid, a, h) for jid, a, h in self.runs())
        self.assertEqual(runs, sorted([(i, "1", "B") for i in ids] + [(i, "2", "A") for i in ids]))
        # No two runs of one job overlap while B's lease was live: attempt 1 (killed, never
        # finished) held the job from its start to its lease's end; attempt 2 started only
        # after that end, and finished. (That the lease outlived the moment B was last seen
        # alive is not asserted: a writer starved past its 1 s lease on a loaded machine lets
        # it lapse early, and the checks below hold either way.)
        timed = {(jid, a): (start, end) for jid, a, _, start, end in timed_runs(self.pg)}
        for i in ids:
            start1, end1 = timed[(i, 1)]
            start2, end2 = timed[(i, 2)]
            lease_end = float(leases[i])
            self.assertIsNone(end1, "attempt 1 finished though its host was killed")
            self.assertLess(start1, alive_at)
            self.assertGreaterEqual(start2, lease_end, f"{i}: attempt 2 began {lease_end - start2:.3f}s "
                                                       "before attempt 1's lease ran out")
            self.assertIsNotNone(end2)

    def test_newer_schema_is_refused(self):
        r = th.run(["run", self.project(LIFECYCLE), "-x", "app:terminal/app:main"], env=self.env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.pg.psql("UPDATE taskhost_meta SET value = '999' WHERE key = 'schema_version'")
        r = th.run(["run", self.project(LIFECYCLE), "-x", "app:terminal/app:main"], env=self.env, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("schema version 999", r.stderr)

    def test_database_down_then_up(self):
        s = th.Server(self.project(LIFECYCLE, HTTP_ENTRIES), ["-o", "app:gateway:addr=127.0.0.1:0"], env=self.env)
        try:
            port = s.ports()[0]
            st, _, body = th.http(port, "POST", "/jobs", json.dumps({"i": 1}))
            self.assertEqual(st, 202, body)
            first = json.loads(body)["id"]
            self.pg.stop()
            codes = set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and 503 not in codes:
                codes.add(th.http(port, "POST", "/jobs", json.dumps({"i": 2}))[0])
                time.sleep(0.1)
            self.assertIn(503, codes)
            self.assertTrue(codes <= {202, 503}, codes)
            self.assertEqual(th.http(port, "GET", "/healthz")[0], 503)
            self.assertEqual(th.http(port, "GET", f"/jobs/{first}")[0], 503)
            self.pg.start()
            ok = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                st, _, body = th.http(port, "POST", "/jobs", json.dumps({"i": 3}))
                if st == 202:
                    ok = json.loads(body)["id"]
                    break
                self.assertEqual(st, 503, body)
                time.sleep(0.2)
            self.assertIsNotNone(ok, "publishing never worked again after the restart")
            state = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and state != "done":
                st, _, body = th.http(port, "GET", f"/jobs/{ok}")
                state = json.loads(body).get("state") if st == 200 else None
                time.sleep(0.1)
            self.assertEqual(state, "done")
            self.assertEqual(th.http(port, "GET", "/healthz")[0], 200)
        finally:
            s.stop()


if __name__ == "__main__":
    th.main()
