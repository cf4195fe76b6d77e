"""HTTP front hardening, through raw sockets against the real binary: a handler failing after
it started a response, slow request heads (slowloris), a huge Content-Length, ambiguous
framing (request smuggling), Expect: 100-continue, too many headers, big buffers given back."""
import re
import socket
import threading
import time

import th

INDEX = """
namespace: app
entries:
  - name: processes
    kind: process.host
    lifecycle: {auto_start: true}
  - name: gw
    kind: http.service
    addr: "127.0.0.1:0"
    max_body: 1KB
    threads: 8
    timeouts: {read: 60s}
    lifecycle: {auto_start: true}
  - {name: r, kind: http.router, meta: {server: gw}}
  - {name: fn, kind: function.lua, source: "file://h.lua", method: handle, modules: [http]}
  - {name: echo, kind: http.endpoint, meta: {router: r}, method: POST, path: /echo, func: fn}
  - {name: key, kind: http.endpoint, meta: {router: r}, method: GET, path: /key, func: fn}
  - {name: ping, kind: http.endpoint, meta: {router: r}, method: GET, path: /ping, func: fn}
  - {name: late, kind: http.endpoint, meta: {router: r}, method: GET, path: /late, func: fn}
  - {name: late_soft, kind: http.endpoint, meta: {router: r}, method: GET, path: /late-soft, func: fn}
  - {name: big, kind: http.endpoint, meta: {router: r}, method: GET, path: /big, func: fn}
"""

LUA = """
local http = require("http")
local chunk = string.rep("x", 1024 * 1024)

local function handle()
  local req, res = http.request(), http.response()
  local p = req:path()
  if p == "/echo" then
    local body, err = req:body()
    if not body then return nil, err end
    return res:write("got:" .. body)
  elseif p == "/key" then
    return res:write("key=" .. tostring(req:header("Idempotency-Key")))
  elseif p == "/ping" then
    return res:write("pong")
  elseif p == "/late" then
    res:set_status(201)
    res:set_header("X-Partial", "1")
    res:write("partial")
    error("late boom")
  elseif p == "/late-soft" then
    res:set_header("X-Partial", "1")
    res:write_json({partial = true})
    return nil, "late soft failure"
  elseif p == "/big" then
    for _ = 1, 12 do res:write(chunk) end
  end
end

return {handle = handle}
"""

HANG = 20        # seconds: only a hang detector


