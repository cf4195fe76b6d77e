"""http_client, the core (issue 12): a process and an HTTP handler call the host's own
http.service through require("http_client"); a refused connection is UNAVAILABLE, a server
that answers too late is TIMEOUT. The broad suite is test_http_client*.py."""
import socket
import threading

import th
from httpd_misbehave import refused_port


free_port = refused_port     # a port nothing listens on (bound, then closed)


# app:echo answers with what it got; app:slow sleeps first; app:relay fetches /api/echo
# through http_client from inside a handler.
SERVICE = """
- name: gateway
  kind: http.service
  addr: "127.0.0.1:{port}"
  lifecycle: {{auto_start: true}}
- name: api
  kind: http.router
  meta: {{server: app:gateway}}
  prefix: /api
- name: echo
  kind: function.lua
  source: file://echo.lua
  method: handler
  modules: [http]
- name: slow
  kind: function.lua
  source: file://echo.lua
  method: slow
  modules: [http, time]
- name: relay
  kind: function.lua
  source: file://echo.lua
  method: relay
  modules: [http, http_client]
{endpoints}
"""

ENDPOINT = """- name: {name}.{method}
  kind: http.endpoint
  meta: {{router: app:api}}
  method: {method}
  path: /{name}
  func: app:{name}
"""

ECHO = """
local http = require("http")
local function handler()
  local req, res = http.request(), http.response()
  res:set_header("X-Seen-Method", req:method())
  res:set_header("X-Seen-Query", req:query("q") or "")
  res:set_header("X-Seen-Header", req:header("X-Test") or "")
  res:set_header("X-Seen-Type", req:content_type() or "")
  res:set_status(201)
  return res:write(req:body() or "")
end
local function slow()
  require("time").sleep("3s")
  return http.response():write("late")
end
local function relay()
  local hc = require("http_client")
  local r, err = hc.get("http://127.0.0.1:" .. http.request():query("port") .. "/api/echo?q=relayed")
  if not r then return nil, err end
  return http.response():write("relayed " .. r.status_code .. " " .. r.headers["x-seen-query"])
end
return {handler = handler, slow = slow, relay = relay}
"""

MAIN = """
local hc = require("http_client")
local function main(port)
  local base = "http://127.0.0.1:" .. port .. "/api"
  local r, err = hc.get(base .. "/echo", {query = {q = "a b&c"}, headers = {["X-Test"] = "yes"}})
  assert(r, tostring(err))
  print("get", r.status_code, r.headers["x-seen-method"], r.headers["x-seen-query"],
        r.headers["x-seen-header"], r.body_size, r.url)
  r = assert(hc.post(base .. "/echo", {body = "hello body", headers = {["Content-Type"] = "text/plain"}}))
  print("post", r.status_code, r.body, r.headers["x-seen-type"])
  r = assert(hc.request("PUT", base .. "/echo", {form = {b = "2", a = "x y"}}))
  print("put", r.status_code, r.body, r.headers["x-seen-type"])
  r = assert(hc.head(base .. "/echo"))
  print("head", r.status_code, r.body_size)
  local refused = "http://127.0.0.1:" .. hc_refused_port .. "/"
  local nr, e = hc.get(refused, {timeout = 5})
  print("refused", nr, e:kind(), e:retryable())
  local t0 = os.clock()
  nr, e = hc.get(base .. "/slow", {timeout = "300ms"})
  print("timeout", nr, e:kind(), e:retryable())
  local rs, es = hc.request_batch({
    {"GET", base .. "/echo?q=one"}, {"GET", refused}, {"POST", base .. "/echo", {body = "three"}}})
  print("batch", #rs, rs[1] and rs[1].headers["x-seen-query"], rs[2], es[2] and es[2]:kind(),
        rs[3] and rs[3].body, es[1], es[3])
  r = assert(hc.get(base .. "/relay?port=" .. port))
  print("relay", r.status_code, r.body)
  print("uri", hc.encode_uri("a b/ü"), hc.decode_uri("a%20b+c%2F"))
  local time = require("time")
  local f = hc.async("GET", base .. "/slow", {timeout = "10s"})
  local s = channel.select{f:channel():case_receive(), time.after("200ms"):case_receive()}
  print("future_lost", s.channel == f:channel(), f:is_complete(), f:cancel(),
        select(2, f:result()):kind(), f:cancel())
  local g = hc.async("GET", base .. "/echo?q=fut")
  s = channel.select{g:channel():case_receive(), time.after("10s"):case_receive()}
  print("future_won", s.channel == g:channel(), s.value.headers["x-seen-query"],
        g:result().status_code, g:is_complete())
  return 0
end
return {main = main}
"""


