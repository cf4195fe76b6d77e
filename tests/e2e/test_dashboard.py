"""e2e: the live dashboard at /_taskhost/ on the admin listener (issue 15).

One host (admin token set) with an http.service, a process host with held processes (one
with a full mailbox), a process.service that keeps failing, a queue whose consumer fails
jobs until healed, and a queue without a consumer for paging. Without a browser: auth (401
JSON for the API, the login form for a page, the cookie is not the token, a bad cookie and
a cross-site POST are refused), 404/405/400/413, the assets' types, ETag and CSP, paging
with the cursor, the history ring growing, a refused reload's file:line diagnostics, job
actions. With headless Chromium (DevTools protocol over a websocket): the page is opened
through the login form, its numbers are compared with the JSON API and /metrics, retry /
cancel / requeue are clicked and the state change is seen in the DOM and through the job
API, and a screenshot is saved as build/dashboard.png.
"""
import base64
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import th

try:
    import websocket                       # Debian's python3-websocket
except ImportError:
    sys.path.append("/usr/lib/python3/dist-packages")
    import websocket

TOKEN = "dash-s3cret-token"

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
  - name: hello
    kind: function.lua
    source: file://hello.lua
    method: handler
    modules: [http]
  - name: hello.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: GET
    path: /hello
    func: app:hello
  - name: hold
    kind: function.lua
    source: file://hold.lua
    method: handler
    modules: [http, json, env]
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
  - name: flaky
    kind: process.lua
    source: file://flaky.lua
    method: main
  - name: flaky.service
    kind: process.service
    process: app:flaky
    host: app:processes
    lifecycle:
      auto_start: true
      restart: {initial_delay: 20ms, max_delay: 50ms, max_attempts: 2}
  - name: mem
    kind: env.storage.memory
    values: {HEAL: "0"}
  - name: heal
    kind: env.variable
    storage: mem
    variable: HEAL
  - name: jobs
    kind: queue.queue
    driver: memory
    max_retries: 0
  - name: work
    kind: function.lua
    source: file://work.lua
    method: handler
    modules: [env]
  - name: jobs.consumer
    kind: queue.consumer
    queue: app:jobs
    func: app:work
    concurrency: 1
    lifecycle: {auto_start: true}
  - name: jobs.api
    kind: queue.http
    meta: {router: app:api}
    queue: app:jobs
    path: /jobs
  - name: pages
    kind: queue.queue
    driver: memory
  - name: pages.api
    kind: queue.http
    meta: {router: app:api}
    queue: app:pages
    path: /pages
"""

HELLO = """
local http = require("http")
return {handler = function() http.response():write("hi") end}
"""

# POST /api/hold {n} -> pids of n holders; {fill = pid, k} sends k messages; {heal = true}
# lets the failing jobs succeed from now on.
HOLD = """
local http = require("http")
local env = require("env")
local function handler()
  local req, res = http.request(), http.response()
  local b = req:body_json()
  local out = {}
  if b.n then
    for i = 1, b.n do out[i] = process.spawn("app:holder", "app:processes") end
  elseif b.fill then
    for i = 1, b.k do assert(process.send(b.fill, "m", i)) end
  elseif b.heal then
    assert(env.set("HEAL", "1"))
  end
  res:write_json(out)
