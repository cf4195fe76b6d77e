"""Background jobs through the real binary: the job API (submit, status, result, cancel,
list, health, metrics) on the memory and SQLite drivers, retries and failures, timeouts,
cancel of a busy job, examples/job-queue (kaspGO) limits, drain on SIGTERM and kill -9 with
every accepted job reaching a final state. The exact kaspGO and ksu (examples/task-service)
contracts are in test_examples_contract.py."""
import json
import os
import re
import signal
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
    max_body: 4KB
    lifecycle: {auto_start: true}
  - name: root
    kind: http.router
    meta: {server: app:gateway}
    prefix: /
  - name: jobs
    kind: queue.queue
    driver: %(driver)s
    capacity: 20
    max_retries: 2
    backoff: {base: 20ms, factor: 2, cap: 100ms}
    timeout: %(timeout)s
  - name: work
    kind: function.lua
    source: file://work.lua
    method: run
    modules: [time, queue, errors, logger]
  - name: workers
    kind: queue.consumer
    queue: app:jobs
    func: app:work
    concurrency: 3
    lifecycle: {auto_start: true}
  - name: jobs.api
    kind: queue.http
    meta: {router: app:root}
    queue: app:jobs
    path: /jobs
    health_path: /healthz
    metrics_path: /metrics
"""

WORK = """
local time = require("time")
local queue = require("queue")
local errors = require("errors")
local logger = require("logger")
local function run(job)
  local j = queue.job()
  logger:info("run", {id = j.id, attempt = j.attempt})
  if job.sleep then time.sleep(job.sleep) end
  if job.spin then while true do end end
  if job.fail then error("failure " .. j.attempt) end
  if job.fatal then return nil, errors.new({message = "bad input", retryable = false}) end
  if job.fail_until and j.attempt < job.fail_until then error("not yet") end
  queue.progress({step = "end"})
  return {echo = job.echo, attempt = j.attempt}
