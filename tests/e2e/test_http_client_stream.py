"""http_client streaming responses (stream = true: res.stream:read([n]) / :close()) and TLS
options given as PEM text, through the real binary against httpd_misbehave.py servers."""
import json
import subprocess
import textwrap
import time
import urllib.parse

import th
from httpd_lua import EPILOGUE, MODULES, PRELUDE, lua, read, tmpdir
from httpd_misbehave import Server, make_certs, pattern_bytes
from test_http_client import CONTEXTS_INDEX

MB = 1024 * 1024

# Reads res.stream to its end in pieces of at most N bytes: {len, sum, pieces, err, max}.
DRAIN = """
local function drain(s, n)
  local o = {len = 0, sum = 0, pieces = 0, max = 0}
  while true do
    local c, err = s:read(n)
    if c == nil then o.err = E(err) break end
    o.pieces = o.pieces + 1
    o.len = o.len + #c
    if #c > o.max then o.max = #c end
    for i = 1, #c, 4096 do
      local j = math.min(i + 4095, #c)
      local bs = {c:byte(i, j)}
      for k = 1, #bs do o.sum = (o.sum * 31 + bs[k]) % 4294967296 end
    end
  end
  return o
end
"""


def checksum(data):
    s = 0
    for b in data:
        s = (s * 31 + b) % 4294967296
    return s


def chunked_body(n, size):
    return pattern_bytes(size) * n


