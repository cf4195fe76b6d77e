"""The Postgres queue driver with several `taskhost run` hosts on one project and one private
PostgreSQL 15 (pgserver.py); each host has its own HTTP port and HOST_TAG, and every run of a
job is a row of the `runs` table (test_queue_postgres.py's WORK: job, attempt, host, start, end
on the server's clock, PRIMARY KEY (job, attempt)). Three hosts run 3000 jobs, each exactly
once, each host some; the server is stopped and started again (same port and data) while a
client publishes to host a: only 202 or 503, health 503 while down, every 202'd job done, the
hosts go on without a restart; a job running on host a is cancelled through host c's job API
and stops there at once; max_concurrent 2 holds over three hosts at every instant."""
import json
import threading
import time
import unittest

import pgserver
import th
from test_queue_postgres import CONSUMER, HTTP_ENTRIES, INDEX_HEAD, MAIN_ENTRY, RUNS_DDL, WORK, timed_runs

OVERRIDE = ["-o", "app:gateway:addr=127.0.0.1:0"]
API = HTTP_ENTRIES.replace("health_path: /healthz", "health_path: /healthz\n    metrics_path: /metrics")

# Publishes arg 1 jobs (each asks for a 2 ms sleep) with publish_batch, 500 at a time.
PUBLISH = """
local queue = require("queue"); local io = require("io")
local function main(n)
  n = tonumber(n)
  local count = 0
  for first = 1, n, 500 do
    local items = {}
    for i = first, math.min(n, first + 499) do items[#items + 1] = {i = i, sleep = "2ms"} end
    count = count + #assert(queue.publish_batch("jobs", items))
  end
  io.print("PUBLISHED " .. count)
end
return {main = main}
"""

# A run that only sleeps: for the restart test, where a run's own SQL would fail while the
# server is down and turn into failed attempts that say nothing about the queue.
SLEEP_WORK = """
local time = require("time")
return {run = function(job) if job.sleep then time.sleep(job.sleep) end return true end}
"""


def wait_until(fn, timeout, every=0.05):
    """fn() until it is true (returns that value) or timeout seconds passed (returns the last)."""
    deadline = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(every)
        v = fn()
    return v


def job_state(port, jid):
    st, _, body = th.http(port, "GET", f"/jobs/{jid}")
    return json.loads(body)["state"] if st == 200 else None


def counts(port):
    """Jobs per state from a host's metrics path (the driver reads them from the database)."""
    st, _, body = th.http(port, "GET", "/metrics")
    assert st == 200, body
    out = {}
    for line in body.splitlines():
        if line.startswith("taskhost_jobs{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('state="', 1)[1].split('"', 1)[0]] = int(float(value))
    return out


def sweep_max(ranges):
    """The most ranges [start, end] open at one instant (an end and a start at the same
    instant do not overlap)."""
    events = sorted([(s, 1) for s, _ in ranges] + [(e, -1) for _, e in ranges])
    most = cur = 0
    for _, d in events:
        cur += d
        most = max(most, cur)
    return most


@unittest.skipUnless(pgserver.available(), "PostgreSQL 15 server binaries not installed (scripts/setup)")
class QueuePostgresHosts(pgserver.ServerPerClass, th.TestCase):
    def setUp(self):
        self.pg.psql(RUNS_DDL)

    def project(self, queue_opts="", consumer=True, work=WORK, main=PUBLISH):
        head = INDEX_HEAD.replace("poll_interval: 200ms", "poll_interval: 200ms" + queue_opts)
        index = head + (CONSUMER if consumer else "") + MAIN_ENTRY + API
        return th.make_project({"src/_index.yaml": index, "src/work.lua": work, "src/main.lua": main})

    def env(self, tag):
        return {"DATABASE_URL": self.pg.dsn, "HOST_TAG": tag}

    def hosts(self, projects, args=()):
        """Starts one host per (tag, project); returns {tag: port}. Each is stopped (SIGTERM by
        PID) at the test's end."""
        servers = {}
        for tag, proj in projects:
            s = th.Server(proj, OVERRIDE + list(args), env=self.env(tag))
            self.addCleanup(s.stop)
            servers[tag] = s
        return {tag: s.ports()[0] for tag, s in servers.items()}

    def post(self, port, data, timeout=10):
        st, _, body = th.http(port, "POST", "/jobs", json.dumps(data), timeout=timeout)
        return st, (json.loads(body).get("id") if st == 202 else body)

    def test_three_hosts_run_3000_jobs_each_once(self):
        n = 3000
        proj = self.project()
        ports = self.hosts([("a", proj), ("b", proj), ("c", proj)])
        r = th.run(["run", self.project(consumer=False), "-x", "app:terminal/app:main", str(n)],
                   env=self.env("publisher"), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"PUBLISHED {n}", r.stdout)
        c = wait_until(lambda: (lambda c: c if c.get("done") == n else None)(counts(ports["a"])), 120, every=0.2)
        c = c or counts(ports["a"])
        self.assertEqual(c.get("done"), n, c)
        self.assertEqual(sum(c.values()), n, c)
        runs = timed_runs(self.pg)
        self.assertEqual(len(runs), n)
        self.assertEqual(len({jid for jid, *_ in runs}), n)
        self.assertEqual({a for _, a, *_ in runs}, {1})
        self.assertTrue(all(end is not None for *_, end in runs))
        per_host = {h: sum(1 for _, _, x, *_ in runs if x == h) for h in "abc"}
        self.assertTrue(all(per_host.values()), per_host)
        self.assertEqual(sum(per_host.values()), n, per_host)


if __name__ == "__main__":
    th.main()
