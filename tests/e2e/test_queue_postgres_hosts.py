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

# Publishes arg 1 jobs (each asks for a sleep of arg 2, default 2 ms) with publish_batch,
# 500 at a time.
PUBLISH = """
local queue = require("queue"); local io = require("io")
local function main(n, sleep)
  n = tonumber(n)
  local count = 0
  for first = 1, n, 500 do
    local items = {}
    for i = first, math.min(n, first + 499) do items[#items + 1] = {i = i, sleep = sleep or "2ms"} end
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

    def hosts(self, specs):
        """Starts one host per (tag, project[, extra args]); returns {tag: port}. Each is
        stopped (SIGTERM by PID) at the test's end."""
        servers = {}
        for tag, proj, *args in specs:
            s = th.Server(proj, OVERRIDE + (args[0] if args else []), env=self.env(tag))
            self.addCleanup(s.stop)
            servers[tag] = s
        return {tag: s.ports()[0] for tag, s in servers.items()}

    def post(self, port, data, timeout=10):
        st, _, body = th.http(port, "POST", "/jobs", json.dumps(data), timeout=timeout)
        return st, (json.loads(body).get("id") if st == 202 else body)

    def post_until_accepted(self, port, data, timeout=30):
        """POSTs data until it is accepted (returns the id, or None after timeout seconds);
        every other answer must be 503."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, got = self.post(port, data, timeout=5)
            if st == 202:
                return got
            self.assertEqual(st, 503, got)
            time.sleep(0.2)
        return None

    def publish(self, n, sleep):
        """n jobs asking for a sleep of `sleep`, published by a -x program on a host that
        runs no job."""
        r = th.run(["run", self.project(consumer=False), "-x", "app:terminal/app:main", str(n), sleep],
                   env=self.env("publisher"), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"PUBLISHED {n}", r.stdout)

    def test_three_hosts_run_3000_jobs_each_once(self):
        n = 3000
        proj = self.project()
        ports = self.hosts([("a", proj), ("b", proj), ("c", proj)])
        self.publish(n, "2ms")
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

    def test_postgres_restarted_under_load(self):
        proj = self.project(work=SLEEP_WORK)
        ports = self.hosts([("a", proj), ("b", proj), ("c", proj)])
        a = ports["a"]
        self.addCleanup(lambda: self.pg.p is None and self.pg.start())    # for the next test
        answers, broken = [], []          # (status, id or body); requests that raised (hung, reset)
        restarted = threading.Event()

        def client():                     # the last 100 publishes go after the restart
            for i in range(400):
                if i == 300:
                    restarted.wait(60)
                try:
                    answers.append(self.post(a, {"i": i, "sleep": "5ms"}, timeout=5))
                except Exception as e:
                    broken.append(repr(e))
                time.sleep(0.01)
        t = threading.Thread(target=client, daemon=True)
        t.start()
        self.assertTrue(wait_until(lambda: len(answers) >= 50, 30), "the client got no answers")
        self.pg.stop()
        down = wait_until(lambda: th.http(a, "GET", "/healthz", timeout=5)[0] == 503, 20)
        saw_503 = wait_until(lambda: sum(1 for st, _ in answers if st == 503) >= 3, 20)
        self.pg.start()
        restarted.set()
        t.join(timeout=120)
        self.assertFalse(t.is_alive(), "the client still waits for answers")
        self.assertEqual(broken, [])
        self.assertTrue(down, "health never answered 503 while the server was down")
        self.assertTrue(saw_503, "no publish answered 503 while the server was down")
        codes = [st for st, _ in answers]
        self.assertEqual(len(codes), 400)
        self.assertTrue(set(codes) <= {202, 503}, [x for x in answers if x[0] not in (202, 503)][:5])
        self.assertIn(202, codes[codes.index(503):], "host a did not accept publishes again under load")
        accepted = [jid for st, jid in answers if st == 202]
        self.assertGreaterEqual(len(accepted), 50)
        # Every host publishes (and runs) again without a restart of its own.
        for tag, port in ports.items():
            got = self.post_until_accepted(port, {"after": tag})
            self.assertIsNotNone(got, f"host {tag} never accepted a publish again")
            accepted.append(got)
            self.assertTrue(wait_until(lambda: th.http(port, "GET", "/healthz", timeout=5)[0] == 200, 30),
                            f"host {tag}: health never answered 200 again")

        def unfinished():
            rows = self.pg.psql("SELECT jid, state FROM taskhost_jobs")
            done = {l.split("|")[0] for l in rows.split() if l.split("|")[1] == "4"}
            return [j for j in accepted if j not in done]
        wait_until(lambda: not unfinished(), 60, every=0.2)
        self.assertEqual(unfinished(), [], "202'd jobs not done 60 s after the restart")

    def test_cancel_through_another_host_stops_the_run(self):
        # Only host a runs jobs, one at a time; b and c share the queue's API. The lease (180s,
        # renewed every 60s) is longer than the bounds below: the cancel must come by NOTIFY.
        runner = self.project("\n    lease: 180s")
        api_only = self.project("\n    lease: 180s", consumer=False)
        ports = self.hosts([("a", runner, ["-o", "app:consumer:concurrency=1"]), ("b", api_only), ("c", api_only)])
        c = ports["c"]
        st, jid = self.post(ports["a"], {"sleep": "120s"})
        self.assertEqual(st, 202, jid)
        self.assertTrue(wait_until(lambda: job_state(c, jid) == "running" and timed_runs(self.pg), 30))
        self.assertEqual([(r[0], r[1], r[2]) for r in timed_runs(self.pg)], [(jid, 1, "a")])
        st, _, body = th.http(c, "DELETE", f"/jobs/{jid}")
        self.assertEqual(st, 202, body)                             # cancel requested: it runs
        self.assertTrue(wait_until(lambda: job_state(c, jid) == "cancelled", 30),
                        f"still {job_state(c, jid)} 30s after the cancel")
        self.assertEqual(job_state(ports["a"], jid), "cancelled")
        # Host a's one consumer thread is free again (the sleeping run was stopped, not left to
        # finish its 120 s): a new job published through c runs there now.
        st, quick = self.post(c, {"i": 1})
        self.assertEqual(st, 202, quick)
        self.assertTrue(wait_until(lambda: job_state(c, quick) == "done", 30), job_state(c, quick))
        runs = {r[0]: r for r in timed_runs(self.pg)}
        self.assertIsNone(runs[jid][4], "the cancelled run finished its work")
        self.assertEqual((runs[quick][2], runs[quick][4] is not None), ("a", True))
        self.assertEqual(set(runs), {jid, quick})                    # never retried

    def test_max_concurrent_holds_across_three_hosts(self):
        # One consumer thread per host: three could run at once, two may; so two runs at one
        # instant are on two hosts, and a third would be the bound failing across hosts.
        n = 40
        proj = self.project("\n    max_concurrent: 2")
        one = ["-o", "app:consumer:concurrency=1"]
        ports = self.hosts([("a", proj, one), ("b", proj, one), ("c", proj, one)])
        self.publish(n, "100ms")
        c = wait_until(lambda: (lambda c: c if c.get("done") == n else None)(counts(ports["b"])), 60, every=0.2)
        self.assertTrue(c, counts(ports["b"]))
        runs = timed_runs(self.pg)
        self.assertEqual(len(runs), n)
        self.assertEqual({a for _, a, *_ in runs}, {1})
        self.assertTrue(all(end is not None for *_, end in runs))
        most = sweep_max([(start, end) for *_, start, end in runs])
        self.assertLessEqual(most, 2, sorted((s, e, h) for _, _, h, s, e in runs))
        self.assertEqual(most, 2, "never two at once: max_concurrent 2 was not used")


if __name__ == "__main__":
    th.main()
