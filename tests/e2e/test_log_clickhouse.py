"""e2e: log.clickhouse ships the host's log records to a real ClickHouse (issue 14).

Each test starts its own ClickHouse (Debian 12's clickhouse-server, a config in a temp dir,
free ports on 127.0.0.1) and stops it by PID. Lua code logs with fields; the rows are read
back with SELECT ... FORMAT JSON. ClickHouse stopped while the host logs: requests are still
served, rows are buffered and arrive when it is back; a tiny buffer drops and counts; SIGTERM
of the host flushes the last rows.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import th

CH_BIN = shutil.which("clickhouse-server") or shutil.which("clickhouse")

CONFIG = """<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
</yandex>
"""

USERS = """<yandex>
  <profiles><default></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <shipper><password>s3cr3t-pw</password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></shipper>
  </users>
  <quotas><default></default></quotas>
</yandex>
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ClickHouse:
    """A private clickhouse-server: start() (again on the same data dir and ports), stop()."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="taskhost-ch-")
        self.http_port, self.tcp_port = free_port(), free_port()
        with open(os.path.join(self.dir, "config.xml"), "w") as f:
            f.write(CONFIG.format(http=self.http_port, tcp=self.tcp_port, dir=self.dir))
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(USERS)
        self.p = None

    def start(self):
        args = [CH_BIN] + (["server"] if CH_BIN.endswith("/clickhouse") else [])
        self.log = open(os.path.join(self.dir, "server.log"), "a")
        self.p = subprocess.Popen(args + ["--config-file=" + os.path.join(self.dir, "config.xml")],
                                  cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(600):                  # bounded: 60 s
            if self.p.poll() is not None:
                raise AssertionError("clickhouse-server exited:\n" + open(self.log.name).read())
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ping", timeout=1).read() == b"Ok.\n":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("clickhouse-server did not answer /ping")

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p = None
        if getattr(self, "log", None):
            self.log.close()

    def query(self, sql):
        """POST (a GET is read-only for ClickHouse); raises with ClickHouse's message."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/", data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"ClickHouse: {sql}: {e.read().decode()}")

    def rows(self, where="1", table="taskhost_logs"):
        text = self.query(f"SELECT * FROM {table} WHERE {where} ORDER BY ts, ms FORMAT JSON")
        return json.loads(text)["data"]

    def count(self, where="1", table="taskhost_logs"):
        try:
            return int(self.query(f"SELECT count() FROM {table} WHERE {where}").strip())
        except AssertionError as e:          # the table is not there yet
            if "doesn't exist" not in str(e):
                raise
            return 0

    def wait_count(self, n, where="1", table="taskhost_logs", timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.count(where, table)
            if c >= n:
                return c
            time.sleep(0.1)
        raise AssertionError(f"{self.count(where, table)} rows match {where}, want {n}")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


INDEX = th.HELLO_INDEX.replace("modules: [http]", "modules: [http, logger]") + """
  - name: processes
    kind: process.host
    host: {workers: 2}
    lifecycle: {auto_start: true}
  - name: ticker
    kind: process.lua
    source: file://ticker.lua
    method: main
    modules: [logger, process]
  - name: ticker.svc
    kind: process.service
    process: app:ticker
    host: app:processes
    lifecycle: {auto_start: true}
"""

HELLO = """
local http = require("http")
local logger = require("logger")
local function handler()
  local req = http.request()
  local n = tonumber(req:query("n")) or 0
  logger:info("hello request", {n = n, path = "/api/hello", quote = "a\\"b\\nc"})
  http.response():write("hi " .. n)
end
return { handler = handler }
"""

TICKER = """
local logger = require("logger")
local process = require("process")
local function main()
  logger:with({svc = "ticker"}):warn("ticker up", {k = 1})
  process.events():receive()            -- the host's CANCEL at shutdown
  logger:info("ticker stopping")
end
return { main = main }
"""


def project(ch, extra=""):
    yaml = f"""
log:
  level: info
  clickhouse:
    url: http://127.0.0.1:{ch.http_port}
    user: shipper
    password: s3cr3t-pw
    batch_size: 5
    batch_interval: 100ms
    connection_attempts: 2
    try_connection_period: 100ms
{extra}"""
    return th.make_project({"taskhost.yaml": yaml, "src/_index.yaml": INDEX,
                            "src/hello.lua": HELLO, "src/ticker.lua": TICKER})


class LogClickHouse(th.TestCase):
    """One ClickHouse for the class; each test ships into its own table (the test's name)."""

    @classmethod
    def setUpClass(cls):
        global CH_BIN
        if not CH_BIN:
            subprocess.run([os.path.join(th.ROOT, "scripts/setup")], check=False)
            CH_BIN = shutil.which("clickhouse-server") or shutil.which("clickhouse")
        if not CH_BIN:
            raise unittest.SkipTest("clickhouse-server is not installed and scripts/setup could not install it")
        cls.ch = ClickHouse()
        cls.ch.start()

    @classmethod
    def tearDownClass(cls):
        cls.ch.cleanup()

    def setUp(self):
        if self.ch.p is None:                 # a failed test left it stopped
            self.ch.start()
        self.table = self._testMethodName

    def project(self, extra=""):
        return project(self.ch, f"    table: {self.table}\n" + extra)

    def count(self, where="1"):
        return self.ch.count(where, table=self.table)

    def wait_count(self, n, where="1"):
        return self.ch.wait_count(n, where, table=self.table)

    def rows(self, where="1"):
        return self.ch.rows(where, table=self.table)

    def server(self, proj):
        s = th.Server(proj, ["-o", "app:gateway:addr=127.0.0.1:0"])
        self.addCleanup(s.stop)
        return s, s.ports()[0]

    def test_rows_arrive_with_fields_pid_entry(self):
        s, port = self.server(self.project())
        for i in range(7):
            self.assertEqual(th.http(port, "GET", f"/api/hello?n={i}")[0], 200)
        self.wait_count(7, "message = 'hello request'")
        self.wait_count(1, "message = 'ticker up'")
        rows = self.rows("message = 'hello request'")
        ns = sorted(json.loads(r["fields"])["n"] for r in rows)
        self.assertEqual(ns, list(range(7)))
        f = json.loads(rows[0]["fields"])
        self.assertEqual(f["quote"], 'a"b\nc')
        self.assertEqual(f["path"], "/api/hello")
        self.assertEqual(rows[0]["level"], "INFO")
        self.assertEqual(rows[0]["host"], socket.gethostname())
        self.assertEqual(rows[0]["pid"], f["pid"])
        self.assertEqual(rows[0]["entry"], "app:hello")
        t = self.rows("message = 'ticker up'")[0]
        self.assertEqual(t["level"], "WARN")
        self.assertEqual(t["entry"], "app:ticker")
        self.assertEqual(json.loads(t["fields"])["svc"], "ticker")
        self.assertEqual(json.loads(t["fields"])["k"], 1)
        self.assertTrue(t["pid"].startswith("{app:processes|"), t["pid"])
        # host records (no process): the start-up line, pid and entry empty
        host_rows = self.rows("message LIKE 'taskhost % running %'")
        self.assertEqual(len(host_rows), 1)
        self.assertEqual((host_rows[0]["pid"], host_rows[0]["entry"]), ("", ""))
        # ts + ms is the record's time: within a minute of now
        self.assertLess(abs(int(time.time()) - int(self.ch.query(
            f"SELECT toUInt32(max(ts)) FROM {self.table}").strip())), 60)
        self.assertTrue(all(0 <= int(r["ms"]) <= 999 for r in rows))
        # the password is never logged
        self.assertEqual(s.stop(), 0)
        self.assertNotIn("s3cr3t-pw", s.log())
        self.assertIn("log.clickhouse: ", s.log())

    def test_down_then_up_buffers_and_delivers(self):
        s, port = self.server(self.project())
        self.wait_count(1, "message = 'ticker up'")
        self.ch.stop()
        for i in range(30):               # served while ClickHouse is away
            st, _, body = th.http(port, "GET", f"/api/hello?n={100 + i}")
            self.assertEqual((st, body), (200, f"hi {100 + i}"))
        s.wait_for(r"log.clickhouse: cannot ship to")
        self.ch.start()
        self.wait_count(30, "message = 'hello request' AND visitParamExtractInt(fields, 'n') >= 100")
        s.wait_for(r"log.clickhouse: .* answers again")
        self.assertEqual(s.stop(), 0)
        self.assertRegex(s.log(), r"log.clickhouse: \d+ records shipped, 0 dropped")

    def test_tiny_buffer_drops_are_counted_and_nothing_blocks(self):
        admin = free_port()
        s, port = self.server(self.project(f"""    buffer: 10
admin:
  addr: 127.0.0.1:{admin}
"""))
        self.wait_count(1, "message = 'ticker up'")
        self.ch.stop()
        for i in range(60):
            self.assertEqual(th.http(port, "GET", f"/api/hello?n={i}")[0], 200)
        m = s.wait_for(r"log.clickhouse: (\d+) log records dropped")
        self.assertGreater(int(m.group(1)), 0)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
        dropped = [float(l.split()[1]) for l in metrics.splitlines() if l.startswith("taskhost_log_dropped_total")]
        self.assertTrue(dropped and dropped[0] >= 40, metrics)
        self.assertIn("taskhost_log_ship_failures_total", metrics)
        self.ch.start()
        # the ring kept at most 10 rows (plus the batch being retried): they arrive
        self.wait_count(1, "message = 'hello request'")
        self.assertEqual(s.stop(), 0)
        self.assertLessEqual(self.count("message = 'hello request'"), 15)

    def test_sigterm_flushes_last_rows(self):
        proj = self.project()
        # a long batch_interval and a big batch: only the shutdown flush sends these rows
        with open(os.path.join(proj, "taskhost.yaml")) as f:
            y = f.read().replace("batch_size: 5", "batch_size: 1000").replace("batch_interval: 100ms", "batch_interval: 1h")
        with open(os.path.join(proj, "taskhost.yaml"), "w") as f:
            f.write(y)
        s, port = self.server(proj)
        for i in range(3):
            self.assertEqual(th.http(port, "GET", f"/api/hello?n={i}")[0], 200)
        self.assertEqual(self.count("message = 'hello request'"), 0)
        self.assertEqual(s.stop(), 0)
        self.assertEqual(self.count("message = 'hello request'"), 3)
        # the shutdown lines logged before the shipper stops are in too
        self.assertEqual(self.count("message LIKE 'received SIGTERM%'"), 1)
        self.assertEqual(self.count("message = 'ticker stopping' AND entry = 'app:ticker'"), 1)

    def test_database_setting(self):
        self.ch.query("CREATE DATABASE IF NOT EXISTS logs")
        s, port = self.server(project(self.ch, f"    database: logs\n    table: {self.table}\n"))
        self.assertEqual(th.http(port, "GET", "/api/hello?n=5")[0], 200)
        self.ch.wait_count(1, "message = 'hello request'", table=f"logs.{self.table}")
        self.assertEqual(s.stop(), 0)
        self.assertEqual(self.ch.count("1", table=f"default.{self.table}"), 0)

    def test_bad_settings_are_file_line_errors(self):
        cases = [("    table: \"x; DROP TABLE y\"\n", r"taskhost.yaml:\d+: log.clickhouse.table must be a name"),
                 ("    buffer: 0\n", r"taskhost.yaml:\d+: log.clickhouse.buffer must be an integer from 1"),
                 ("    level: loud\n", r"taskhost.yaml:\d+: log.clickhouse.level: unknown log level")]
        for extra, want in cases:
            r = th.run(["check", project(self.ch, extra)])
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertRegex(r.stderr, want)
        proj = self.project()
        path = os.path.join(proj, "taskhost.yaml")
        with open(path) as f:
            y = f.read()
        for old, new, want in [("batch_interval: 100ms", "batch_interval: soon", "batch_interval must be a duration"),
                               ("url: http://", "url: ftp://", "url must be an http")]:
            with open(path, "w") as f:
                f.write(y.replace(old, new))
            r = th.run(["check", proj])
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertRegex(r.stderr, r"taskhost.yaml:\d+: log.clickhouse." + want)


    def test_refusals_are_reported(self):
        # a wrong password: the start-up warning gives ClickHouse's answer, never the password
        proj = self.project()
        path = os.path.join(proj, "taskhost.yaml")
        with open(path) as f:
            y = f.read()
        with open(path, "w") as f:
            f.write(y.replace("password: s3cr3t-pw", "password: wr0ng-pw"))
        s, port = self.server(proj)
        s.wait_for(r"log.clickhouse: \S+ not usable after 2 attempts \(HTTP status 401: .*Wrong password")
        self.assertEqual(th.http(port, "GET", "/api/hello?n=1")[0], 200)
        self.assertEqual(s.stop(), 0)
        self.assertNotIn("wr0ng-pw", s.log())
        self.assertRegex(s.log(), r"log.clickhouse: 0 records shipped, \d+ dropped")
        # a table made with other columns: ClickHouse cannot parse the rows (18.16: 500, Code: 27); the batch is
        # dropped and reported instead of blocking every later one
        self.ch.query(f"CREATE TABLE {self.table}_x (ts DateTime, ms UInt16, level UInt8, message String, "
                      "fields String, host String, pid String, entry String) ENGINE = MergeTree ORDER BY ts")
        s, port = self.server(project(self.ch, f"    table: {self.table}_x\n"))
        m = s.wait_for(r"log.clickhouse: default\.\w+ refused (\d+) rows \(HTTP status \d+: Code: ")
        self.assertGreater(int(m.group(1)), 0)
        self.assertEqual(th.http(port, "GET", "/api/hello?n=2")[0], 200)
        self.assertEqual(s.stop(), 0)
        self.assertRegex(s.log(), r"log.clickhouse: 0 records shipped, [1-9]\d* dropped")


if __name__ == "__main__":
    th.main()
