"""HTTP through the real binary: the http-async-task app unmodified (statuses, bodies, the
background coroutine outliving the response), the request/response API, limits, errors,
several services, concurrency."""
import json
import re
import threading
import time

import th

OVERRIDE = ["-o", "app:gateway:addr=127.0.0.1:0"]


class AsyncTaskApp(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = th.Server(th.copy_example("http-async-task"), OVERRIDE)
        cls.port = cls.server.ports()[0]

    @classmethod
    def tearDownClass(cls):
        cls.assertEqual = th.unittest.TestCase.assertEqual
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def post(self, body, path="/api/tasks"):
        return th.http(self.port, "POST", path, body, {"Content-Type": "application/json"})

    def test_accepts_a_task_and_runs_it_after_the_response(self):
        status, headers, body = self.post('{"name":"generate-report","duration":2}')
        self.assertEqual(status, 202, body)
        self.assertEqual(headers["content-type"], "application/json")
        data = json.loads(body)
        self.assertRegex(data["task_id"], r"^task_\d+$")
        self.assertEqual(data["name"], "generate-report")
        self.assertEqual(data["status"], "accepted")
        self.assertEqual(data["message"], "Task will run for 2 seconds in background")
        tid = data["task_id"]
        # answered before the task ran its course: its last line is not logged yet
        self.assertNotRegex(self.server.log(), r'Task completed \{[^\n]*"task_id":"%s"' % tid)
        self.server.wait_for(r'Task completed \{[^\n]*"task_id":"%s"' % tid, timeout=10)
        log = self.server.log()
        self.assertRegex(log, r'Task started \{[^\n]*"name":"generate-report"')
        steps = re.findall(r'Task progress \{[^\n]*"task_id":"%s"[^\n]*' % tid, log)
        self.assertEqual(len(steps), 2, log)
        self.assertIn('"total":2', steps[0])

    def test_default_duration_is_three_seconds(self):
        status, _, body = self.post('{"name":"x"}')
        self.assertEqual(status, 202)
        self.assertEqual(json.loads(body)["message"], "Task will run for 3 seconds in background")

    def test_bad_input_gets_400_with_a_json_error(self):
        for body in ['{bad json', '', '{}', '{"name":""}', '{"name":5}', '[1,2]', 'null',
                     '{"name":"x","duration":"long"}']:
            status, headers, text = self.post(body)
            self.assertEqual(status, 400, (body, text))
            self.assertEqual(headers["content-type"], "application/json")
            self.assertIn("error", json.loads(text), body)

    def test_router_statuses(self):
        status, headers, _ = th.http(self.port, "GET", "/api/tasks")
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "POST, OPTIONS")
        self.assertEqual(th.http(self.port, "DELETE", "/api/tasks")[0], 405)
        status, _, body = th.http(self.port, "GET", "/nope")
        self.assertEqual((status, body), (404, "404 page not found\n"))
        self.assertEqual(th.http(self.port, "POST", "/api/tasks/extra", "{}")[0], 404)
        status, headers, body = th.http(self.port, "OPTIONS", "/api/tasks")
        self.assertEqual((status, body), (204, ""))
        self.assertIn("POST", headers["allow"])

    def test_two_hundred_parallel_requests_all_answered(self):
        results = []
        lock = threading.Lock()

        def one(i):
            r = self.post(json.dumps({"name": f"job-{i}", "duration": 0}))
            with lock:
                results.append((i, r))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(len(results), 200)
        for i, (status, _, body) in results:
            self.assertEqual(status, 202, body)
            self.assertEqual(json.loads(body)["name"], f"job-{i}")