end
return {handler = handler}
"""

HOLDER = """
return {main = function() process.listen("go"):receive() end}
"""

FLAKY = """
return {main = function() error("flaky: cannot reach the thing") end}
"""

WORK = """
local env = require("env")
return {handler = function(job)
  if job and job.fail and env.get("HEAL") ~= "1" then error("job " .. tostring(job.n) .. " failed on purpose") end
  return {ok = true}
end}
"""

FILES = {"src/_index.yaml": INDEX, "src/hello.lua": HELLO, "src/hold.lua": HOLD, "src/holder.lua": HOLDER,
         "src/flaky.lua": FLAKY, "src/work.lua": WORK,
         "taskhost.yaml": 'admin: {addr: "127.0.0.1:0", token: "%s"}\n' % TOKEN}

BEARER = {"Authorization": "Bearer " + TOKEN}
P = "/_taskhost/"


def wait_until(fn, timeout=20, what="condition"):
    """Polls fn (bounded) until it returns a truthy value; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (AssertionError, OSError, ValueError, KeyError, websocket.WebSocketException) as e:
            last = e                      # e.g. a page navigating away while it is asked
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Host:
    """The host under test, shared by the file's tests (started once: under 60 s in all)."""

    def __init__(self):
        self.project = th.make_project(FILES)
        self.s = th.Server(self.project, ["-o", "app:gateway:addr=127.0.0.1:0"])
        self.port = self.s.ports()[0]
        self.admin = int(self.s.wait_for(r"admin: serving GET /metrics on 127\.0\.0\.1:(\d+)").group(1))

    def api(self, method, path, body=None, headers=None):
        st, hdrs, text = th.http(self.port, method, path, body, headers)
        return st, (json.loads(text) if text.strip().startswith(("{", "[")) else text)

    def dash(self, method, path, body=None, headers=None, auth=True):
        h = dict(BEARER) if auth else {}
        h.update(headers or {})
        return th.http(self.admin, method, P + path, body, h)

    def dash_json(self, path, method="GET", headers=None):
        st, _, body = self.dash(method, path, headers=headers)
        assert st == 200, (st, body)
        return json.loads(body)

    def metrics(self):
        st, _, body = th.http(self.admin, "GET", "/metrics", headers=BEARER)
        assert st == 200, body
        return body

    def stop(self):
        self.s.stop()
        shutil.rmtree(self.project, ignore_errors=True)


HOST = None


def setUpModule():
    global HOST
    HOST = Host()


def tearDownModule():
    HOST.stop()