class HttpClientCore(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        refused = free_port()          # nothing listens there (closed above)
        endpoints = "".join(ENDPOINT.format(name=n, method=m) for n, m in
                            [("echo", "GET"), ("echo", "POST"), ("echo", "PUT"),
                             ("slow", "GET"), ("relay", "GET")])
        extra = SERVICE.format(port=cls.port, endpoints=endpoints)
        main = MAIN.replace("hc_refused_port", str(refused))
        cls.project = th.script_project(main, extra_entries=extra,
                                        extra_files={"src/echo.lua": ECHO},
                                        modules="[http_client, io, time]")
        cls.res = th.run(["run", cls.project, "-x", "app:main", str(cls.port)], timeout=60)
        cls.lines = {}
        for line in cls.res.stderr.splitlines():
            parts = line.split("INFO  ", 1)
            if len(parts) == 2:
                fields = parts[1].split("\\t")      # the console log writes a tab as \t
                cls.lines[fields[0]] = fields[1:]

    def line(self, name):
        self.assertIn(name, self.lines, self.res.stderr)
        return self.lines[name]

    def test_exits_cleanly(self):
        self.assertEqual(self.res.returncode, 0, self.res.stderr)

    def test_get_sends_query_and_headers(self):
        self.assertEqual(self.line("get"), ["201", "GET", "a b&c", "yes", "0",
                                            f"http://127.0.0.1:{self.port}/api/echo?q=a%20b%26c"])

    def test_post_body_and_form(self):
        self.assertEqual(self.line("post"), ["201", "hello body", "text/plain"])
        self.assertEqual(self.line("put"), ["201", "a=x%20y&b=2", "application/x-www-form-urlencoded"])

    def test_head_has_no_body(self):
        self.assertEqual(self.line("head"), ["201", "0"])

    def test_refused_is_unavailable_and_retryable(self):
        self.assertEqual(self.line("refused"), ["nil", "UNAVAILABLE", "true"])

    def test_timeout(self):
        self.assertEqual(self.line("timeout"), ["nil", "TIMEOUT", "true"])

    def test_batch_keeps_item_order_with_partial_failure(self):
        self.assertEqual(self.line("batch"), ["3", "one", "nil", "UNAVAILABLE", "three", "nil", "nil"])

    def test_handler_can_call_http_client(self):
        self.assertEqual(self.line("relay"), ["200", "relayed 201 relayed"])

    def test_futures_race_time_after_and_cancel(self):
        self.assertEqual(self.line("future_lost"), ["false", "false", "true", "CANCELED", "false"])
        self.assertEqual(self.line("future_won"), ["true", "fut", "201", "true"])

    def test_encode_decode_uri(self):
        self.assertEqual(self.line("uri"), ["a%20b%2F%C3%BC", "a b c/"])


class SilentServer:
    """Accepts connections, reads the request, never answers; records when the client
    closes its side (recv returns b'')."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.got_request = threading.Event()
        self.closed = threading.Event()
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        self.sock.settimeout(30)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(30)
        with conn:
            try:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        self.closed.set()
                        return
                    if b"\r\n\r\n" in data:
                        self.got_request.set()
            except OSError:
                self.closed.set()

    def stop(self):
        self.sock.close()


WAITER = """
local hc = require("http_client")
local function child(port)
  hc.get("http://127.0.0.1:" .. port .. "/", {timeout = "60s"})
  print("child got an answer")
end
local function main(port)
  local pid = process.spawn("app:child", "app:processes", port)
  local line = require("io").readline()           -- the test says when the request arrived
  process.terminate(pid)
  print("terminated", line)
  require("io").readline()                         -- and when the server saw the close
  return 0
end
return {main = main, child = child}
"""


HAMMER = """
local hc = require("http_client")
local time = require("time")
local function child(port)
  for i = 1, 50 do
    coroutine.spawn(function()
      while true do
        if i % 2 == 0 then hc.get("http://127.0.0.1:" .. port .. "/")
        else hc.request_batch({{"GET", "http://127.0.0.1:" .. port .. "/"}, {"GET", "http://127.0.0.1:" .. port .. "/"}}) end
      end
    end)
  end
  hc.async("GET", "http://127.0.0.1:" .. port .. "/")
  time.sleep("60s")
end
local function main(port)
  for round = 1, 4 do
    local pid = process.spawn("app:child", "app:processes", port)
    time.sleep("150ms")
    process.terminate(pid)
  end
  time.sleep("100ms")
  print("rounds done")
  return 0
end
return {main = main, child = child}
"""


class TerminateRacesCompletions(th.TestCase):
    """Terminating a process while hundreds of its requests complete: every request is freed
    exactly once (the sanitizer build fails the run otherwise) and the host stays up."""

    def test_terminate_mid_traffic(self):
        import http.server

        class Quick(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quick)
        srv.daemon_threads = True
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        extra = """
- name: child
  kind: process.lua
  source: file://main.lua
  method: child
  modules: [http_client, time]
"""
        project = th.script_project(HAMMER, extra_entries=extra, modules="[http_client, time]")
        try:
            res = th.run(["run", project, "-x", "app:main", str(srv.server_address[1])], timeout=90)
        finally:
            srv.shutdown()
            srv.server_close()
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("rounds done", res.stderr)


class CancelReachesTheWire(th.TestCase):
    def test_terminate_closes_the_connection(self):
        srv = SilentServer()
        extra = """
- name: child
  kind: process.lua
  source: file://main.lua
  method: child
  modules: [http_client]
"""
        project = th.script_project(WAITER, extra_entries=extra, modules="[http_client, io]")
        import subprocess
        p = subprocess.Popen([th.BIN, "run", project, "-x", "app:main", str(srv.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.assertTrue(srv.got_request.wait(20), "the request never arrived")
            p.stdin.write("go\n")
            p.stdin.flush()
            self.assertTrue(srv.closed.wait(20), "the connection stayed open after terminate")
            p.stdin.write("done\n")
            p.stdin.flush()
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
            srv.stop()
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("terminated\tgo", err.replace("\\t", "\t"))
        self.assertNotIn("child got an answer", err)

    def test_handler_deadline_closes_the_connection(self):
        srv = SilentServer()
        port = free_port()
        index = f"""
version: "1.0"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:{port}"
    timeouts: {{write: "1s"}}
    lifecycle: {{auto_start: true}}
  - name: api
    kind: http.router
    meta: {{server: app:gateway}}
  - name: fetch
    kind: function.lua
    source: file://fetch.lua
    method: handler
    modules: [http, http_client]
  - name: fetch.ep
    kind: http.endpoint
    meta: {{router: app:api}}
    method: GET
    path: /fetch
    func: app:fetch
"""
        fetch = """
local function handler()
  -- the call's 1 s deadline bounds the 60 s timeout; either way the transfer ends then
  local r, err = require("http_client").get("http://127.0.0.1:%d/", {timeout = "60s"})
  if not r then return nil, err end
  return require("http").response():write("answered")
end
return {handler = handler}
""" % srv.port
        server = th.Server(th.make_project({"src/_index.yaml": index, "src/fetch.lua": fetch}))
        try:
            server.ports()
            status, _, body = th.http(port, "GET", "/fetch", timeout=20)
            self.assertEqual(status, 500, body)
            self.assertTrue(srv.closed.wait(20), "the connection stayed open after the deadline")
        finally:
            server.stop()
            srv.stop()


if __name__ == "__main__":
    th.main()