API_INDEX = """
namespace: app
entries:
  - name: processes
    kind: process.host
    lifecycle: {auto_start: true}
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:0"
    max_body: 1KB
    timeouts: {write: 500ms}
    lifecycle: {auto_start: true}
  - name: admin
    kind: http.service
    addr: "127.0.0.1:0"
    timeouts: {read: 300ms, idle: 300ms}
    lifecycle: {auto_start: true}
  - {name: api, kind: http.router, meta: {server: gateway}, prefix: /v1}
  - {name: adm, kind: http.router, meta: {server: admin}}
  - {name: api_fn, kind: function.lua, source: "file://api.lua", method: handle, modules: [http, json, time]}
  - {name: show, kind: http.endpoint, meta: {router: api}, method: GET, path: "/items/{id}", func: api_fn}
  - {name: files, kind: http.endpoint, meta: {router: api}, method: GET, path: "/files/{rest...}", func: api_fn}
  - {name: echo, kind: http.endpoint, meta: {router: api}, method: POST, path: /echo, func: api_fn}
  - {name: boom, kind: http.endpoint, meta: {router: api}, method: GET, path: /boom, func: api_fn}
  - {name: soft, kind: http.endpoint, meta: {router: api}, method: GET, path: /soft, func: api_fn}
  - {name: silent, kind: http.endpoint, meta: {router: api}, method: GET, path: /silent, func: api_fn}
  - {name: status_first, kind: http.endpoint, meta: {router: api}, method: GET, path: /status-first, func: api_fn}
  - {name: headers, kind: http.endpoint, meta: {router: api}, method: GET, path: /headers, func: api_fn}
  - {name: nap, kind: http.endpoint, meta: {router: api}, method: GET, path: /nap, func: api_fn}
  - {name: spin, kind: http.endpoint, meta: {router: api}, method: GET, path: /spin, func: api_fn}
  - {name: ping, kind: http.endpoint, meta: {router: adm}, method: GET, path: /ping, func: api_fn}
"""

API_LUA = """
local http = require("http")
local json = require("json")
local time = require("time")
local calls = 0          -- module state survives between calls on one state

local function handle()
  local req, res = http.request(), http.response()
  calls = calls + 1
  local p = req:path()
  if p:match("^/v1/items/") then
    return res:write_json({id = req:param("id"), q = req:query("q"), all = req:query_params(),
                           method = req:method(), calls = calls > 0})
  elseif p:match("^/v1/files/") then
    return res:write(p)
  elseif p == "/v1/echo" then
    local body, err = req:body()
    if not body then res:set_status(413) return res:write(tostring(err)) end
    res:set_header("X-Len", tostring(#body))
    res:set_content_type("text/plain")
    return res:write(body)
  elseif p == "/v1/boom" then
    error("handler exploded")
  elseif p == "/v1/soft" then
    return nil, "soft failure"
  elseif p == "/v1/silent" then
    return
  elseif p == "/v1/status-first" then
    res:set_status(201)
    local err = res:set_header("X-Late", "1")
    return res:write_json({late_header_refused = err ~= nil})
  elseif p == "/v1/headers" then
    return res:write_json({ua = req:header("User-Agent"), multi = req:header("X-Multi"),
                           ct = req:content_type(), has_body = req:has_body()})
  elseif p == "/v1/nap" then
    local t0 = time.now()
    local ch = channel.new()
    coroutine.spawn(function() time.sleep("30ms") ch:send("woke") end)
    local got = ch:receive()
    return res:write_json({got = got, waited_ms = time.now():sub(t0):milliseconds(), pid = process.pid()})
  elseif p == "/v1/spin" then
    while true do pcall(function() while true do end end) end
  elseif p == "/ping" then
    return res:write("pong")
  end
end

return { handle = handle }
"""