def metric(text, name, **labels):
    """The sum of the samples of name whose labels include labels."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    assert found, f"no {name}{labels} in the scrape"
    return total


class DashboardApi(th.TestCase):
    def test_auth_api_401_html_login_cookie(self):
        h = HOST
        st, hdrs, body = h.dash("GET", "api/state", auth=False)
        self.assertEqual(st, 401)
        self.assertEqual(hdrs["content-type"], "application/json")
        self.assertIn("error", json.loads(body))
        st, hdrs, _ = h.dash("GET", "", headers={"Accept": "text/html"}, auth=False)
        self.assertEqual((st, hdrs["location"]), (303, P + "login"))
        st, hdrs, body = h.dash("GET", "login", auth=False)
        self.assertEqual(st, 200)
        self.assertIn('name=token', body)
        self.assertIn("default-src 'self'", hdrs["content-security-policy"])
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        st, hdrs, body = h.dash("POST", "login", "token=wrong", headers=form, auth=False)
        self.assertEqual(st, 401)
        self.assertNotIn("set-cookie", hdrs)
        st, hdrs, _ = h.dash("POST", "login", "token=" + urllib.parse.quote(TOKEN), headers=form, auth=False)
        self.assertEqual((st, hdrs["location"]), (303, P))
        cookie = hdrs["set-cookie"]
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/_taskhost/"):
            self.assertIn(attr, cookie)
        value = re.match(r"taskhost_session=([^;]+);", cookie).group(1)
        self.assertNotIn(TOKEN, value)
        jar = {"Cookie": "taskhost_session=" + value}
        st, _, body = h.dash("GET", "api/state", headers=jar, auth=False)
        self.assertEqual(st, 200, body)
        self.assertIn("queues", json.loads(body))
        # a changed MAC, a changed time and a made-up value are all refused
        t, nonce, mac = value.split(".")
        bad = [f"{t}.{nonce}.{'0' * 64}", f"{int(t) - 1}.{nonce}.{mac}", "x", TOKEN]
        for v in bad:
            st, _, _ = h.dash("GET", "api/state", headers={"Cookie": "taskhost_session=" + v}, auth=False)
            self.assertEqual(st, 401, v)
        # a cookie is for the dashboard only: /metrics still wants the bearer token
        st, _, _ = th.http(h.admin, "GET", "/metrics", headers=jar)
        self.assertEqual(st, 401)
        # a POST without the custom header (what a cross-site form sends) is refused
        st, _, body = h.dash("POST", "api/job/cancel?queue=app:pages&id=nope", headers=jar, auth=False)
        self.assertEqual(st, 403, body)
        st, _, body = h.dash("POST", "api/job/cancel?queue=app:pages&id=nope",
                             headers=dict(jar, **{"X-Taskhost-Action": "1"}), auth=False)
        self.assertEqual(st, 404, body)
        # guessing: past 10 wrong tokens within one second the form answers 429 (bounded loop)
        codes = []
        for i in range(300):
            codes.append(h.dash("POST", "login", f"token=guess{i}", headers=form, auth=False)[0])
            if codes[-1] == 429:
                break
        self.assertEqual(codes[-1], 429, codes)
        self.assertEqual(set(codes), {401, 429})
        time.sleep(1.1)                                          # the next second: the right token works
        st, hdrs, _ = h.dash("POST", "login", "token=" + urllib.parse.quote(TOKEN), headers=form, auth=False)
        self.assertEqual(st, 303)

    def test_errors_404_405_400_413(self):
        h = HOST
        cases = [("GET", "nope", None, 404), ("GET", "api/nope", None, 404), ("POST", "api/state", None, 405),
                 ("DELETE", "app.js", None, 405), ("GET", "api/job/cancel", None, 405),
                 ("GET", "api/jobs?queue=app:nope", None, 404), ("GET", "api/jobs", None, 400),
                 ("GET", "api/jobs?queue=app:pages&state=weird", None, 400),
                 ("GET", "api/jobs?queue=app:pages&after=-3", None, 400),
                 ("GET", "api/job?queue=app:pages&id=nope", None, 404),
                 ("GET", "api/job?queue=app:pages&id=" + "x" * 300, None, 400),
                 ("GET", "api/history?since=soon", None, 400),
                 ("POST", "api/job/explode?queue=app:pages&id=x", None, 404),
                 ("POST", "api/job/retry?queue=app:pages", None, 400),
                 ("POST", "api/job/cancel?queue=app:pages&id=x", "x" * 5000, 413)]
        for method, path, body, want in cases:
            hdrs = {"X-Taskhost-Action": "1"} if method != "GET" else {}
            st, rh, text = h.dash(method, path, body, headers=hdrs)
            self.assertEqual(st, want, f"{method} {path}: {text}")
            self.assertEqual(rh["content-type"], "application/json", path)
            self.assertIn("error", json.loads(text), path)
            if want == 405:
                self.assertIn("allow", rh)

    def test_assets_types_etag_csp(self):
        h = HOST
        st, hdrs, index = h.dash("GET", "")
        self.assertEqual(st, 200)
        self.assertEqual(hdrs["content-type"], "text/html; charset=utf-8")
        self.assertIn("default-src 'self'", hdrs["content-security-policy"])
        self.assertEqual(hdrs["x-content-type-options"], "nosniff")
        v = re.search(r'app\.js\?v=([0-9a-f]+)', index).group(1)
        for path, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
            st, hdrs, body = h.dash("GET", path)
            self.assertEqual(st, 200)
            self.assertTrue(hdrs["content-type"].startswith(ctype), hdrs)
            self.assertEqual(hdrs["cache-control"], "no-cache")
            self.assertGreater(len(body), 500)
            st, hdrs2, body = h.dash("GET", path, headers={"If-None-Match": hdrs["etag"]})
            self.assertEqual((st, body), (304, ""))
            st, hdrs3, _ = h.dash("GET", f"{path}?v={v}")
            self.assertIn("immutable", hdrs3["cache-control"])
        self.assertNotIn("http://", index.replace("http://www.w3.org", ""))   # nothing from elsewhere

    def test_paging_with_the_cursor(self):
        h = HOST
        ids = []
        for i in range(7):
            st, r = h.api("POST", "/api/pages?delay=1h", json.dumps({"i": i}))
            self.assertIn(st, (200, 202), r)
            ids.append(r["id"])
        seen, after, pages = [], 0, 0
        while True:
            r = h.dash_json(f"api/jobs?queue=app:pages&state=scheduled&limit=3&after={after}")
            self.assertLessEqual(len(r["jobs"]), 3)
            seen += [j["id"] for j in r["jobs"] if j["id"] in ids]
            pages += 1
            self.assertLess(pages, 20)
            if not r["next"]:
                break
            after = int(r["next"])
        self.assertEqual(seen, ids)           # every job once, oldest first
        self.assertGreaterEqual(pages, 3)
        one = h.dash_json(f"api/job?queue=app:pages&id={ids[0]}")
        self.assertEqual((one["id"], one["state"]), (ids[0], "scheduled"))
        # requeue runs a scheduled job now (queued: app:pages has no consumer); retry refuses it
        r = h.dash_json(f"api/job/requeue?queue=app:pages&id={ids[1]}", "POST", {"X-Taskhost-Action": "1"})
        self.assertEqual((r["was"], r["state"]), ("scheduled", "queued"))
        st, _, body = h.dash("POST", f"api/job/retry?queue=app:pages&id={ids[2]}", headers={"X-Taskhost-Action": "1"})
        self.assertEqual(st, 409, body)
        self.assertIn("scheduled", json.loads(body)["error"])
        r = h.dash_json(f"api/job/cancel?queue=app:pages&id={ids[2]}", "POST", {"X-Taskhost-Action": "1"})
        self.assertEqual((r["was"], r["state"]), ("scheduled", "cancelled"))
        st, rec = h.api("GET", f"/api/pages/{ids[2]}")
        self.assertEqual(rec["state"], "cancelled")
        st, _, body = h.dash("POST", f"api/job/cancel?queue=app:pages&id={ids[2]}", headers={"X-Taskhost-Action": "1"})
        self.assertEqual(st, 409, body)

    def test_history_ring_grows(self):
        h = HOST
        names = ("processes", "processes|app:processes", "run_queue|app:processes", "finished|app:jobs",
                 "http|app:gateway", "rps|app:gateway|/api/hello")
        # the first samples may predate the hosts (the sampler starts with the admin listener)
        first = wait_until(lambda: (lambda r: r if all(k in r["series"] for k in names) else None)(
            h.dash_json("api/history")), what="samples of every series")
        n = len(first["t"])
        self.assertGreater(n, 0)
        self.assertEqual(sorted(first["t"]), first["t"])
        for name in names:
            self.assertEqual(len(first["series"][name]), n)
        later = wait_until(lambda: (lambda r: r if len(r["t"]) > n else None)(h.dash_json("api/history")),
                           what="a new sample")
        self.assertGreater(len(later["t"]), n)
        since = later["t"][-2]
        tail = h.dash_json(f"api/history?since={since}")
        self.assertEqual(tail["t"][0], later["t"][-1])
        self.assertEqual(h.dash_json("api/state")["samples"] >= len(later["t"]), True)

    def test_refused_reload_shows_file_line(self):
        h = HOST
        path = os.path.join(h.project, "src", "bad.yaml")
        with open(path, "w") as f:
            f.write('version: "1.0"\nnamespace: bad\nentries:\n  - name: b\n    kind: function.lua\n'
                    '    source: file://bad.lua\n    method: handler\n')
        with open(os.path.join(h.project, "src", "bad.lua"), "w") as f:
            f.write("local x = \nreturn {handler = function() end\n")
        h.s.p.send_signal(signal.SIGHUP)
        reg = wait_until(lambda: (lambda r: r if r["last_refused"] else None)(h.dash_json("api/state")["registry"]),
                         what="a refused reload")
        self.assertGreaterEqual(reg["refused"], 1)
        errs = "\n".join(reg["last_refused"]["errors"])
        self.assertRegex(errs, r"bad\.lua:\d+")
        self.assertNotIn("1 error", errs)                        # the CLI's count line is not a diagnostic
        self.assertTrue(reg["version"] >= 1 and reg["entries"] > 10, reg)
        self.assertEqual(reg["kinds"]["queue.queue"], 2)


class CDP:
    """A minimal DevTools protocol client over one page target's websocket."""

    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.n = 0

    def call(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        for _ in range(100000):
            m = json.loads(self.ws.recv())
            if m.get("id") == self.n:
                if "error" in m:
                    raise AssertionError(f"{method}: {m['error']}")
                return m["result"]
        raise AssertionError(f"{method}: no answer")

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        self.ws.close()


class Chromium:
    """Headless Chromium with the DevTools port read from DevToolsActivePort; stopped by PID."""

    def __init__(self):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            raise unittest.SkipTest("chromium is not installed (scripts/setup installs it)")
        self.dir = tempfile.mkdtemp(prefix="taskhost-chromium-")
        self.p = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                                   "--remote-allow-origins=*", f"--user-data-dir={self.dir}", "--no-first-run",
                                   "--window-size=1280,2200", "about:blank"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        active = os.path.join(self.dir, "DevToolsActivePort")
        def port():
            if not os.path.exists(active):
                return None
            with open(active) as f:
                return f.read().split("\n")[0].strip()
        self.port = int(wait_until(port, timeout=60, what="DevToolsActivePort"))

    def page(self):
        import urllib.request

        def target():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None
        return CDP(wait_until(target, timeout=30, what="a page target"))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        try:
            os.killpg(self.p.pid, signal.SIGKILL)   # its helpers (renderer, zygote), in the group it leads
        except ProcessLookupError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def build_dir():
    """Where the binary under test is (build/ or build-asan/): the screenshot goes there."""
    return os.path.dirname(os.path.abspath(th.BIN))


class DashboardBrowser(th.TestCase):
    def drive(self):
        h = HOST
        for _ in range(25):
            st, _ = h.api("GET", "/api/hello")
            self.assertEqual(st, 200)
        st, pids = h.api("POST", "/api/hold", json.dumps({"n": 3}))
        self.assertEqual(st, 200, pids)
        st, _ = h.api("POST", "/api/hold", json.dumps({"fill": pids[0], "k": 5}))
        self.assertEqual(st, 200)
        failed, scheduled = [], []
        for i in range(3):
            st, r = h.api("POST", "/api/jobs", json.dumps({"fail": True, "n": i}))
            self.assertIn(st, (200, 202), r)
            failed.append(r["id"])
        for i in range(2):
            st, r = h.api("POST", "/api/jobs?delay=1h", json.dumps({"n": 10 + i}))
            self.assertIn(st, (200, 202), r)
            scheduled.append(r["id"])
        wait_until(lambda: all(h.api("GET", f"/api/jobs/{j}")[1]["state"] == "failed" for j in failed),
                   what="the failing jobs to fail")
        wait_until(lambda: any(s["id"] == "app:flaky.service" and s["state"] == "failed"
                               for s in h.dash_json("api/state")["services"]), what="the flaky service to give up")
        return pids, failed, scheduled

    def dom(self, cdp, selector):
        return cdp.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                        f"return e ? e.textContent : null; }})()")

    def wait_dom(self, cdp, selector, want, what):
        return wait_until(lambda: self.dom(cdp, selector) == want, timeout=30,
                          what=f"{what}: {selector} == {want!r} (is {self.dom(cdp, selector)!r})")

    def test_page_in_chromium(self):
        h = HOST
        pids, failed, scheduled = self.drive()
        br = Chromium()
        self.addCleanup(br.stop)
        cdp = br.page()
        self.addCleanup(cdp.close)
        cdp.call("Page.enable")
        cdp.call("Page.navigate", url=f"http://127.0.0.1:{h.admin}{P}")
        # no cookie yet: the page is the login form; sign in through it
        wait_until(lambda: cdp.eval("location.pathname + '|' + document.readyState") == P + "login|complete",
                   what="the login form")
        cdp.eval(f"document.querySelector('input[name=token]').value = {json.dumps(TOKEN)}; "
                 "document.querySelector('form').submit(); true")
        wait_until(lambda: cdp.eval("location.pathname") == P and
                   int(cdp.eval("document.body && document.body.dataset.rendered || 0") or 0) >= 1,
                   what="the dashboard to render")
        self.assertIsNone(cdp.eval("document.cookie.match(/taskhost_session/)"))   # HttpOnly

        # the numbers the host reports: DOM == JSON API == /metrics
        state = h.dash_json("api/state")
        text = h.metrics()
        route = next(r for r in state["http"] if r["route"] == "/api/hello")
        self.assertEqual(route["requests"], 25)
        self.assertEqual(metric(text, "taskhost_http_requests_total", route="/api/hello"), 25)
        self.wait_dom(cdp, '#http tr[data-route="app:gateway /api/hello"] td[data-f=requests]', "25", "route count")
        q = next(x for x in state["queues"] if x["id"] == "app:jobs")
        self.assertEqual(q["states"]["failed"], 3)
        self.assertEqual(metric(text, "taskhost_jobs", queue="app:jobs", state="failed"), 3)
        self.wait_dom(cdp, '#queues tr[data-queue="app:jobs"] td[data-f=failed]', "3", "failed count")
        self.wait_dom(cdp, '#queues tr[data-queue="app:jobs"] td[data-f=scheduled]', "2", "scheduled count")
        procs = int(metric(text, "taskhost_processes", host="app:processes"))
        host = next(x for x in state["hosts"] if x["id"] == "app:processes")
        self.assertEqual(host["processes"], procs)
        self.assertGreaterEqual(procs, 3)
        self.wait_dom(cdp, '#hosts tr[data-host="app:processes"] td[data-f=processes]', str(procs), "processes")
        self.wait_dom(cdp, f'#busiest tr[data-pid="{pids[0]}"] td[data-f=mailbox]', "5", "the busiest process")
        self.assertEqual(state["busiest"][0]["pid"], pids[0])
        self.assertGreater(state["busiest"][0]["lua_heap"], 0)
        self.wait_dom(cdp, '#services tr[data-service="app:flaky.service"] td[data-f=state]', "failed", "service")
        self.assertIn("flaky: cannot reach", self.dom(cdp, '#services tr[data-service="app:flaky.service"] td[data-f=last_error]'))
        self.assertEqual(self.dom(cdp, '#services tr[data-service="app:flaky.service"] td[data-f=restarts]'), "2")
        self.assertIn("failed on purpose", self.dom(cdp, f'#failures tr[data-job="{failed[0]}"] td[data-f=error]'))
        self.assertEqual(self.dom(cdp, "#r-version"), str(state["registry"]["version"]))
        # the charts get the history (the page polls it) and draw it: a legend per series
        wait_until(lambda: "app:gateway" in cdp.eval("document.getElementById('l-http').textContent"),
                   what="the HTTP chart's legend")

        # buttons: retry a failed job (healed first, so it ends done), cancel and requeue scheduled ones
        st, _ = h.api("POST", "/api/hold", json.dumps({"heal": True}))
        self.assertEqual(st, 200)
        row = '#jobs tr[data-job="%s"]'
        self.wait_dom(cdp, (row % failed[0]) + " td[data-f=state]", "failed", "the failed job listed")
        click = "(() => { const b = document.querySelector('%s button[data-act=%s]'); if (!b) return false; b.click(); return true; })()"
        self.assertTrue(cdp.eval(click % (row % failed[0], "retry")))
        self.wait_dom(cdp, (row % failed[0]) + " td[data-f=state]", "done", "the retried job")
        self.assertEqual(h.api("GET", f"/api/jobs/{failed[0]}")[1]["state"], "done")
        self.assertTrue(cdp.eval(click % (row % scheduled[0], "cancel")))
        self.wait_dom(cdp, (row % scheduled[0]) + " td[data-f=state]", "cancelled", "the cancelled job")
        self.assertEqual(h.api("GET", f"/api/jobs/{scheduled[0]}")[1]["state"], "cancelled")
        self.assertTrue(cdp.eval(click % (row % scheduled[1], "requeue")))
        self.wait_dom(cdp, (row % scheduled[1]) + " td[data-f=state]", "done", "the requeued job")
        self.assertEqual(h.api("GET", f"/api/jobs/{scheduled[1]}")[1]["state"], "done")
        self.assertIn("requeue", self.dom(cdp, "#j-msg"))

        # a screenshot of the whole page, under the build dir, once the page holds 10 samples (one
        # a second), with requests going on meanwhile so the HTTP chart has a line to draw
        def ten_samples():
            h.api("GET", "/api/hello")
            return cdp.eval("hist.t.length") >= 10
        wait_until(ten_samples, timeout=40, what="10 samples in the page")
        size = cdp.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=min(int(size[1]), 4000),
                 deviceScaleFactor=1, mobile=False)
        cdp.eval("new Promise(r => setTimeout(r, 300))")   # a resize redraws the charts
        shot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
        out = os.path.join(build_dir(), "dashboard.png")
        with open(out, "wb") as f:
            f.write(shot)
        self.assertEqual(shot[:8], b"\x89PNG\r\n\x1a\n")
        w, hgt = struct.unpack(">II", shot[16:24])
        self.assertEqual(w, 1280)
        self.assertGreater(hgt, 800)
        self.assertGreater(len(shot), 50000)   # a rendered page, not a blank one


if __name__ == "__main__":
    th.main()
