"""http_client on the wire: HTTP/2 over TLS against a real nginx (negotiated by ALPN, requests
multiplexed on one connection), and host shutdown aborting the transfers in flight.

nginx (Debian's nginx-light, installed by scripts/setup) runs from a temp dir on 127.0.0.1 at
a port the test picks, logs each request's protocol and connection number, and is stopped by
its PID."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import th
from httpd_lua import lua, tmpdir
from httpd_misbehave import Server, make_certs, refused_port

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  log_format wire '$server_protocol $connection $request_uri';
  access_log {d}/access.log wire;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ return 200 "h2 ok $request_uri\\n"; }}
  }}
}}
"""


class Nginx:
    def __init__(self):
        self.d = tmpdir()
        self.certs = make_certs(self.d)
        self.port = refused_port()              # free until nginx binds it
        conf = os.path.join(self.d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=self.d, port=self.port, cert=self.certs["good.pem"],
                                      key=self.certs["good.key"]))
        self.p = subprocess.Popen(["nginx", "-p", self.d, "-c", conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError("nginx did not start: " + self.p.stderr.read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("nginx did not listen within 15 s")

    def log(self, n):
        """The access log's lines (protocol, connection, uri), once n are written (bounded)."""
        path = os.path.join(self.d, "access.log")
        deadline = time.monotonic() + 5            # nginx writes a line after its response
        lines = []
        while time.monotonic() < deadline:
            with open(path) as f:
                lines = [ln.split() for ln in f.read().splitlines() if ln.strip()]
            if len(lines) >= n:
                break
            time.sleep(0.05)
        return lines

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Http2(th.TestCase):
    def setUp(self):
        self.nginx = Nginx()

    def tearDown(self):
        self.nginx.stop()

    def test_https_negotiates_h2_and_multiplexes_on_one_connection(self):
        out = lua(self, """
            local tls = {ca = C.ca}
            local first, err = http_client.get(C.url .. "/first", {tls = tls})
            if not first then return {err = err:message()} end
            local done, results = channel.new(C.n), {}
            for i = 1, C.n do
              coroutine.spawn(function()
                local res, e = http_client.get(C.url .. "/r" .. i, {tls = tls})
                done:send({i = i, status = res and res.status_code, body = res and res.body,
                           err = e and e:message()})
              end)
            end
            for _ = 1, C.n do local r = done:receive(); results[r.i] = r end
            return {first = first.body, results = results}
        """, {"url": f"https://127.0.0.1:{self.nginx.port}", "ca": self.nginx.certs["ca.pem"],
              "n": 16})
        self.assertEqual(out.get("first"), "h2 ok /first\n", out)
        for i, r in enumerate(out["results"], 1):
            self.assertEqual((r.get("status"), r.get("body"), r.get("err")),
                             (200, f"h2 ok /r{i}\n", None), r)
        log = self.nginx.log(17)
        self.assertEqual(len(log), 17, log)
        self.assertEqual({ln[0] for ln in log}, {"HTTP/2.0"}, log)
        # the 16 concurrent requests came after the first one's connection was up: they share it
        self.assertEqual(len({ln[1] for ln in log}), 1, log)


SHUTDOWN_MAIN = """
local io = require("io")
local http_client = require("http_client")
return {main = function(url)
  for i = 1, 3 do
    coroutine.spawn(function() http_client.get(url .. "?tag=shutdown" .. i, {timeout = "60s"}) end)
  end
  io.print("started")
  local res, err = http_client.get(url .. "?tag=shutdown0", {timeout = "60s"})
  io.print("main ended: " .. tostring(err))
  return 0
end}
"""


class Shutdown(th.TestCase):
    def test_sigterm_aborts_every_transfer_in_flight_and_the_host_exits(self):
        with Server() as srv:
            project = th.script_project(SHUTDOWN_MAIN, modules="[io, http_client]")
            # shutdown asks the process to stop (it is waiting on its requests and does not
            # listen), then after the terminal host's stop_timeout terminates it: that ends its
            # transfers at once, rather than at their 60 s timeout
            p = subprocess.Popen([th.BIN, "run", project, "-o", "app:terminal:lifecycle.stop_timeout=1s",
                                  "-x", "app:main", srv.url("/hang")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                for i in range(4):
                    self.assertTrue(srv.wait_event("start", f"shutdown{i}"), i)
                p.send_signal(signal.SIGTERM)
                for i in range(4):                         # each connection closed by the client
                    self.assertTrue(srv.wait_event("closed", f"shutdown{i}", timeout=15), i)
                out, err = p.communicate(timeout=30)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
            self.assertIn("started", out)
            self.assertEqual(p.returncode, 130, err)             # interrupted
            self.assertRegex(err, r"received SIGTERM(.|\n)*did not stop; terminating them")
            self.assertNotIn("AddressSanitizer", err)


if __name__ == "__main__":
    th.main()
