"""e2e: the metrics module and the admin listener's GET /metrics (issue 13).

Lua handlers update counters, gauges and histograms with labels; the admin listener's text
parses (Prometheus's own parser, and a strict one here) and shows the exact values; a token
is required when set; --admin overrides taskhost.yaml; excess series are refused and counted;
bad names are errors; the host's process series move when processes are spawned; every
host series the README documents is present and moves under load (issue 15): HTTP requests
per route and status with latency histograms, spawns, mailbox depths, worker busy time,
reloads (ok and refused, through SIGHUP), open fds.
"""
import json
import math
import os
import re
import signal
import sys

import th

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:   # Debian's python3-prometheus-client, when python3 is not Debian's
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families

INDEX = """
version: "1.0"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: ":8080"
    lifecycle: {auto_start: true}
  - name: processes
    kind: process.host
    host: {workers: 2}
    lifecycle: {auto_start: true}
  - name: api
    kind: http.router
    meta: {server: app:gateway}
    prefix: /api
  - name: m
    kind: function.lua
    source: file://m.lua
    method: handler
    modules: [http, json, metrics]
  - name: m.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: POST
    path: /m
    func: app:m
  - name: spawn
    kind: function.lua
    source: file://spawn.lua
    method: handler
    modules: [http, json]
  - name: spawn.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: POST
    path: /spawn
    func: app:spawn
  - name: worker
    kind: process.lua
    source: file://worker.lua
    method: main
    modules: [time]
  - name: jobsq
    kind: queue.queue
    driver: memory
  - name: enqueue
    kind: function.lua
    source: file://enqueue.lua
    method: handler
    modules: [http, queue]
  - name: enqueue.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: POST
    path: /enqueue
    func: app:enqueue
  - name: hold
    kind: function.lua
    source: file://hold.lua
    method: handler
    modules: [http, json]
  - name: hold.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: POST
    path: /hold
    func: app:hold
  - name: holder
    kind: process.lua
    source: file://holder.lua
    method: main
"""

# POST /api/hold {n} -> pids of n holders; {fill = pid, k} sends k messages; {go = pids}.
HOLD_LUA = """
local http = require("http")
local function handler()
  local req, res = http.request(), http.response()
  local b = req:body_json()
  local out = {}
  if b.n then
    for i = 1, b.n do out[i] = process.spawn("app:holder", "app:processes") end
  elseif b.fill then
    for i = 1, b.k do assert(process.send(b.fill, "m", i)) end
  else
    for _, pid in ipairs(b.go) do process.send(pid, "go") end
  end
  res:write_json(out)
end
return {handler = handler}
"""

# Waits for "go" only: every other message stays unread in its inbox.
HOLDER_LUA = """
local function main()
  process.listen("go"):receive()
end
return {main = main}
"""

ENQUEUE_LUA = """
local http = require("http")
local queue = require("queue")
local function handler()
  for i = 1, 3 do assert(queue.publish("app:jobsq", {n = i})) end
  http.response():write_json({ok = true})
end
return {handler = handler}
"""

# POST /api/m {calls: [[fn, args...], ...]} -> [{ok} | {kind, msg} | {raised}] per call.
M_LUA = """
local http = require("http")
local json = require("json")
local metrics = require("metrics")
local function handler()
  local req, res = http.request(), http.response()
  local out = {}
  for i, c in ipairs(req:body_json().calls) do
    local ok, r, err = pcall(metrics[c[1]], table.unpack(c, 2, c.n or #c))
    if not ok then out[i] = {raised = tostring(r)}
    elseif r == true then out[i] = {ok = true}
    else out[i] = {kind = err:kind(), msg = err:message()} end
  end
  res:write_json(out)
end
return {handler = handler}
"""

# POST /api/spawn {n} -> pids of n workers, each waiting for a message on its inbox.
SPAWN_LUA = """
local http = require("http")
local function handler()
  local req, res = http.request(), http.response()
  local body = req:body_json()
  local pids = {}
  if body.stop then
    for _, pid in ipairs(body.stop) do process.send(pid, "stop") end
  else
    for i = 1, body.n do pids[i] = process.spawn("app:worker", "app:processes") end
  end
  res:write_json(pids)
end
return {handler = handler}
"""

WORKER_LUA = """
local function main()
  process.inbox():receive()
end
return {main = main}
"""

