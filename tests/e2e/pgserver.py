"""A private PostgreSQL 15 server for one test class (test_sql_postgres.py).

PgServer() makes a temp dir, runs initdb there (trust auth, superuser `postgres`), starts
`postgres` on 127.0.0.1 at a free port with its socket in the temp dir, and waits (bounded)
until it accepts connections. stop() ends it by PID: SIGINT (fast shutdown), then SIGKILL
after a bound; start() starts it again on the same port and data (for reconnect tests);
close() stops it and removes the dir.

initdb and postgres refuse to run as root: when we are root they run as the `postgres` OS
user (created by the postgresql package) through `runuser -u postgres --`, and the temp dir
is chowned to that user. The server binaries are in /usr/lib/postgresql/15/bin.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = os.environ.get("PG_BIN") or "/usr/lib/postgresql/15/bin"


def available():
    return os.path.exists(os.path.join(BIN, "postgres"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="taskhost-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.prefix = []
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.p = None
        r = subprocess.run(self.prefix + [os.path.join(BIN, "initdb"), "-D", self.data, "-U", "postgres",
                                          "--auth=trust", "-E", "UTF8", "--no-sync"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("initdb failed:\n" + r.stdout + r.stderr)
        self.start()

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self):
        self.log = open(os.path.join(self.dir, "server.log"), "a")
        self.p = subprocess.Popen(self.prefix + [os.path.join(BIN, "postgres"), "-D", self.data,
                                                 "-p", str(self.port), "-k", self.dir,
                                                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = subprocess.run([os.path.join(BIN, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"],
                               capture_output=True)
            if r.returncode == 0:
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("postgres did not start:\n" + open(os.path.join(self.dir, "server.log")).read())

    def psql(self, sql):
        """Runs sql with psql (tuples only, unaligned); returns stdout."""
        r = subprocess.run([os.path.join(BIN, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", "postgres", "-tA", "-c", sql], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return r.stdout

    def stop(self):
        if self.p and self.p.poll() is None:
            # runuser forwards signals to its child; the postmaster's pid is in its pid file too
            pid = self.p.pid
            try:
                with open(os.path.join(self.data, "postmaster.pid")) as f:
                    pid = int(f.readline())
            except (OSError, ValueError):
                pass
            os.kill(pid, signal.SIGINT)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.p.kill()
                self.p.wait()
        self.p = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerPerClass:
    """Mixin for a unittest.TestCase class: one PgServer for the whole class, as cls.pg,
    stopped and removed after its last test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = PgServer()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()
        super().tearDownClass()
