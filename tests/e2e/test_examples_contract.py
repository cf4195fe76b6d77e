"""The two job examples speak their seed's exact contract, through the real binary:
examples/task-service is ksu (seeds/004: bodies, the four status strings, DELETE 204, the list
array, "failed by io bound" at ERROR_RATE), examples/job-queue is kaspGO (seeds/001: the exact
202 body, QUEUE_SIZE bounding waiting jobs only, a re-posted id, /docs/ and /swagger/); and a
job shown as running is running: never more than the workers, nor than max_concurrent. Both
contracts run again with the examples' queue on a private PostgreSQL in
test_examples_postgres.py."""
import json
import os
import re
import textwrap
import time
import unittest

import th

# Set by test_examples_postgres.py: the examples' queue driver from the environment.
EXTRA_ENV = {}
OVERRIDE = ["-o", "app:gateway:addr=127.0.0.1:0"]
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
KSU_STATUSES = {"created, but waiting to start", "in process", "completed", "failed by io bound"}
NO_RESULT = {"problem": "task running or failed, no result, check status"}


def get_json(port, path):
    status, headers, body = th.http(port, "GET", path)
    return status, json.loads(body) if body else None


def poll(fn, timeout=30, every=0.05):
    """Calls fn until it returns something true; that value, or AssertionError at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def ksu(env):
    e = {"TASK_MIN_SECONDS": "1", "TASK_MAX_SECONDS": "2", "SEMAPHORE": "2", "ERROR_RATE": "0"}
    e.update(EXTRA_ENV)
    e.update(env)
    return th.Server(th.copy_example("task-service"), OVERRIDE, env=e)


class KsuContract(th.TestCase):
    def post_task(self, port):
        status, headers, body = th.http(port, "POST", "/task")
        self.assertEqual(status, 202, body)
        task = json.loads(body)
        self.assertEqual(set(task), {"id", "created_at", "duration"})
        self.assertRegex(task["id"], UUID4)
        self.assertRegex(task["created_at"], RFC3339)
        self.assertEqual(task["duration"], 0)
        self.assertEqual(headers["location"], "/task/" + task["id"])
        return task

    def test_a_task_life_in_ksu_bodies_with_the_semaphore(self):
        s = ksu({})
        try:
            port = s.ports()[0]
            tasks = [self.post_task(port) for _ in range(5)]
            ids = [t["id"] for t in tasks]
            self.assertEqual(len(set(ids)), 5)
            seen, in_process_max, running_max = set(), 0, 0
            early_result = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status, items = get_json(port, "/task")
                self.assertEqual(status, 200)
                self.assertIsInstance(items, list)
                self.assertEqual([i["id"] for i in items], ids)
                for i in items:
                    self.assertEqual(set(i), {"id", "result", "status", "created_at", "duration"})
                    self.assertIn(i["status"], KSU_STATUSES)
                    self.assertIsInstance(i["duration"], int)
                    if i["status"] != "completed":
                        self.assertIsNone(i["result"])
                    seen.add(i["status"])
                statuses = [i["status"] for i in items]
                in_process_max = max(in_process_max, statuses.count("in process"))
                _, page = get_json(port, "/jobs?state=running&limit=1000")
                running_max = max(running_max, len(page["jobs"]))
                waiting = [i["id"] for i in items if i["status"] == "created, but waiting to start"]
                if waiting and early_result is None:
                    early_result = th.http(port, "GET", f"/task/{waiting[-1]}/result")
                if statuses.count("completed") == 5:
                    break
                time.sleep(0.05)
            self.assertEqual(statuses.count("completed"), 5, items)
            self.assertEqual(seen, {"created, but waiting to start", "in process", "completed"})
            self.assertLessEqual(in_process_max, 2)              # SEMAPHORE
            self.assertLessEqual(running_max, 2)
            self.assertGreaterEqual(in_process_max, 1)
            self.assertIsNotNone(early_result)
            self.assertEqual(json.loads(early_result[2]), NO_RESULT)
            for t, item in zip(tasks, items):
                status, body = get_json(port, f"/task/{t['id']}/result")
                self.assertEqual(status, 200)
                self.assertEqual(set(body), {"result"})
                self.assertRegex(body["result"], r"^io work result = \d$")
                self.assertEqual(item["result"], body["result"])
                status, body = get_json(port, f"/task/{t['id']}/status")
                self.assertEqual(status, 200)
                self.assertEqual(set(body), {"status", "created_at", "duration"})
                self.assertEqual(body["status"], "completed")
                self.assertEqual(body["created_at"], t["created_at"])
                # the run time in whole seconds: at least the seconds it slept (the result's
                # digit, TASK_MIN..MAX_SECONDS = 1..2); more on a loaded machine, never more
                # than this test's own 60 s wait
                slept = int(body_result[-1]) if (body_result := item["result"]) else 0
                self.assertIn(slept, (1, 2))
                self.assertGreaterEqual(body["duration"], slept)
                self.assertLess(body["duration"], 60)
            for path in ("/task/nope/status", "/task/nope/result"):
                status, body = get_json(port, path)
                self.assertEqual(status, 404, path)
                self.assertIn("problem", body)
            self.assertEqual(th.http(port, "DELETE", "/task/nope")[0], 404)
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_in_process_status_counts_seconds(self):
        s = ksu({"TASK_MIN_SECONDS": "30", "TASK_MAX_SECONDS": "30"})
        try:
            port = s.ports()[0]
            tid = self.post_task(port)["id"]
            body = poll(lambda: (lambda b: b if b["status"] == "in process" and b["duration"] >= 1 else None)(
                get_json(port, f"/task/{tid}/status")[1]), timeout=15)
            self.assertEqual(set(body), {"status", "created_at", "duration"})
            status, res = get_json(port, f"/task/{tid}/result")
            self.assertEqual(res, NO_RESULT)
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_error_rate_failures_are_failed_by_io_bound(self):
        s = ksu({"ERROR_RATE": "100", "TASK_MIN_SECONDS": "1", "TASK_MAX_SECONDS": "1", "SEMAPHORE": "4"})
        try:
            port = s.ports()[0]
            ids = [self.post_task(port)["id"] for _ in range(3)]
            for tid in ids:
                body = poll(lambda: (lambda b: b if b["status"] == "failed by io bound" else None)(
                    get_json(port, f"/task/{tid}/status")[1]), timeout=20)
                self.assertEqual(set(body), {"status", "created_at", "duration"})
                status, res = get_json(port, f"/task/{tid}/result")
                self.assertEqual(res, NO_RESULT)
            _, items = get_json(port, "/task")
            self.assertEqual([i["status"] for i in items], ["failed by io bound"] * 3)
            self.assertEqual([i["result"] for i in items], [None] * 3)
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_delete_answers_204_and_the_task_is_gone(self):
        s = ksu({"TASK_MIN_SECONDS": "60", "TASK_MAX_SECONDS": "60", "SEMAPHORE": "1"})
        try:
            port = s.ports()[0]
            running = self.post_task(port)["id"]
            waiting = self.post_task(port)["id"]
            poll(lambda: get_json(port, f"/task/{running}/status")[1]["status"] == "in process", timeout=10)
            self.assertEqual(get_json(port, f"/task/{waiting}/status")[1]["status"],
                             "created, but waiting to start")
            for tid in (waiting, running):
                status, _, body = th.http(port, "DELETE", f"/task/{tid}")
                self.assertEqual((status, body), (204, ""))
            self.assertEqual(th.http(port, "GET", f"/task/{waiting}/status")[0], 404)
            poll(lambda: th.http(port, "GET", f"/task/{running}/status")[0] == 404, timeout=5)
            self.assertEqual(get_json(port, "/task")[1], [])
            self.assertEqual(th.http(port, "DELETE", f"/task/{running}")[0], 404)
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_delete_of_a_finished_task_answers_204_and_forgets_it(self):
        s = ksu({"TASK_MIN_SECONDS": "0", "TASK_MAX_SECONDS": "0"})
        try:
            port = s.ports()[0]
            tid = self.post_task(port)["id"]
            poll(lambda: get_json(port, f"/task/{tid}/status")[1]["status"] in
                 ("completed", "failed by io bound"), timeout=10)
            status, _, body = th.http(port, "DELETE", f"/task/{tid}")
            self.assertEqual((status, body), (204, ""))
            self.assertEqual(th.http(port, "GET", f"/task/{tid}/status")[0], 404)
            self.assertEqual(th.http(port, "GET", f"/task/{tid}/result")[0], 404)
            self.assertEqual([t for t in get_json(port, "/task")[1] if t["id"] == tid], [])
            self.assertEqual(th.http(port, "DELETE", f"/task/{tid}")[0], 404)
        finally:
            self.assertEqual(s.stop(), 0, s.log())


def job_queue(env, project=None):
    e = {"WORKERS": "2", "QUEUE_SIZE": "3", "ERROR_RATE": "0"}
    e.update(EXTRA_ENV)
    e.update(env)
    if project is None:
        project = th.copy_example("job-queue")
        with open(os.path.join(project, "taskhost.yaml"), "w") as f:
            f.write("shutdown:\n  timeout: 1s\n")
    return th.Server(project, OVERRIDE, env=e)


def enqueue(port, jid, retries=0):
    return th.http(port, "POST", "/enqueue", json.dumps({"id": jid, "payload": "p", "max_retries": retries}))


def state(port, jid):
    status, body = get_json(port, f"/jobs/{jid}")
    return body["state"] if status == 200 else None


class KaspgoContract(th.TestCase):
    def test_accepted_body_is_exactly_queued(self):
        s = job_queue({"WORK_MIN_MS": "1", "WORK_MAX_MS": "1"})
        try:
            port = s.ports()[0]
            status, headers, body = enqueue(port, "exact")
            self.assertEqual(status, 202)
            self.assertEqual(json.loads(body), {"status": "queued"})
            self.assertEqual(headers["content-type"], "application/json")
            poll(lambda: state(port, "exact") == "done", timeout=10)
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_queue_size_bounds_waiting_jobs_not_running_ones(self):
        s = job_queue({"WORKERS": "2", "QUEUE_SIZE": "3", "WORK_MIN_MS": "60000", "WORK_MAX_MS": "60000"})
        try:
            port = s.ports()[0]
            for jid in ("r1", "r2"):
                self.assertEqual(enqueue(port, jid)[0], 202)
            poll(lambda: state(port, "r1") == "running" and state(port, "r2") == "running", timeout=10)
            for jid in ("w1", "w2", "w3"):                     # QUEUE_SIZE more wait
                status, _, body = enqueue(port, jid)
                self.assertEqual(status, 202, (jid, body))
            status, headers, body = enqueue(port, "w4")
            self.assertEqual(status, 429, body)
            self.assertEqual(headers["retry-after"], "1")
            self.assertEqual([state(port, j) for j in ("w1", "w2", "w3")], ["queued"] * 3)
            self.assertIsNone(state(port, "w4"))
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_a_reposted_id_is_a_conflict_never_a_false_queued(self):
        s = job_queue({"WORK_MIN_MS": "1", "WORK_MAX_MS": "1"})
        try:
            port = s.ports()[0]
            self.assertEqual(enqueue(port, "same")[0], 202)
            status, _, body = enqueue(port, "same", retries=5)
            self.assertEqual(status, 409, body)
            self.assertNotIn("queued", body)
            self.assertIn("already exists", json.loads(body)["error"])
            info = poll(lambda: (lambda b: b if b[1]["state"] == "done" else None)(get_json(port, "/jobs/same")))[1]
            self.assertEqual(info["max_retries"], 0)               # the first post's job, unchanged
            self.assertEqual(enqueue(port, "same")[0], 409)         # finished: still known
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_docs_and_swagger(self):
        s = job_queue({})
        try:
            port = s.ports()[0]
            for path in ("/docs/", "/docs/openapi.json"):
                status, headers, body = th.http(port, "GET", path)
                self.assertEqual(status, 200, path)
                self.assertTrue(headers["content-type"].startswith("application/json"))
                spec = json.loads(body)
                self.assertTrue(spec["openapi"].startswith("3."))
                for route in ("/enqueue", "/healthz", "/jobs", "/jobs/{id}", "/metrics"):
                    self.assertIn(route, spec["paths"])
                post = spec["paths"]["/enqueue"]["post"]
                self.assertEqual(set(post["responses"]), {"202", "400", "409", "413", "429", "503"})
            status, headers, page = th.http(port, "GET", "/swagger/")
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("text/html"))
            self.assertIn("/docs/openapi.json", page)
            self.assertNotRegex(page, r"<script[^>]+src=|<link[^>]+href=\"?https?:")   # no CDN
            self.assertEqual(th.http(port, "GET", "/swagger/nothing-here")[0], 404)
        finally:
            self.assertEqual(s.stop(), 0, s.log())


RUNNING_INDEX = """
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
    driver: %(driver)s
    capacity: 100000
    max_retries: 0