end
return {run = run}
"""


def wait_state(port, jid, states, timeout=10, path="/jobs"):
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        status, _, body = th.http(port, "GET", f"{path}/{jid}")
        info = json.loads(body) if status == 200 else None
        if info and info["state"] in states:
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {jid} never reached {states}: {info}")


class JobApi:
    driver = "memory"

    @classmethod
    def setUpClass(cls):
        cls.project = th.make_project({"src/_index.yaml": INDEX % {"driver": cls.driver, "timeout": "1s"},
                                       "src/work.lua": WORK})
        cls.server = th.Server(cls.project, OVERRIDE)
        cls.port = cls.server.ports()[0]

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def submit(self, data, query=""):
        status, headers, body = th.http(self.port, "POST", "/jobs" + query, json.dumps(data))
        return status, headers, json.loads(body)

    def test_submit_runs_to_done_with_result_and_progress(self):
        status, headers, info = self.submit({"echo": "hi"})
        self.assertEqual(status, 202, info)
        self.assertEqual(headers["location"], "/jobs/" + info["id"])
        self.assertEqual(headers["content-type"], "application/json")
        done = wait_state(self.port, info["id"], ["done"])
        self.assertEqual(done["result"], {"echo": "hi", "attempt": 1})
        self.assertEqual(done["progress"], {"step": "end"})
        self.assertIsNotNone(done["finished_at"])
        status, _, body = th.http(self.port, "GET", f"/jobs/{info['id']}/result")
        self.assertEqual((status, json.loads(body)["result"]), (200, {"echo": "hi", "attempt": 1}))
        status, _, _ = th.http(self.port, "GET", f"/jobs/{info['id']}/status")
        self.assertEqual(status, 200)

    def test_retries_then_failed_with_error_history(self):
        _, _, info = self.submit({"fail": True})
        failed = wait_state(self.port, info["id"], ["failed"])
        self.assertEqual(failed["attempt"], 3)                    # 1 + max_retries 2
        self.assertEqual([e["attempt"] for e in failed["errors"]], [1, 2, 3])
        self.assertIn("failure 3", failed["errors"][-1]["error"])
        status, _, body = th.http(self.port, "GET", f"/jobs/{info['id']}/result")
        self.assertEqual(status, 409)
        self.assertIn("failure 3", json.loads(body)["error"])

    def test_a_retry_can_succeed(self):
        _, _, info = self.submit({"fail_until": 2, "echo": 1})
        done = wait_state(self.port, info["id"], ["done"])
        self.assertEqual(done["attempt"], 2)
        self.assertEqual(len(done["errors"]), 1)

    def test_not_retryable_error_fails_at_once(self):
        _, _, info = self.submit({"fatal": True})
        failed = wait_state(self.port, info["id"], ["failed"])
        self.assertEqual(failed["attempt"], 1)
        self.assertEqual(failed["errors"][0]["error"], "bad input")

    def test_timeout_stops_a_busy_job(self):
        _, _, info = self.submit({"spin": True}, "?max_retries=0")
        failed = wait_state(self.port, info["id"], ["failed"], timeout=15)
        self.assertIn("timed out", failed["errors"][0]["error"])

    def test_cancel_running_busy_loop_and_sleeping_job(self):
        for data in ({"spin": True}, {"sleep": "30s"}):
            _, _, info = self.submit(data)
            wait_state(self.port, info["id"], ["running"])
            t0 = time.monotonic()
            status, _, body = th.http(self.port, "DELETE", f"/jobs/{info['id']}")
            self.assertEqual(status, 202, body)
            self.assertEqual(json.loads(body)["cancel"], "requested")
            cancelled = wait_state(self.port, info["id"], ["cancelled"], timeout=5)
            self.assertLess(time.monotonic() - t0, 5)
            self.assertEqual(cancelled["attempt"], 1)             # never retried
            status, _, body = th.http(self.port, "GET", f"/jobs/{info['id']}/result")
            self.assertEqual(status, 409)
            status, _, _ = th.http(self.port, "DELETE", f"/jobs/{info['id']}")
            self.assertEqual(status, 409)

    def test_cancel_scheduled_job_and_unknown_ids(self):
        status, _, info = self.submit({"echo": 1}, "?delay=1h")
        self.assertEqual((status, info["state"]), (202, "scheduled"))
        status, _, body = th.http(self.port, "GET", f"/jobs/{info['id']}/result")
        self.assertEqual((status, json.loads(body)["state"]), (202, "scheduled"))
        status, _, body = th.http(self.port, "POST", f"/jobs/{info['id']}/cancel")
        self.assertEqual((status, json.loads(body)["state"]), (200, "cancelled"))
        for method, path in (("GET", "/jobs/nope"), ("GET", "/jobs/nope/result"), ("DELETE", "/jobs/nope")):
            status, _, body = th.http(self.port, method, path)
            self.assertEqual(status, 404, (method, path))
            self.assertIn("error", json.loads(body))

    def test_retry_a_failed_job_and_requeue_a_scheduled_one(self):
        _, _, info = self.submit({"fatal": True})
        jid = info["id"]
        wait_state(self.port, jid, ["failed"])
        status, _, body = th.http(self.port, "POST", f"/jobs/{jid}/requeue")
        self.assertEqual((status, json.loads(body)["state"]), (409, "failed"), body)
        status, _, body = th.http(self.port, "POST", f"/jobs/{jid}/retry")
        self.assertEqual(status, 200, body)
        self.assertEqual((json.loads(body)["state"], json.loads(body)["was"]), ("queued", "failed"))
        again = wait_state(self.port, jid, ["failed"])   # retry answers once queued is visible
        self.assertEqual(again["attempt"], 1)           # attempts counted afresh
        self.assertEqual([e["attempt"] for e in again["errors"]], [1, 1])
        _, _, info = self.submit({"echo": "later"}, "?delay=1h")
        status, _, body = th.http(self.port, "POST", f"/jobs/{info['id']}/retry")
        self.assertEqual((status, json.loads(body)["state"]), (409, "scheduled"), body)
        status, _, body = th.http(self.port, "POST", f"/jobs/{info['id']}/requeue")
        self.assertEqual((status, json.loads(body)["was"]), (200, "scheduled"), body)
        done = wait_state(self.port, info["id"], ["done"])
        self.assertEqual(done["result"], {"echo": "later", "attempt": 1})
        status, _, body = th.http(self.port, "POST", f"/jobs/{info['id']}/retry")
        self.assertEqual((status, json.loads(body)["state"]), (409, "done"), body)
        for path in ("/jobs/nope/retry", "/jobs/nope/requeue"):
            status, _, body = th.http(self.port, "POST", path)
            self.assertEqual(status, 404, path)
        status, _, _ = th.http(self.port, "GET", f"/jobs/{jid}/retry")
        self.assertEqual(status, 405)

    def test_idempotent_ids(self):
        status, _, a = self.submit({"echo": 1}, "?id=fixed-1")
        self.assertEqual((status, a["id"]), (202, "fixed-1"))
        status, _, b = self.submit({"echo": 2}, "?id=fixed-1")
        self.assertEqual((status, b["id"]), (200, "fixed-1"))
        status, _, c = th.http(self.port, "POST", "/jobs", '{"sleep":"2s"}', {"Idempotency-Key": "k1"})
        status2, _, d = th.http(self.port, "POST", "/jobs", '{"sleep":"2s"}', {"Idempotency-Key": "k1"})
        self.assertEqual((status, status2), (202, 200))
        self.assertEqual(json.loads(c)["id"], json.loads(d)["id"])

    def test_bad_requests(self):
        status, _, body = th.http(self.port, "POST", "/jobs", "{bad")
        self.assertEqual(status, 400)
        self.assertIn("invalid JSON", json.loads(body)["error"])
        status, _, _ = th.http(self.port, "POST", "/jobs", "x" * 10000)
        self.assertEqual(status, 413)
        status, headers, _ = th.http(self.port, "PUT", "/jobs")
        self.assertEqual(status, 405)
        self.assertIn("POST", headers["allow"])
        status, _, _ = th.http(self.port, "GET", "/jobs?state=bogus")
        self.assertEqual(status, 400)

    def test_list_pages_with_a_cursor(self):
        ids = [self.submit({"echo": i})[2]["id"] for i in range(5)]
        for i in ids:
            wait_state(self.port, i, ["done"])
        seen, after = [], "0"
        for _ in range(20):
            status, _, body = th.http(self.port, "GET", f"/jobs?state=done&limit=2&after={after}")
            self.assertEqual(status, 200)
            page = json.loads(body)
            self.assertLessEqual(len(page["jobs"]), 2)
            self.assertTrue(all(j["state"] == "done" for j in page["jobs"]))
            seen += [j["id"] for j in page["jobs"]]
            if page["next"] is None:
                break
            after = page["next"]
        for i in ids:
            self.assertIn(i, seen)
        self.assertEqual(len(seen), len(set(seen)))

    def test_health_and_metrics(self):
        status, _, body = th.http(self.port, "GET", "/healthz")
        self.assertEqual((status, json.loads(body)["status"]), (200, "ok"))
        status, headers, text = th.http(self.port, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain"))
        self.assertRegex(text, r'taskhost_jobs_published_total\{queue="app:jobs"\} [1-9]')
        self.assertRegex(text, r'taskhost_jobs\{queue="app:jobs",state="done"\} \d+')
        self.assertRegex(text, r'taskhost_job_wait_seconds_bucket\{queue="app:jobs",le="\+Inf"\} [1-9]')


class MemoryDriver(JobApi, th.TestCase):
    driver = "memory"


class SqliteDriver(JobApi, th.TestCase):
    driver = "sqlite"

    def test_the_database_file_is_in_the_project(self):
        self.assertTrue(os.path.exists(os.path.join(self.project, "data", "app.jobs.db")))

    def test_a_second_host_on_the_same_database_is_refused(self):
        r = th.run(["run", self.project] + OVERRIDE, timeout=30)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("in use by another taskhost", r.stderr)


class ShutdownRequeue(th.TestCase):
    def test_a_job_still_running_at_the_drain_deadline_goes_back_without_using_an_attempt(self):
        project = th.make_project({"src/_index.yaml": INDEX % {"driver": "sqlite", "timeout": "60s"},
                                   "src/work.lua": WORK,
                                   "taskhost.yaml": "shutdown:\n  timeout: 1s\n"})
        s = th.Server(project, OVERRIDE)
        port = s.ports()[0]
        status, _, body = th.http(port, "POST", "/jobs?id=long", '{"sleep":"0.8s"}')
        self.assertEqual(status, 202)
        status, _, body = th.http(port, "POST", "/jobs?id=longer", '{"spin":true}')
        wait_state(port, "longer", ["running"])
        s.p.send_signal(signal.SIGTERM)
        s.p.wait(timeout=30)
        self.assertEqual(s.stop(), 0, s.log())
        self.assertRegex(s.log(), r"app:jobs: 1 running jobs stopped and put back in the queue")
        s2 = th.Server(project, OVERRIDE)
        try:
            port = s2.ports()[0]
            info = wait_state(port, "longer", ["running", "retrying", "failed"], timeout=10)
            self.assertEqual(info["attempt"], 1, info)           # the drained run did not count
            self.assertEqual(wait_state(port, "long", ["done"])["state"], "done")
        finally:
            self.assertEqual(s2.stop(), 0, s2.log())


class CapacityInBytes(th.TestCase):
    def test_capacity_bytes_refuses_with_429_and_frees_on_finish(self):
        index = (INDEX % {"driver": "memory", "timeout": "5s"}).replace(
            "    capacity: 20\n", "    capacity: 20\n    capacity_bytes: 1KB\n")
        project = th.make_project({"src/_index.yaml": index, "src/work.lua": WORK})
        s = th.Server(project, OVERRIDE)
        try:
            port = s.ports()[0]
            big = json.dumps({"sleep": "200ms", "echo": "x" * 600})
            st1, _, b1 = th.http(port, "POST", "/jobs", big)
            self.assertEqual(st1, 202, b1)
            st2, h2, b2 = th.http(port, "POST", "/jobs", big)   # 2 x ~630 bytes > 1 KiB
            self.assertEqual(st2, 429, b2)
            self.assertIn("bytes of data held", b2)
            self.assertEqual(self.submit_small(port), 202)       # a small one still fits
            wait_state(port, json.loads(b1)["id"], ["done"])
            st3, _, b3 = th.http(port, "POST", "/jobs", big)     # room again once it finished
            self.assertEqual(st3, 202, b3)
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def submit_small(self, port):
        return th.http(port, "POST", "/jobs", json.dumps({"echo": "s"}))[0]

    def test_an_invalid_size_is_a_check_error(self):
        index = (INDEX % {"driver": "memory", "timeout": "5s"}).replace(
            "    capacity: 20\n", "    capacity: 20\n    capacity_bytes: lots\n")
        project = th.make_project({"src/_index.yaml": index, "src/work.lua": WORK})
        r = th.run(["check", project])
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertRegex(r.stdout, r"src/_index\.yaml:\d+: .*capacity_bytes: invalid size")


def job_queue(env, **kw):
    e = {"WORKERS": "4", "QUEUE_SIZE": "64", "ERROR_RATE": "0"}
    e.update(env)
    return th.Server(kw.get("project") or th.copy_example("job-queue"), OVERRIDE, env=e)


def enqueue(port, jid, retries=3, payload="p"):
    status, headers, body = th.http(port, "POST", "/enqueue",
                                    json.dumps({"id": jid, "payload": payload, "max_retries": retries}))
    return status, headers, body


class KaspgoContract(th.TestCase):
    def test_contract(self):
        s = job_queue({"QUEUE_SIZE": "3", "WORKERS": "1", "ERROR_RATE": "0"})
        try:
            port = s.ports()[0]
            self.assertEqual(th.http(port, "GET", "/healthz")[0], 200)
            codes = [enqueue(port, f"t{i}")[0] for i in range(6)]
            self.assertEqual(codes[:3], [202, 202, 202])
            self.assertIn(429, codes[3:])
            for bad in ('{"payload":"x"}', "{bad", '{"id":""}', '{"id":"a","max_retries":"x"}', "[]"):
                status, _, body = th.http(port, "POST", "/enqueue", bad)
                self.assertEqual(status, 400, (bad, body))
            self.assertEqual(th.http(port, "GET", "/enqueue")[0], 405)
            self.assertEqual(th.http(port, "POST", "/enqueue", "x" * 70000)[0], 413)
            info = wait_state(port, "t0", ["done"], timeout=10)
            self.assertEqual(info["result"]["payload"], "p")
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_accepted_body_and_failures_after_retries(self):
        s = job_queue({"ERROR_RATE": "100"})
        try:
            port = s.ports()[0]
            status, _, body = enqueue(port, "doomed", retries=2)
            self.assertEqual(status, 202)
            self.assertEqual(json.loads(body)["status"], "queued")
            info = wait_state(port, "doomed", ["failed"], timeout=15)
            self.assertEqual(info["attempt"], 3)
            self.assertIn("simulated failure", info["errors"][-1]["error"])
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_sigterm_drains_running_jobs_and_refuses_new_ones(self):
        project = th.copy_example("job-queue")
        with open(os.path.join(project, "taskhost.yaml"), "w") as f:
            f.write("shutdown:\n  timeout: 3s\n")
        s = job_queue({"WORKERS": "2"}, project=project)
        port = s.ports()[0]
        for i in range(6):
            self.assertEqual(enqueue(port, f"d{i}")[0], 202)
        wait_state(port, "d0", ["running", "done"])
        s.p.send_signal(signal.SIGTERM)
        s.wait_for("jobs: draining")
        status, headers, _ = enqueue(port, "after-term")
        self.assertEqual(status, 503)
        self.assertEqual(headers["retry-after"], "5")
        self.assertEqual(th.http(port, "GET", "/healthz")[0], 503)
        s.p.wait(timeout=30)                                  # no second signal: it drains
        self.assertEqual(s.stop(), 0, s.log())
        self.assertRegex(s.log(), r"waiting up to 3\.0s for \d+ running jobs")
        # restart: everything accepted before the signal finishes; nothing was lost
        s2 = job_queue({"WORKERS": "4"}, project=project)
        try:
            port = s2.ports()[0]
            for i in range(6):
                wait_state(port, f"d{i}", ["done"], timeout=15)
            self.assertEqual(th.http(port, "GET", "/jobs/after-term")[0], 404)
        finally:
            self.assertEqual(s2.stop(), 0, s2.log())


class KillNine(th.TestCase):
    def test_every_accepted_job_reaches_a_final_state_and_nothing_runs_after_done(self):
        project = th.copy_example("job-queue")
        s = job_queue({"WORKERS": "4", "QUEUE_SIZE": "200", "ERROR_RATE": "30"}, project=project)
        port = s.ports()[0]
        accepted = []
        for i in range(40):
            status, _, _ = enqueue(port, f"k{i}", retries=10)
            if status == 202:
                accepted.append(f"k{i}")
        self.assertEqual(len(accepted), 40)
        time.sleep(0.8)                                       # some done, some running
        status, _, body = th.http(port, "GET", "/jobs?state=done&limit=1000")
        done_before = {j["id"] for j in json.loads(body)["jobs"]}
        os.kill(s.p.pid, signal.SIGKILL)
        s.stop()
        s2 = job_queue({"WORKERS": "4", "QUEUE_SIZE": "200", "ERROR_RATE": "30"}, project=project)
        try:
            port = s2.ports()[0]
            for jid in accepted:
                info = wait_state(port, jid, ["done", "failed"], timeout=60)
                self.assertEqual(info["state"], "done", info)     # 10 retries at 30 %: done
            ran_again = set(re.findall(r'"id":"(k\d+)"', s2.log())) & done_before
            self.assertEqual(ran_again, set(), "jobs seen done before the crash ran again")
            self.assertRegex(s2.log(), r"jobs restored")
        finally:
            self.assertEqual(s2.stop(), 0, s2.log())


if __name__ == "__main__":
    th.main()
