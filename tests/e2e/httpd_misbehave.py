"""A misbehaving local HTTP server for the http_client tests (Python stdlib only).

Threads of http.server on 127.0.0.1 port 0 (or a unix socket, or TLS with a certificate
made by the `openssl` CLI in a temp dir), started and stopped by the test. Paths:

  /echo                 JSON {method, path, query (name -> [values]), headers (lower-case),
                        body, body_size}; ?status=N answers N, ?header=name:value (repeatable)
                        adds response headers (a name twice is sent twice)
  /redirect?n=N&kind=rel|abs&code=302   N hops, then /echo (kind abs: http://host:port/...)
  /chunked?n=N&size=S   N chunks of S bytes (Transfer-Encoding: chunked), bytes "0".."9"
  /big?size=B           Content-Length B, bytes "0".."9" repeated
  /reset?size=B&part=P  headers for B bytes, P of them, then a reset (SO_LINGER 0)
  /hang?tag=T           reads the request and never answers (until the client closes)
  /slow?delay=S&tag=T   answers /echo after S seconds
  /flood?size=B&tag=T[&stall=P]  Content-Length B of the pattern in 16 KiB writes with a small send
                        buffer; events.written[T] is how many bytes the server's sends took
                        so far (a client that stops reading stalls it); records "closed T"
                        when the client closed first, "done T" when all was sent;
                        stall=P: after P bytes it sends nothing more until the client closes
/hang and /slow record events: "start T" when the request arrives, "closed T" when the
client closed the connection before the answer, "done T" when it was answered. A test waits
for them with wait_event() (bounded), so it knows the client's side aborted the transfer.
events.max_active is the most requests handled at once, events.conns the connections accepted.
Every loop here is bounded by the server's stop flag or a deadline.
"""
import json
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

PATTERN = b"0123456789" * 6554  # 65540 bytes, a multiple of 10


def pattern_bytes(n):
    """The first n bytes of "0123456789" repeated (what /big, /chunked and /reset send)."""
    reps, rest = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rest]