%(extra)s
  - name: work
    kind: function.lua
    source: file://work.lua
    method: run
    modules: [time, queue]
%(workers)s
  - name: jobs.api
    kind: queue.http
    meta: {router: app:root}
    queue: app:jobs
    path: /jobs
"""
RUNNING_WORK = """
local time = require("time")
local queue = require("queue")
return { run = function() queue.progress("started") time.sleep("200ms") return true end }
"""
JOBS = 120
WORKERS = """
  - name: workers
    kind: queue.consumer
    queue: app:jobs
    func: app:work
    concurrency: 4
    lifecycle: {auto_start: true}
"""


class RunningMeansRunning(th.TestCase):
    """Samples the jobs shown as running while a deep queue drains: at most the workers (4)
    or max_concurrent, and each of them really started (its first line sets a progress): a
    job shown running without progress in many samples sat claimed but idle."""

    def sample(self, driver, extra, bound, preload=False):
        """preload (sqlite): the jobs are stored by a first run without workers, so the workers
        of the second run find the whole queue waiting at once (the deepest first claims)."""
        index = lambda workers: RUNNING_INDEX % {"driver": driver, "extra": extra, "workers": workers}
        project = th.make_project({"src/_index.yaml": index("" if preload else WORKERS),
                                   "src/work.lua": RUNNING_WORK})
        s = th.Server(project, OVERRIDE)
        port = s.ports()[0]
        for _ in range(JOBS):
            self.assertEqual(th.http(port, "POST", "/jobs", "{}")[0], 202)
        if preload:
            self.assertEqual(s.stop(), 0, s.log())
            with open(os.path.join(project, "src", "_index.yaml"), "w") as f:
                f.write(textwrap.dedent(index(WORKERS)).lstrip("\n"))
            s = th.Server(project, OVERRIDE)
            port = s.ports()[0]
        try:
            most, samples, idle = 0, 0, {}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                _, page = get_json(port, "/jobs?state=running&limit=1000")
                running = page["jobs"]
                most = max(most, len(running))
                samples += 1
                for j in running:
                    if j["progress"] is None:
                        idle[j["id"]] = idle.get(j["id"], 0) + 1
                _, done = get_json(port, "/jobs?state=done&limit=1000")
                _, failed = get_json(port, "/jobs?state=failed&limit=1")
                self.assertEqual(failed["jobs"], [])
                if len(done["jobs"]) == JOBS:
                    break
            self.assertEqual(len(done["jobs"]), JOBS)
            self.assertGreater(samples, 10)
            self.assertLessEqual(most, bound)
            self.assertGreaterEqual(most, 1)
            self.assertLess(max(idle.values(), default=0), 5, idle)
        finally:
            self.assertEqual(s.stop(), 0, s.log())

    def test_running_never_exceeds_the_workers(self):
        for driver in ("memory", "sqlite"):
            with self.subTest(driver=driver):
                self.sample(driver, "", 4)

    def test_running_never_exceeds_max_concurrent_and_each_one_runs(self):
        self.sample("sqlite", "    max_concurrent: 2", 2, preload=True)


if __name__ == "__main__":
    th.main()
