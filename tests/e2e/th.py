"""Helpers for end-to-end tests: build throwaway projects, run the real taskhost binary.

Every process a test starts is started here, waited for with a timeout, and killed by PID
if it overstays. Projects live in fresh temporary directories.
"""
import os
import shutil
import subprocess
import tempfile
import textwrap
import unittest

BIN = os.environ.get("TASKHOST_BIN") or os.path.join(os.path.dirname(__file__), "../../build/taskhost")
ROOT = os.environ.get("TASKHOST_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


def make_project(files, lock=True):
    """Writes {relative path: text} into a new temp dir (with wippy.lock) and returns its path."""
    d = tempfile.mkdtemp(prefix="taskhost-e2e-")
    if lock:
        files = dict(files)
        files.setdefault("wippy.lock", "directories:\n  modules: .wippy\n  src: ./src\n")
    for rel, text in files.items():
        path = os.path.join(d, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).lstrip("\n") if rel.endswith((".yaml", ".lua")) else text)
    return d


def copy_example(name):
    d = tempfile.mkdtemp(prefix="taskhost-e2e-")
    # without data/: queues a run of the example in the source tree left there are not the test's
    shutil.copytree(os.path.join(ROOT, "examples", name), d, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("data"))
    return d


def run(args, cwd=None, stdin=None, timeout=60, env=None):
    """Runs taskhost to completion; returns CompletedProcess with text stdout/stderr."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen([BIN] + args, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=e)
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"taskhost {args} timed out after {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(args, p.returncode, out, err)


# An http.service (port chosen by -o ...addr=127.0.0.1:0) with GET /api/hello served by
# app:hello from hello.lua (method `handler`).
HELLO_INDEX = """
version: "1.0"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: ":8080"
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
"""


TERMINAL_HEADER = """
version: "1.0"
namespace: app
entries:
  - name: terminal
    kind: terminal.host
    lifecycle:
      auto_start: true
  - name: processes
    kind: process.host
    host:
      workers: 2
    lifecycle:
      auto_start: true
"""


def script_project(main_lua, extra_entries="", extra_files=None,
                   modules="[io, process, time, channel, logger, json, env]", imports=None):
    """A project whose app:main process (for -x on the terminal) runs main_lua.
    extra_entries: YAML list items (at column 0, "- name: ..."), appended to entries."""
    main_entry = textwrap.dedent(f"""
        - name: main
          kind: process.lua
          source: file://main.lua
          method: main
          modules: {modules}
        """) + (f"  imports: {imports}\n" if imports else "")
    index = (textwrap.dedent(TERMINAL_HEADER).lstrip("\n")
             + textwrap.indent(main_entry + textwrap.dedent(extra_entries), "  "))
    files = {"src/_index.yaml": index, "src/main.lua": main_lua}
    files.update(extra_files or {})
    return make_project(files)


class TestCase(unittest.TestCase):
    def assertIn(self, member, container, msg=None):  # show whole outputs on failure
        if member not in container:
            self.fail(msg or f"{member!r} not found in:\n{container}")


def main():
    unittest.main(verbosity=2)


class Server:
    """A `taskhost run` in the background. Collects stderr; finds the port an http.service
    bound (it logs "listening on ... (port N"); stops by SIGTERM, then kill, by PID."""

    def __init__(self, project, args=(), env=None):
        import threading
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen([BIN, "run", project] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=e)
        self.lines = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stderr:
            with self.lock:
                self.lines.append(line)

    def log(self):
        with self.lock:
            return "".join(self.lines)

    def wait_for(self, pattern, timeout=10):
        import re
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} in the log:\n{self.log()}")

    def ports(self, count=1):
        import re
        self.wait_for(r"(listening on .*\(port \d+.*\n[\s\S]*){%d}" % count)
        return [int(x) for x in re.findall(r"listening on .*\(port (\d+)", self.log())]

    def stop(self, timeout=30):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.t.join(timeout=5)
        return self.p.returncode


def http(port, method, path, body=None, headers=None, timeout=10):
    """One request; returns (status, headers dict (lower-case names), body text)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        c.close()