def exchange(port, data, timeout=HANG, then=None):
    """Sends data, reads until the server closes or `timeout` passes with no close.
    Returns (bytes received, whether the server closed the connection)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        if then is not None:          # (expected prefix, more bytes to send once it arrived)
            want, more = then
            while len(out) < len(want):
                c = s.recv(4096)
                if not c:
                    return out, True
                out += c
            s.sendall(more)
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not c:
                return out, True
            out += c
    finally:
        s.close()


def responses(data):
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", data)


class Hardening(th.TestCase):
    @classmethod
    def setUpClass(cls):
        project = th.make_project({"src/_index.yaml": INDEX, "src/h.lua": LUA})
        cls.server = th.Server(project)
        cls.port = cls.server.ports()[0]

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        assert code == 0, (code, cls.server.log())

    def head(self, lines, body=b""):
        return b"\r\n".join([b"POST /echo HTTP/1.1", b"Host: x"] + lines) + b"\r\n\r\n" + body

    # 1. a handler that fails after starting its response
    def test_failure_after_set_status_and_write_is_500_and_logged(self):
        status, headers, body = th.http(self.port, "GET", "/late")
        self.assertEqual(status, 500, body)
        self.assertIn("late boom", body)
        self.assertNotIn("partial", body)
        self.assertNotIn("x-partial", headers)
        self.server.wait_for(r"WARN .*GET /late: handler failed: .*late boom")
        status, headers, body = th.http(self.port, "GET", "/late-soft")
        self.assertEqual((status, body), (500, "late soft failure\n"))
        self.assertNotIn("x-partial", headers)
        self.server.wait_for(r"WARN .*GET /late-soft: handler failed: late soft failure")

    # 2. slowloris
    def test_normal_client_served_while_slow_heads_hold_more_than_all_threads(self):
        import http.client
        stop = threading.Event()
        busy = {"ok": 0, "errors": [], "stalled": 0}

        # One busy keep-alive connection: the gate never cuts it. The server may cut a
        # connection whose thread waited GRACE_MS (0.5 s) for its next head; that wait lies
        # between two of the client's sends, so a cut after a send less than 0.45 s after the
        # previous one is a finding, and one after a longer gap (this client thread starved on
        # a loaded machine, so it was idle) is counted and the client reconnects.
        # A fresh connection's wait starts at accept: it is connected first and `last` taken
        # then, so a client thread starved between connect and its first send is not a finding.
        def connect():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HANG)
            conn.connect()
            return conn, time.monotonic()

        def keep_alive_client():
            c, last = connect()
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    c.request("GET", "/ping")
                    r = c.getresponse()
                    if (r.status, r.read()) == (200, b"pong"):
                        busy["ok"] += 1
                    else:
                        busy["errors"].append(r.status)
                except Exception as e:  # noqa: BLE001 - any failure is the finding
                    if sent - last < 0.45:
                        busy["errors"].append(f"{e!r} {sent - last:.3f} s after the previous send")
                        break
                    busy["stalled"] += 1
                    c.close()
                    c, sent = connect()
                last = sent
            c.close()

        k = threading.Thread(target=keep_alive_client, daemon=True)
        k.start()
        socks = []
        for _ in range(24):                        # threads: 8
            s = socket.create_connection(("127.0.0.1", self.port), timeout=HANG)
            s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)

        def trickle():
            while not stop.wait(0.5):
                for s in socks:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        try:
            time.sleep(1.0)                        # the slow heads have every thread now
            status, _, body = th.http(self.port, "GET", "/ping", timeout=HANG)
            self.assertEqual((status, body), (200, "pong"))
            time.sleep(1.0)                        # cuts happen meanwhile
        finally:
            stop.set()
            t.join(timeout=5)
            k.join(timeout=HANG)
            for s in socks:
                s.close()
        self.assertEqual(busy["errors"], [])
        self.assertGreater(busy["ok"], 0)
        self.server.wait_for(r"all threads busy; closed \d+ connections slow to send a request")

    # 3. a body announced over max_body that never comes
    def test_huge_content_length_gets_413_and_the_connection_closes(self):
        data, closed = exchange(self.port, self.head([b"Content-Length: 10000000000"], b"abc"))
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data)
        self.assertIn(b"Connection: close", data)
        self.assertTrue(closed, "the connection stayed open")
        req = self.head([b"Content-Length: 10000000000"], b"abc").replace(b"/echo", b"/nope")
        data, closed = exchange(self.port, req)          # answered before routing reads it
        self.assertTrue(data.startswith(b"HTTP/1.1 404 "), data)
        self.assertTrue(closed, "the connection stayed open")

    # 4. ambiguous framing (RFC 9112 6.3)
    def test_ambiguous_framing_is_400_and_closes(self):
        cases = {
            "duplicate Content-Length": [b"Content-Length: 3", b"Content-Length: 3"],
            "conflicting Content-Length": [b"Content-Length: 3", b"Content-Length: 30"],
            "Content-Length list": [b"Content-Length: 3, 3"],
            "Content-Length with Transfer-Encoding": [b"Content-Length: 3", b"Transfer-Encoding: chunked"],
            "two Transfer-Encodings": [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
        }
        for name, lines in cases.items():
            data, closed = exchange(self.port, self.head(lines, b"abc"))
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), (name, data))
            self.assertEqual(responses(data), [b"400"], (name, data))
            self.assertTrue(closed, name)
        for te in (b"gzip", b"gzip, chunked", b"identity"):      # civetweb refuses these itself
            data, closed = exchange(self.port, self.head([b"Transfer-Encoding: " + te], b"abc"))
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), (te, data))
            self.assertTrue(closed, te)

    def test_a_smuggled_request_is_not_served(self):
        smuggled = b"GET /key HTTP/1.1\r\nHost: x\r\nIdempotency-Key: smuggled\r\n\r\n"
        for lines, body in (
                ([b"Content-Length: 4", b"Transfer-Encoding: chunked"], b"0\r\n\r\n" + smuggled),
                ([b"Transfer-Encoding: chunked", b"Content-Length: 68"], b"0\r\n\r\n" + smuggled),
                ([b"Content-Length: 0", b"Content-Length: 68"], smuggled)):
            data, closed = exchange(self.port, self.head(lines, body))
            self.assertEqual(responses(data), [b"400"], data)
            self.assertNotIn(b"smuggled", data)
            self.assertTrue(closed)
        # the same bytes, honestly framed, are two requests
        honest = self.head([b"Content-Length: 3"], b"abc") + smuggled.replace(b"Host: x", b"Host: x\r\nConnection: close")
        data, closed = exchange(self.port, honest)
        self.assertEqual(responses(data), [b"200", b"200"], data)
        self.assertIn(b"key=smuggled", data)

    # 5. Expect: 100-continue
    def test_expect_100_continue_is_answered_before_the_body(self):
        head = self.head([b"Content-Length: 3", b"Expect: 100-continue", b"Connection: close"])
        data, closed = exchange(self.port, head, then=(b"HTTP/1.1 100 Continue\r\n\r\n", b"abc"))
        self.assertTrue(data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), data)
        self.assertTrue(data.endswith(b"got:abc"), data)
        self.assertTrue(closed)
        # answered without reading the body (unknown path): no 100, and the connection closes
        # at once instead of waiting for a body the client holds back
        head = head.replace(b"/echo", b"/nope").replace(b"Connection: close\r\n", b"")
        data, closed = exchange(self.port, head)
        self.assertTrue(data.startswith(b"HTTP/1.1 404 "), data)
        self.assertTrue(closed, "the connection stayed open")

    # 6. headers past civetweb's limit
    def test_too_many_headers_is_431_not_served_with_headers_missing(self):
        many = [b"X-H%d: v" % i for i in range(70)] + [b"Idempotency-Key: k1"]
        req = b"\r\n".join([b"GET /key HTTP/1.1", b"Host: x"] + many) + b"\r\n\r\n"
        data, closed = exchange(self.port, req)
        self.assertTrue(data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), data)
        self.assertIn(b"63", data.split(b"\r\n\r\n", 1)[1])
        self.assertTrue(closed)
        fits = [b"X-H%d: v" % i for i in range(60)] + [b"Idempotency-Key: k1", b"Connection: close"]
        req = b"\r\n".join([b"GET /key HTTP/1.1", b"Host: x"] + fits) + b"\r\n\r\n"   # 63 headers
        data, _ = exchange(self.port, req)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertTrue(data.endswith(b"key=k1"), data)

    # 7. memory given back
    @th.unittest.skipIf(b"__asan_init" in open(th.BIN, "rb").read(),
                        "ASan's allocator holds freed memory in quarantine")
    def test_a_big_response_buffer_is_freed_after_the_request(self):
        def rss_kb():
            with open(f"/proc/{self.server.p.pid}/status") as f:
                return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
        for _ in range(8):                         # every thread has served something small
            th.http(self.port, "GET", "/ping")
        before = rss_kb()
        status, _, body = th.http(self.port, "GET", "/big", timeout=HANG)
        self.assertEqual((status, len(body)), (200, 12 << 20))
        grown = rss_kb() - before
        self.assertLess(grown, 8 << 10, f"RSS grew by {grown} kB and stayed")


if __name__ == "__main__":
    th.main()