class Events:
    def __init__(self):
        self.cv = threading.Condition()
        self.items = []           # (monotonic time, kind, tag)
        self.active = 0
        self.max_active = 0
        self.conns = 0            # connections accepted
        self.written = {}         # /flood: tag -> bytes sent so far

    def add(self, kind, tag):
        with self.cv:
            self.items.append((time.monotonic(), kind, tag))
            self.cv.notify_all()

    def count(self, kind, tag=None):
        with self.cv:
            return sum(1 for _, k, t in self.items if k == kind and (tag is None or t == tag))

    def wait(self, kind, tag, n=1, timeout=15):
        deadline = time.monotonic() + timeout
        with self.cv:
            while sum(1 for _, k, t in self.items if k == kind and t == tag) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
            return True

    def connected(self):
        with self.cv:
            self.conns += 1

    def enter(self, d):
        with self.cv:
            self.active += d
            self.max_active = max(self.max_active, self.active)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; a unix socket's client_address is ''
        pass

    def address_string(self):
        return "client"

    def setup(self):
        super().setup()
        self.server.events.connected()

    def _route(self):
        u = urllib.parse.urlsplit(self.path)
        self.q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        n = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(n) if n else b""
        fn = ROUTES.get(u.path)
        if fn is None:
            return self._send(404, b"no such path\n")
        self.server.events.enter(1)
        try:
            fn(self, u)
        finally:
            self.server.events.enter(-1)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _route

    def arg(self, name, default):
        v = self.q.get(name)
        return v[0] if v else default

    def _send(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def echo(self, u):
        data = {"method": self.command, "path": u.path,
                "query": self.q, "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.body.decode("utf-8", "replace"), "body_size": len(self.body)}
        extra = [tuple(h.split(":", 1)) for h in self.q.get("header", [])]
        self._send(int(self.arg("status", "200")), json.dumps(data).encode(), "application/json",
                   extra)

    def redirect(self, u):
        n = int(self.arg("n", "1"))
        code = int(self.arg("code", "302"))
        kind = self.arg("kind", "rel")
        if n <= 0:
            return self.echo(u)
        q = dict((k, v[0]) for k, v in self.q.items())
        q["n"] = str(n - 1)
        target = "/redirect?" + urllib.parse.urlencode(q)
        if kind == "abs":
            host, port = self.server.server_address[:2]
            target = f"http://{host}:{port}{target}"
        self._send(code, b"moved\n", extra=[("Location", target)])

    def chunked(self, u):
        n, size = int(self.arg("n", "10")), int(self.arg("size", "100"))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = pattern_bytes(size)
        for _ in range(n):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def big(self, u):
        size = int(self.arg("size", str(10 * 1024 * 1024)))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        sent = 0
        while sent < size:
            part = PATTERN[:min(len(PATTERN), size - sent)]
            self.wfile.write(part)
            sent += len(part)

    def reset(self, u):
        size, part = int(self.arg("size", "100000")), int(self.arg("part", "1000"))
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(pattern_bytes(part))
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _wait_close(self, seconds):
        """Waits up to seconds (or the server's stop) for the client to close; True if it did."""
        deadline = time.monotonic() + seconds
        sock = self.connection
        while not self.server.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(min(left, 0.05))
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except socket.timeout:
                continue
            except (ConnectionError, OSError):
                return True
            return False  # the client sent more (a pipelined request): not a close
        return False

    def hang(self, u):
        tag = self.arg("tag", "")
        self.server.events.add("start", tag)
        if self._wait_close(120):
            self.server.events.add("closed", tag)
        self.close_connection = True

    def slow(self, u):
        tag = self.arg("tag", "")
        self.server.events.add("start", tag)
        if self._wait_close(float(self.arg("delay", "1"))):
            self.server.events.add("closed", tag)
            self.close_connection = True
            return
        self.connection.settimeout(None)
        self.echo(u)
        self.server.events.add("done", tag)


    def flood(self, u):
        size, tag = int(self.arg("size", str(64 * 1024 * 1024))), self.arg("tag", "")
        ev = self.server.events
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.flush()
        sock, sent = self.connection, 0
        stall = int(self.arg("stall", str(size)))
        sock.settimeout(0.05)
        limit = min(size, stall)
        while sent < limit and not self.server.stopping.is_set():
            off = sent % 10  # a partial send: the next piece continues the pattern
            part = PATTERN[off:off + min(16380, limit - sent)]
            try:
                sent += sock.send(part)
            except socket.timeout:
                continue
            except (ConnectionError, OSError):
                ev.add("closed", tag)
                self.close_connection = True
                return
            with ev.cv:
                ev.written[tag] = sent
        if sent < size:
            if self._wait_close(120):
                ev.add("closed", tag)
            self.close_connection = True
            return
        ev.add("done", tag)


ROUTES = {"/echo": Handler.echo, "/redirect": Handler.redirect, "/chunked": Handler.chunked,
          "/big": Handler.big, "/reset": Handler.reset, "/hang": Handler.hang,
          "/slow": Handler.slow, "/flood": Handler.flood}


class _Quiet:
    def handle_error(self, request, client_address):  # a refused handshake, a reset: expected
        pass


class _TCP(_Quiet, socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096


class _Unix(_Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256


class Server:
    """One listener (TCP on 127.0.0.1:0, or unix_path, optionally TLS with certfile/keyfile,
    and client_ca to require a client certificate) served by threads until stop().
    url(path) is its base URL + path."""

    def __init__(self, unix_path=None, certfile=None, keyfile=None, client_ca=None):
        self.events = Events()
        if unix_path:
            self.srv = _Unix(unix_path, Handler)
        else:
            self.srv = _TCP(("127.0.0.1", 0), Handler)
        self.srv.events = self.events
        self.srv.stopping = threading.Event()
        self.scheme = "http"
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            if client_ca:  # mutual TLS: a client certificate signed by client_ca is required
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True,
                                              do_handshake_on_connect=False)
            self.scheme = "https"
        self.port = None if unix_path else self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        self.t.start()

    def url(self, path="/echo"):
        if self.port is None:
            return "http://localhost" + path
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def wait_event(self, kind, tag, n=1, timeout=15):
        return self.events.wait(kind, tag, n, timeout)

    def stop(self):
        self.srv.stopping.set()
        self.srv.shutdown()
        self.srv.server_close()
        self.t.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def refused_port():
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certs(d):
    """In directory d: ca.pem/ca.key (a self-signed CA), good.pem/good.key (a leaf for
    127.0.0.1 and localhost) and wrong.pem/wrong.key (a leaf for wrong.example only), both
    signed by the CA. Returns {name: path}."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=taskhost test CA", cwd=d)
    for name, san in (("good", "IP:127.0.0.1,DNS:localhost"), ("wrong", "DNS:wrong.example")):
        cn = "localhost" if name == "good" else "wrong.example"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.ext", cwd=d)
    return {n: os.path.join(d, n) for n in ("ca.pem", "good.pem", "good.key", "wrong.pem",
                                             "wrong.key")}