class WithServer(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def cfg(self, **kw):
        c = {"base": self.srv.url(""), "echo": self.srv.url("/echo")}
        c.update(kw)
        return c


class Stream(WithServer):
    def test_head_fields_then_pieces_to_the_end(self):
        out = lua(self, DRAIN + """
            local res, err = http_client.get(C.base .. "/big?size=100000", {stream = true})
            local head = {status = res.status_code, body = res.body, size = res.body_size,
                          ctype = res.headers["content-type"], url = res.url}
            local d = drain(res.stream, 1000)
            local after = {res.stream:read()}
            local batch, berr = http_client.request_batch({{"GET", C.echo, {stream = true}}})
            local moved = http_client.get(C.base .. "/redirect?n=2", {stream = true})
            local first = ""
            repeat local c = moved.stream:read() first = first .. (c or "") until not c
            local f = http_client.async("GET", C.echo, {stream = true})
            return {head = head, d = d, after_n = #after, batch_err = E(berr[1]),
                    moved = {status = moved.status_code, url = moved.url, first = first},
                    async_err = E(select(2, f:result()))}
        """, self.cfg())
        self.assertEqual(out["moved"]["status"], 200, out)       # the head after the redirects
        self.assertEqual(out["moved"]["url"], self.srv.url("/redirect?n=0"))
        self.assertEqual(json.loads(out["moved"]["first"])["path"], "/redirect")  # no "moved" body
        self.assertEqual(out["async_err"]["kind"], "INVALID", out)   # refused in a future
        self.assertEqual(out["head"]["status"], 200, out)
        self.assertIsNone(out["head"].get("body"), out)
        self.assertEqual(out["head"]["size"], 100000)
        self.assertEqual(out["head"]["url"], self.srv.url("/big?size=100000"))
        self.assertEqual(out["d"]["len"], 100000)
        self.assertEqual(out["d"]["max"], 1000)           # at most n bytes a read
        self.assertEqual(out["d"]["sum"], checksum(pattern_bytes(100000)))
        self.assertIsNone(out["d"].get("err"), out)        # nil, no error: the end
        self.assertEqual(out["after_n"], 0)
        self.assertEqual(out["batch_err"]["kind"], "INVALID", out)   # refused in a batch

    def test_ten_megabytes_chunked_in_bounded_memory(self):
        n, size = 160, 65536
        main = (PRELUDE + DRAIN + "local function run(C)\n" + textwrap.dedent("""
            local res, err = http_client.get(C.base .. "/chunked?n=%d&size=%d", {stream = true})
            if not res then return {err = E(err)} end
            return drain(res.stream, 50000)
        """ % (n, size)) + "\nend\n" + EPILOGUE)
        project = th.script_project(main, modules=MODULES)
        p = subprocess.Popen([th.BIN, "run", project, "-x", "app:main", json.dumps(self.cfg())],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        peak, deadline, sanitized = 0, time.monotonic() + 120, False   # a hang detector only
        while p.poll() is None and time.monotonic() < deadline:
            try:
                if not sanitized:  # ASan keeps freed memory in quarantine: RSS says nothing there
                    sanitized = "libasan" in read(f"/proc/{p.pid}/maps")
                for line in read(f"/proc/{p.pid}/status").splitlines():
                    if line.startswith("VmRSS:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        if p.poll() is None:
            p.kill()
        stdout, stderr = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, stderr)
        out = json.loads([ln for ln in stdout.decode().splitlines() if ln.startswith("{")][-1])
        body = chunked_body(n, size)
        self.assertEqual(out["len"], len(body), out)
        self.assertEqual(out["sum"], checksum(body))
        self.assertLessEqual(out["max"], 50000)
        self.assertGreater(out["pieces"], 1)
        print(f"10 MB stream: peak VmRSS {peak / MB:.1f} MiB", flush=True)
        if not sanitized:
            self.assertLess(peak, 64 * MB, f"peak VmRSS {peak / MB:.1f} MiB")

    def test_a_slow_reader_stalls_the_server(self):
        out = lua(self, """
            local res = http_client.get(C.base .. "/flood?size=268435456&tag=slow", {stream = true})
            local c = res.stream:read(65536)
            time.sleep("1500ms")                      -- nothing read meanwhile
            local got = #c
            res.stream:close()
            return {got = got}
        """, self.cfg())
        self.assertGreater(out["got"], 0)
        self.assertTrue(self.srv.wait_event("closed", "slow"), "the server saw no close")
        written = self.srv.events.written.get("slow", 0)
        print(f"slow reader: the server's sends took {written} bytes", flush=True)
        # window (256 KiB) + the kernels' socket buffers, far below the 256 MiB it would send
        self.assertLess(written, 32 * MB, written)

    def test_a_reset_mid_body_is_an_error_on_read(self):
        out = lua(self, DRAIN + """
            local res, err = http_client.get(C.base .. "/reset?size=1000000&part=20000", {stream = true})
            return {status = res and res.status_code, err = E(err), d = res and drain(res.stream)}
        """, self.cfg())
        self.assertEqual(out["status"], 200, out)
        self.assertLessEqual(out["d"]["len"], 20000)
        self.assertEqual(out["d"]["err"]["kind"], "UNAVAILABLE", out)

    def test_close_mid_body_closes_the_connection(self):
        out = lua(self, """
            local res = http_client.get(C.base .. "/flood?size=268435456&tag=close", {stream = true})
            local c = res.stream:read()
            res.stream:close()
            local c2, err = res.stream:read()
            return {first = #c, second = c2, err = E(err)}
        """, self.cfg())
        self.assertGreater(out["first"], 0)
        self.assertIsNone(out.get("second"))
        self.assertEqual(out["err"]["kind"], "CANCELED", out)
        self.assertTrue(self.srv.wait_event("closed", "close"), "the server saw no close")

    def test_a_process_that_exits_mid_stream_frees_it(self):
        main = """
local hc = require("http_client")
local function child(url)
  local res = hc.get(url, {stream = true})
  res.stream:read()
  return 0                                        -- exits with its stream open
end
local function main(url)
  process.spawn("app:child", "app:processes", url)
  require("io").readline()                        -- the test says when the server saw the close
  return 0
end
return {main = main, child = child}
"""
        extra = """
- name: child
  kind: process.lua
  source: file://main.lua
  method: child
  modules: [http_client]
"""
        project = th.script_project(main, extra_entries=extra, modules="[io, process, http_client]")
        p = subprocess.Popen([th.BIN, "run", project, "-x", "app:main",
                              self.srv.url("/flood?size=268435456&tag=exit")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            closed = self.srv.wait_event("closed", "exit", timeout=30)
            p.stdin.write(b"go\n")
            p.stdin.flush()
            _, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertTrue(closed, "the server saw no close while the host ran")
        self.assertEqual(p.returncode, 0, err)

    def test_timeout_bounds_the_head_and_each_read_wait(self):
        out = lua(self, """
            local h1, e1 = http_client.get(C.base .. "/hang?tag=head", {stream = true, timeout = "300ms"})
            local res = http_client.get(C.base .. "/flood?size=1000000&stall=5000&tag=stall", {stream = true, timeout = 0.3})
            local got, c, err = 0, nil, nil
            repeat c, err = res.stream:read() got = got + (c and #c or 0) until not c
            local again, err2 = res.stream:read()
            res.stream:close()
            return {head = R(h1, e1), got = got, err = E(err), err2 = E(err2)}
        """, self.cfg())
        self.assertEqual(out["head"]["err"]["kind"], "TIMEOUT", out)
        self.assertTrue(self.srv.wait_event("closed", "head"), "the server saw no close")
        self.assertEqual(out["got"], 5000, out)
        self.assertEqual(out["err"]["kind"], "TIMEOUT", out)
        self.assertEqual(out["err2"]["kind"], "TIMEOUT", out)   # the stream stays open
        self.assertTrue(self.srv.wait_event("closed", "stall"), "the server saw no close")

# A 1 MB body (four windows) read through res.stream: {status, len, sum}.
STREAM_SUM = """
local function stream_sum(url)
  local res, err = http_client.get(url, {stream = true})
  if not res then return {err = tostring(err)} end
  local o = {status = res.status_code, len = 0, sum = 0}
  while true do
    local c = res.stream:read(100000)
    if not c then break end
    for i = (-o.len) % 997 + 1, #c, 997 do o.sum = (o.sum * 31 + c:byte(i)) % 4294967296 end
    o.len = o.len + #c                      -- every 997th byte of the body is in the sum
  end
  return o
end
"""


def sampled_sum(data):
    return checksum(data[::997])


class Contexts(WithServer):
    def test_a_stream_read_in_an_http_handler_and_in_a_job_consumer(self):
        fetch = """
local http = require("http")
local http_client = require("http_client")
""" + STREAM_SUM + """
local function handler()
  local req, w = http.request(), http.response()
  w:write_json(stream_sum(req:query("url")))
end
return {handler = handler}
"""
        work = """
local http_client = require("http_client")
""" + STREAM_SUM + """
return {run = function(job) return stream_sum(job.url) end}
"""
        project = th.make_project({"src/_index.yaml": CONTEXTS_INDEX, "src/fetch.lua": fetch,
                                   "src/work.lua": work})
        url = self.srv.url("/big?size=1000000")
        want = {"status": 200, "len": 1000000, "sum": sampled_sum(pattern_bytes(1000000))}
        host = th.Server(project)
        try:
            port = host.ports()[0]
            status, _, body = th.http(port, "GET", "/fetch?" + urllib.parse.urlencode({"url": url}),
                                      timeout=30)
            self.assertEqual((status, json.loads(body)), (200, want), body)
            status, _, body = th.http(port, "POST", "/jobs", json.dumps({"url": url}))
            self.assertEqual(status, 202, body)
            jid = json.loads(body)["id"]
            deadline, info = time.monotonic() + 30, {}
            while time.monotonic() < deadline:
                info = json.loads(th.http(port, "GET", f"/jobs/{jid}")[2])
                if info["state"] in ("done", "failed"):
                    break
                time.sleep(0.05)
            self.assertEqual(info["state"], "done", info)
            result = json.loads(th.http(port, "GET", f"/jobs/{jid}/result")[2])
            self.assertEqual(result.get("result", result), want, result)
        finally:
            code = host.stop()
        self.assertEqual(code, 0, host.log())


class TlsPem(th.TestCase):
    """tls.ca / tls.cert / tls.key as PEM text (a string containing "-----BEGIN")."""

    @classmethod
    def setUpClass(cls):
        cls.certs = make_certs(tmpdir())
        c = cls.certs
        cls.good = Server(certfile=c["good.pem"], keyfile=c["good.key"])
        cls.mutual = Server(certfile=c["good.pem"], keyfile=c["good.key"], client_ca=c["ca.pem"])

    @classmethod
    def tearDownClass(cls):
        cls.good.stop()
        cls.mutual.stop()

    def test_ca_cert_and_key_as_text(self):
        c = self.certs
        out = lua(self, """
            return {
              ca = R(http_client.get(C.good, {tls = {ca = C.ca}})),
              mutual = R(http_client.get(C.mutual, {tls = {ca = C.ca, cert = C.cert, key = C.key}})),
              without = R(http_client.get(C.mutual, {tls = {ca = C.ca}})),
              bad = R(http_client.get(C.good, {tls = {ca = "-----BEGIN CERTIFICATE-----\\nnope\\n"}})),
            }
        """, {"good": self.good.url("/echo"), "mutual": self.mutual.url("/echo"),
              "ca": read(c["ca.pem"]), "cert": read(c["good.pem"]), "key": read(c["good.key"])})
        self.assertIsNone(out["ca"].get("err"), out["ca"])
        self.assertEqual(out["ca"]["status_code"], 200)
        self.assertIsNone(out["mutual"].get("err"), out["mutual"])
        self.assertEqual(out["mutual"]["status_code"], 200)
        self.assertIsNotNone(out["without"].get("err"), out["without"])
        self.assertIsNotNone(out["bad"].get("err"), out["bad"])


if __name__ == "__main__":
    th.main()