class HandlerApi(th.TestCase):
    @classmethod
    def setUpClass(cls):
        project = th.make_project({"src/_index.yaml": API_INDEX, "src/api.lua": API_LUA})
        cls.server = th.Server(project)
        cls.gw, cls.admin = cls.server.ports(2)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def test_params_query_and_head(self):
        status, headers, body = th.http(self.gw, "GET", "/v1/items/42?q=a%20b&tag=x&tag=y")
        self.assertEqual(status, 200, body)
        data = json.loads(body)
        self.assertEqual(data["id"], "42")
        self.assertEqual(data["q"], "a b")
        self.assertEqual(data["all"]["tag"], "x,y")
        self.assertEqual(headers["content-type"], "application/json")
        status, headers, body = th.http(self.gw, "HEAD", "/v1/items/7")
        self.assertEqual((status, body), (200, ""))
        self.assertGreater(int(headers["content-length"]), 0)

    def test_rest_pattern(self):
        self.assertEqual(th.http(self.gw, "GET", "/v1/files/a/b/c.txt")[2], "/v1/files/a/b/c.txt")

    def test_body_headers_and_content_type(self):
        status, headers, body = th.http(self.gw, "POST", "/v1/echo", "hello", {"Content-Type": "text/x"})
        self.assertEqual((status, body), (200, "hello"))
        self.assertEqual(headers["x-len"], "5")
        self.assertEqual(headers["content-type"], "text/plain")
        status, _, body = th.http(self.gw, "GET", "/v1/headers", headers={"User-Agent": "t/1", "X-Multi": "a"})
        self.assertEqual(json.loads(body)["ua"], "t/1")

    def test_body_over_the_limit_is_413(self):
        status, _, _ = th.http(self.gw, "POST", "/v1/echo", "x" * 5000)
        self.assertEqual(status, 413)
        self.assertEqual(th.http(self.gw, "POST", "/v1/echo", "ok")[2], "ok")

    def test_errors_become_500_and_the_host_keeps_serving(self):
        status, headers, body = th.http(self.gw, "GET", "/v1/boom")
        self.assertEqual(status, 500)
        self.assertIn("handler exploded", body)
        self.assertIn("api.lua", body)
        status, _, body = th.http(self.gw, "GET", "/v1/soft")
        self.assertEqual((status, body), (500, "soft failure\n"))
        status, _, body = th.http(self.gw, "GET", "/v1/silent")
        self.assertEqual((status, body), (500, "no response sent\n"))
        self.assertEqual(th.http(self.gw, "GET", "/v1/items/1")[0], 200)

    def test_a_handler_may_block_on_timers_and_channels(self):
        status, _, body = th.http(self.gw, "GET", "/v1/nap")
        self.assertEqual(status, 200, body)
        data = json.loads(body)
        self.assertEqual(data["got"], "woke")
        self.assertGreaterEqual(data["waited_ms"], 25)
        self.assertRegex(data["pid"], r"^\{app:api_fn\|0x[0-9a-f]+\}$")

    def test_a_runaway_handler_is_stopped_at_its_deadline(self):
        status, _, body = th.http(self.gw, "GET", "/v1/spin")    # a hang would time out
        self.assertEqual(status, 500)
        self.assertIn("did not finish in time", body)
        self.assertEqual(th.http(self.gw, "GET", "/v1/items/3")[0], 200)

    def test_set_status_commits_headers_but_json_type_is_kept(self):
        status, headers, body = th.http(self.gw, "GET", "/v1/status-first")
        self.assertEqual(status, 201)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertNotIn("x-late", headers)
        self.assertEqual(json.loads(body), {"late_header_refused": True})

    def test_slow_and_idle_clients_are_cut_off(self):
        import socket
        for payload in (b"GET /ping HTTP/1.1\r\nHost: x\r\n",           # headers never finish
                        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"):     # answered, then idle
            s = socket.create_connection(("127.0.0.1", self.admin), timeout=5)   # else recv raises
            s.sendall(payload)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            if payload.endswith(b"\r\n\r\n"):
                self.assertIn(b"pong", data)

    def test_each_service_has_its_own_address_and_routes(self):
        self.assertNotEqual(self.gw, self.admin)
        self.assertEqual(th.http(self.admin, "GET", "/ping")[2], "pong")
        self.assertEqual(th.http(self.admin, "GET", "/v1/items/1")[0], 404)
        self.assertEqual(th.http(self.gw, "GET", "/ping")[0], 404)


class RouteConflicts(th.TestCase):
    def test_conflicting_routes_fail_check_and_run(self):
        index = API_INDEX + '  - {name: dup, kind: http.endpoint, meta: {router: api}, method: GET, path: "/items/:key", func: api_fn}\n'
        project = th.make_project({"src/_index.yaml": index, "src/api.lua": API_LUA})
        r = th.run(["check", project])
        self.assertEqual(r.returncode, 3)
        self.assertRegex(r.stdout, r"src/_index\.yaml:\d+: app:dup: GET /v1/items/:key conflicts with app:show")
        r = th.run(["run", project], timeout=30)
        self.assertEqual(r.returncode, 3)


if __name__ == "__main__":
    th.main()