FILES = {"src/_index.yaml": INDEX, "src/m.lua": M_LUA, "src/spawn.lua": SPAWN_LUA,
         "src/worker.lua": WORKER_LUA, "src/enqueue.lua": ENQUEUE_LUA, "src/hold.lua": HOLD_LUA,
         "src/holder.lua": HOLDER_LUA}

# The host's series the README's admin paragraph lists (log.clickhouse's aside), by type.
DOCUMENTED = {
    "counter": ["taskhost_processes_started_total", "taskhost_messages_sent_total",
                "taskhost_jobs_published_total", "taskhost_jobs_rejected_total",
                "taskhost_jobs_retries_total", "taskhost_jobs_finished_total",
                "taskhost_events_sent_total", "taskhost_events_delivered_total",
                "taskhost_events_dropped_total", "taskhost_metrics_series_refused_total",
                "taskhost_http_requests_total", "taskhost_worker_busy_seconds_total",
                "taskhost_reloads_total"],
    "gauge": ["taskhost_processes", "taskhost_host_workers", "taskhost_memory_heap_bytes",
              "taskhost_memory_heap_system_bytes", "taskhost_memory_resident_bytes", "taskhost_jobs",
              "taskhost_events_subscriptions", "taskhost_metrics_series", "taskhost_run_queue_processes",
              "taskhost_mailbox_messages", "taskhost_mailbox_messages_max", "taskhost_open_fds",
              "taskhost_max_fds", "taskhost_lua_heap_bytes"],
    "histogram": ["taskhost_job_wait_seconds", "taskhost_http_request_duration_seconds"],
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)')


def parse(text):
    """A strict reading of the text format: {(name, ((label, value), ...) sorted): float}.
    Every line must be a comment (# HELP / # TYPE) or a well-formed sample."""
    out = {}
    assert text.endswith("\n"), "the text must end with a newline"
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        labels, rest = [], m.group(3) or ""
        while rest:
            lm = LABEL.match(rest)
            assert lm, f"bad labels in {line!r}"
            value = lm.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            labels.append((lm.group(1), value))
            rest = rest[lm.end():]
        key = (m.group(1), tuple(sorted(labels)))
        assert key not in out, f"duplicate series {line!r}"
        out[key] = float(m.group(4))
    return out


def lab(**kw):
    return tuple(sorted(kw.items()))


class Metrics(th.TestCase):
    def start(self, yaml=None, args=()):
        files = dict(FILES)
        if yaml is not None:
            files["taskhost.yaml"] = yaml
        self.project = th.make_project(files)
        s = th.Server(self.project, ["--no-watch", "-o", "app:gateway:addr=127.0.0.1:0"] + list(args))
        self.addCleanup(s.stop)
        port = s.ports()[0]
        m = s.wait_for(r"admin: serving GET /metrics on 127\.0\.0\.1:(\d+)")
        return s, port, int(m.group(1))

    def calls(self, port, *calls):
        st, _, body = th.http(port, "POST", "/api/m", json.dumps({"calls": list(calls)}))
        self.assertEqual(st, 200, body)
        return json.loads(body)

    def scrape(self, admin, token=None):
        h = {"Authorization": "Bearer " + token} if token else {}
        st, hdrs, body = th.http(admin, "GET", "/metrics", headers=h)
        self.assertEqual(st, 200, body)
        self.assertEqual(hdrs["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        families = {f.name: f for f in text_string_to_metric_families(body)}   # Prometheus's parser
        return parse(body), families, body

    def test_values_labels_types_and_exact_text(self):
        _, port, admin = self.start("admin:\n  addr: 127.0.0.1:0\n")
        r = self.calls(port,
                       ["counter_inc", "app_requests_total", {"route": "/a", "code": "200"}],
                       ["counter_inc", "app_requests_total", {"code": "200", "route": "/a"}],
                       ["counter_add", "app_requests_total", 2.5, {"route": "/a", "code": "200"}],
                       ["counter_inc", "app_requests_total", {"route": "/b", "code": 500}],
                       ["counter_inc", "app_plain_total"],
                       ["gauge_set", "app_temperature", 21.5, {"room": 'quote"back\\slash\nline'}],
                       ["gauge_inc", "app_inflight"], ["gauge_inc", "app_inflight"],
                       ["gauge_dec", "app_inflight"],
                       ["histogram", "app_latency_seconds", 0.003, {"op": "read"}],
                       ["histogram", "app_latency_seconds", 0.3, {"op": "read"}],
                       ["histogram", "app_latency_seconds", 42, {"op": "read"}])
        self.assertEqual(r, [{"ok": True}] * 12)
        v, fam, text = self.scrape(admin)
        self.assertEqual(v[("app_requests_total", lab(code="200", route="/a"))], 4.5)
        self.assertEqual(v[("app_requests_total", lab(code="500", route="/b"))], 1)
        self.assertEqual(v[("app_plain_total", ())], 1)
        self.assertEqual(v[("app_temperature", lab(room='quote"back\\slash\nline'))], 21.5)
        self.assertEqual(v[("app_inflight", ())], 1)
        self.assertIn('app_temperature{room="quote\\"back\\\\slash\\nline"} 21.5\n', text)
        self.assertIn('app_requests_total{code="200",route="/a"} 4.5\n', text)
        h = lab(op="read")
        self.assertEqual(v[("app_latency_seconds_bucket", lab(op="read", le="0.005"))], 1)
        self.assertEqual(v[("app_latency_seconds_bucket", lab(op="read", le="0.25"))], 1)
        self.assertEqual(v[("app_latency_seconds_bucket", lab(op="read", le="0.5"))], 2)
        self.assertEqual(v[("app_latency_seconds_bucket", lab(op="read", le="10"))], 2)
        self.assertEqual(v[("app_latency_seconds_bucket", lab(op="read", le="+Inf"))], 3)
        self.assertEqual(v[("app_latency_seconds_count", h)], 3)
        self.assertTrue(math.isclose(v[("app_latency_seconds_sum", h)], 42.303))
        self.assertEqual(fam["app_requests"].type, "counter")     # the parser drops _total
        self.assertEqual(fam["app_temperature"].type, "gauge")
        self.assertEqual(fam["app_latency_seconds"].type, "histogram")
        self.assertEqual(v[("taskhost_metrics_series", ())], 6)

    def test_bad_names_types_values_and_misuse(self):
        _, port, admin = self.start("admin: {addr: \"127.0.0.1:0\"}\n")
        r = self.calls(port,
                       ["counter_inc", "9starts_with_digit"],
                       ["counter_inc", "has-dash"],
                       ["counter_inc", "ok_total", {"__reserved": "x"}],
                       ["counter_inc", "ok_total", {"bad-label": "x"}],
                       ["counter_add", "ok_total", -1],
                       ["counter_inc", "taskhost_processes"],
                       ["counter_inc", "clash"], ["gauge_set", "clash", 1],
                       ["counter_inc", "ok_total", {"v": "x" * 1025}],
                       ["counter_inc", "ok_total", {"a": {"nested": 1}}],
                       ["counter_add", "ok_total", "nope"])
        kinds = [x.get("kind") for x in r[:9]]
        self.assertEqual(kinds, ["INVALID"] * 6 + [None, "INVALID", "INVALID"], r)
        self.assertIn("is a counter, not a gauge", r[7]["msg"])
        self.assertIn("raised", r[9])
        self.assertIn("raised", r[10])
        v, _, text = self.scrape(admin)
        self.assertNotIn("9starts", text)
        self.assertNotIn("has-dash", text)
        self.assertEqual(v[("clash", ())], 1)
        self.assertNotIn(("ok_total", ()), v)

    def test_excess_series_refused_and_counted(self):
        _, port, admin = self.start("admin:\n  addr: 127.0.0.1:0\n")
        calls = [["counter_inc", "app_ids_total", {"id": str(i)}] for i in range(1003)]
        r = self.calls(port, *calls)
        self.assertEqual(r[:1000], [{"ok": True}] * 1000)
        self.assertEqual([x.get("kind") for x in r[1000:]], ["RATE_LIMITED"] * 3)
        self.assertIn("at most 1000 series per metric", r[1000]["msg"])
        self.assertEqual(self.calls(port, ["counter_inc", "app_ids_total", {"id": "7"}]), [{"ok": True}])
        v, _, _ = self.scrape(admin)
        self.assertEqual(v[("taskhost_metrics_series_refused_total", lab(reason="series_per_metric"))], 3)
        self.assertEqual(v[("app_ids_total", lab(id="7"))], 2)
        self.assertNotIn(("app_ids_total", lab(id="1001")), v)
        self.assertEqual(len([k for k in v if k[0] == "app_ids_total"]), 1000)

    def test_budgets_from_taskhost_yaml(self):
        _, port, admin = self.start("admin: {addr: \"127.0.0.1:0\"}\n"
                                    "metrics: {max_names: 2, max_series_per_metric: 2, max_series: 3}\n")
        r = self.calls(port,
                       ["counter_inc", "a_total", {"i": "1"}], ["counter_inc", "a_total", {"i": "2"}],
                       ["counter_inc", "a_total", {"i": "3"}],      # 3rd series of a_total
                       ["gauge_set", "b", 1], ["gauge_set", "b", 2, {"i": "1"}],   # 4th in all
                       ["gauge_set", "c", 1])                       # 3rd name
        self.assertEqual([x.get("kind") for x in r], [None, None, "RATE_LIMITED", None, "RATE_LIMITED", "RATE_LIMITED"])
        v, _, _ = self.scrape(admin)
        for reason in ("series_per_metric", "series_total", "metric_names"):
            self.assertEqual(v[("taskhost_metrics_series_refused_total", lab(reason=reason))], 1, reason)
        self.assertEqual(v[("b", ())], 1)

    def test_token_paths_and_methods(self):
        _, port, admin = self.start("admin:\n  addr: 127.0.0.1:0\n  token: \"s3cret-t0ken\"\n")
        st, hdrs, _ = th.http(admin, "GET", "/metrics")
        self.assertEqual(st, 401)
        self.assertEqual(hdrs.get("www-authenticate"), "Bearer")
        self.assertEqual(th.http(admin, "GET", "/metrics", headers={"Authorization": "Bearer wrong"})[0], 401)
        self.assertEqual(th.http(admin, "GET", "/metrics", headers={"Authorization": "Bearer s3cret-t0ke"})[0], 401)
        self.assertEqual(th.http(admin, "GET", "/metrics", headers={"Authorization": "s3cret-t0ken"})[0], 401)
        self.calls(port, ["counter_inc", "app_seen_total"])
        v, _, _ = self.scrape(admin, token="s3cret-t0ken")
        self.assertEqual(v[("app_seen_total", ())], 1)
        auth = {"Authorization": "Bearer s3cret-t0ken"}
        self.assertEqual(th.http(admin, "GET", "/other", headers=auth)[0], 404)
        st, hdrs, _ = th.http(admin, "POST", "/metrics", body="x", headers=auth)
        self.assertEqual(st, 405)
        self.assertEqual(hdrs.get("allow"), "GET, HEAD")
        st, _, body = th.http(admin, "HEAD", "/metrics", headers=auth)
        self.assertEqual((st, body), (200, ""))
        self.assertEqual(th.http(admin, "GET", "/metrics?x=1", headers=auth)[0], 200)

    def test_admin_flag_overrides_and_off_by_default(self):
        # taskhost.yaml's addr cannot be bound; --admin replaces it
        _, _, admin = self.start("admin:\n  addr: 256.1.1.1:1\n", args=["--admin", "127.0.0.1:0"])
        self.assertEqual(th.http(admin, "GET", "/metrics")[0], 200)
        # --admin alone turns it on
        _, _, admin = self.start(None, args=["--admin=127.0.0.1:0"])
        self.assertEqual(th.http(admin, "GET", "/metrics")[0], 200)
        # neither: no listener
        s = th.Server(th.make_project(FILES), ["--no-watch", "-o", "app:gateway:addr=127.0.0.1:0"])
        self.addCleanup(s.stop)
        port = s.ports()[0]
        self.assertEqual(self.calls(port, ["counter_inc", "app_x_total"]), [{"ok": True}])   # still works
        self.assertNotIn("admin:", s.log())

    def test_bad_admin_settings_are_load_errors(self):
        for yaml, want in [("admin:\n  addr: 5\n", "taskhost.yaml:2: admin.addr must be a non-empty string"),
                           ("admin: [1]\n", "taskhost.yaml:1: admin must be a mapping"),
                           ("admin:\n  addr: 127.0.0.1:0\n  token: \"\"\n", "taskhost.yaml:3: admin.token"),
                           ("metrics:\n  max_series: 0\n", "taskhost.yaml:2: metrics.max_series must be a positive integer")]:
            d = th.make_project(dict(FILES, **{"taskhost.yaml": yaml}))
            r = th.run(["run", d, "--no-watch"], timeout=30)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn(want, r.stderr)
        r = th.run(["run", "--admin"], timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_host_series_move(self):
        _, port, admin = self.start("admin:\n  addr: 127.0.0.1:0\n")
        host = lab(host="app:processes", kind="process")
        v0, fam, _ = self.scrape(admin)
        self.assertEqual(v0[("taskhost_host_workers", host)], 2)
        self.assertIn(("taskhost_processes", lab(host="app:processes", kind="process")), v0)
        self.assertGreater(v0[("taskhost_memory_heap_bytes", ())], 0)
        self.assertGreater(v0[("taskhost_memory_resident_bytes", ())], 0)
        self.assertEqual(fam["taskhost_processes_started"].type, "counter")
        st, _, body = th.http(port, "POST", "/api/spawn", json.dumps({"n": 5}))
        self.assertEqual(st, 200, body)
        pids = json.loads(body)
        self.assertEqual(len(pids), 5)
        v1, _, _ = self.scrape(admin)
        self.assertEqual(v1[("taskhost_processes", host)], v0[("taskhost_processes", host)] + 5)
        self.assertEqual(v1[("taskhost_processes_started_total", host)],
                         v0[("taskhost_processes_started_total", host)] + 5)
        th.http(port, "POST", "/api/spawn", json.dumps({"stop": pids}))
        sent = self.scrape(admin)[0][("taskhost_messages_sent_total", ())]
        self.assertEqual(sent, v1[("taskhost_messages_sent_total", ())] + 5)
        for _ in range(500):     # bounded: the workers end once they read "stop"
            v2, _, _ = self.scrape(admin)
            if v2[("taskhost_processes", host)] == v0[("taskhost_processes", host)]:
                break
        self.assertEqual(v2[("taskhost_processes", host)], v0[("taskhost_processes", host)])
        self.assertEqual(v2[("taskhost_processes_started_total", host)],
                         v0[("taskhost_processes_started_total", host)] + 5)

    def test_queue_series(self):
        _, port, admin = self.start("admin:\n  addr: 127.0.0.1:0\n")
        q = lab(queue="app:jobsq")
        v0, fam, _ = self.scrape(admin)
        self.assertEqual(v0[("taskhost_jobs_published_total", q)], 0)
        self.assertEqual(v0[("taskhost_jobs", lab(queue="app:jobsq", state="queued"))], 0)
        self.assertEqual(fam["taskhost_job_wait_seconds"].type, "histogram")
        self.assertEqual(th.http(port, "POST", "/api/enqueue", "{}")[0], 200)
        v1, _, _ = self.scrape(admin)
        self.assertEqual(v1[("taskhost_jobs_published_total", q)], 3)
        self.assertEqual(v1[("taskhost_jobs", lab(queue="app:jobsq", state="queued"))], 3)
        self.assertEqual(v1[("taskhost_jobs_rejected_total", lab(queue="app:jobsq", reason="full"))], 0)
        self.assertEqual(v1[("taskhost_job_wait_seconds_count", q)], 0)
        self.assertIn(("taskhost_job_wait_seconds_bucket", lab(queue="app:jobsq", le="+Inf")), v1)


    def wait_value(self, admin, key, want, tries=500):
        """Scrapes until series key reads want (bounded: a request is counted right after its
        response is written, so the client may see the answer a moment before the count)."""
        for _ in range(tries):
            v, _, _ = self.scrape(admin)
            if v.get(key, 0) == want:
                return v
        self.assertEqual(v.get(key, 0), want, key)

    def assert_documented(self, fam):
        """Every DOCUMENTED family is there, with its type and at least one sample (the
        parser's family names drop a counter's _total)."""
        for typ, names in DOCUMENTED.items():
            for name in names:
                base = name[:-len("_total")] if typ == "counter" else name
                self.assertIn(base, fam, name)
                self.assertEqual(fam[base].type, typ, name)
                got = {x.name for x in fam[base].samples}
                want = {name + x for x in ("_bucket", "_sum", "_count")} if typ == "histogram" else {name}
                self.assertEqual(got, want, name)

    def test_documented_host_series_present_typed_and_moving(self):
        s, port, admin = self.start("admin:\n  addr: 127.0.0.1:0\n")
        v0, _, _ = self.scrape(admin)
        host = lab(host="app:processes", kind="process")
        self.assertGreaterEqual(v0[("taskhost_run_queue_processes", host)], 0)
        self.assertGreater(v0[("taskhost_open_fds", ())], 3)
        self.assertGreater(v0[("taskhost_max_fds", ())], v0[("taskhost_open_fds", ())])
        self.assertEqual(v0[("taskhost_mailbox_messages", host)], 0)

        # HTTP: counts by route pattern, method and status; the raw URL is never a label
        gw = dict(service="app:gateway")
        ok = ("taskhost_http_requests_total", lab(route="/api/m", method="POST", status="200", **gw))
        for _ in range(20):
            self.calls(port)
        for _ in range(3):
            self.assertEqual(th.http(port, "GET", "/no-such-page-xyz")[0], 404)
        self.assertEqual(th.http(port, "GET", "/api/m")[0], 405)
        v1 = self.wait_value(admin, ok, v0.get(ok, 0) + 20)
        um = lambda status: ("taskhost_http_requests_total",
                             lab(route="(unmatched)", method="GET", status=status, **gw))
        v1 = self.wait_value(admin, um("404"), v0.get(um("404"), 0) + 3)
        v1 = self.wait_value(admin, um("405"), v0.get(um("405"), 0) + 1)
        r = lab(route="/api/m", **gw)
        count = ("taskhost_http_request_duration_seconds_count", r)
        v1 = self.wait_value(admin, count, v0[count] + 20)
        self.assertEqual(v1[("taskhost_http_request_duration_seconds_bucket", lab(le="+Inf", **dict(r)))],
                         v1[count])
        self.assertGreater(v1[("taskhost_http_request_duration_seconds_sum", r)],
                           v0[("taskhost_http_request_duration_seconds_sum", r)])
        self.assertLessEqual(v1[("taskhost_http_request_duration_seconds_bucket", lab(le="0.0001", **dict(r)))],
                             v1[("taskhost_http_request_duration_seconds_bucket", lab(le="10", **dict(r)))])
        _, fam, text = self.scrape(admin)
        self.assertNotIn("xyz", text)
        self.assert_documented(fam)

        # spawns, messages, mailbox depths, busy workers
        st, _, body = th.http(port, "POST", "/api/hold", json.dumps({"n": 3}))
        self.assertEqual(st, 200, body)
        pids = json.loads(body)
        for pid, k in ((pids[0], 5), (pids[1], 2)):
            self.assertEqual(th.http(port, "POST", "/api/hold", json.dumps({"fill": pid, "k": k}))[0], 200)
        v2 = self.wait_value(admin, ("taskhost_mailbox_messages", host), 7)
        self.assertEqual(v2[("taskhost_mailbox_messages_max", host)], 5)
        self.assertEqual(v2[("taskhost_processes", host)], v0[("taskhost_processes", host)] + 3)
        self.assertEqual(v2[("taskhost_processes_started_total", host)],
                         v0[("taskhost_processes_started_total", host)] + 3)
        self.assertEqual(v2[("taskhost_messages_sent_total", ())], v0[("taskhost_messages_sent_total", ())] + 7)
        heap = ("taskhost_lua_heap_bytes", host)               # three more states, the others idle
        self.assertGreater(v2[heap], v0[heap] + 3 * 4096)
        self.assertEqual(th.http(port, "POST", "/api/hold", json.dumps({"go": pids}))[0], 200)
        v3 = self.wait_value(admin, ("taskhost_processes", host), v0[("taskhost_processes", host)])
        self.assertEqual(v3[("taskhost_mailbox_messages", host)], 0)
        self.assertEqual(v3[("taskhost_mailbox_messages_max", host)], 0)
        self.assertLess(v3[heap], v2[heap])                    # their states are gone
        self.assertGreater(v3[("taskhost_worker_busy_seconds_total", host)],
                           v0[("taskhost_worker_busy_seconds_total", host)])

        # reloads: SIGHUP reloads (ok), and a broken file is refused; HTTP counts survive both
        ok_r, refused_r = ("taskhost_reloads_total", lab(result="ok")), ("taskhost_reloads_total", lab(result="refused"))
        self.assertEqual((v3[ok_r], v3[refused_r]), (0, 0))
        s.p.send_signal(signal.SIGHUP)
        s.wait_for(r"reloaded \(")
        v4 = self.wait_value(admin, ok_r, 1)
        with open(os.path.join(self.project, "src", "broken.lua"), "w") as f:
            f.write("return {handler = = 1}\n")
        with open(os.path.join(self.project, "src", "_index.yaml"), "a") as f:
            f.write("  - name: broken\n    kind: function.lua\n    source: file://broken.lua\n    method: handler\n")
        s.p.send_signal(signal.SIGHUP)
        s.wait_for(r"refused")
        v4 = self.wait_value(admin, refused_r, 1)
        self.assertEqual(v4[ok_r], 1)
        self.assertEqual(v4[ok], v1[ok])
        self.calls(port)
        self.wait_value(admin, ok, v1[ok] + 1)


if __name__ == "__main__":
    th.main()
