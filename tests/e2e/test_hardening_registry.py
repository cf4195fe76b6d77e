"""Registry loading under hostile files, through the real binary: a *.registry.lua whose
shared-table DAG would expand to 2^41 values, chunks that use pcall to outlive the
instruction and memory budgets, 10^5 nested flow brackets, FIFOs in the source tree and as
file:// targets are all refused quickly with file:line and the budget named (check exits 3;
a watching run refuses the reload and keeps serving); SIGINT stops a slow load (exit 130) and
SIGTERM is not held up by a reload that is still working. Timeouts are hang detectors only."""
import os
import signal
import subprocess
import threading
import time

import th

OVERRIDE = ["-o", "app:gateway:addr=127.0.0.1:0"]

INDEX = th.HELLO_INDEX

HELLO = """
local http = require("http")
return {handler = function() http.response():write_json({version = 1}) end}
"""

DOUBLING = """local t = {"x"} for i = 1, 40 do t = {t, t} end
return {version = "1.0", namespace = "app", entries = {{name = "a", kind = "env.variable", meta = {b = t}}}}
"""

PCALL_INSNS = """local n = 0
while true do pcall(function() while true do end end) n = n + 1 end
"""

PCALL_MEMORY = """local keep
while true do
  pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end)
  keep = {}
end
"""

SLOW = """while true do local s = string.rep("x", 1 << 20) end
"""   # few instructions, much time: only the wall-time budget (or a signal) stops it


def check_with_rusage(project, timeout=60):
    """taskhost check; returns (exit code, stdout+stderr, peak RSS in KiB) of that one child."""
    p = subprocess.Popen([th.BIN, "check", project], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    timer = threading.Timer(timeout, p.kill)   # hang detector: kills this PID only
    timer.start()
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    return p.returncode, out, ru.ru_maxrss


def write(project, rel, text):
    path = os.path.join(project, "src", rel)
    tmp = path + ".tmp-write"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Check(th.TestCase):
    def check(self, files):
        r = th.run(["check", th.make_project(files)], timeout=60)
        return r.returncode, r.stdout + r.stderr

    def test_doubling_table_is_refused_quickly_with_bounded_memory(self):
        code, out, rss_kib = check_with_rusage(th.make_project({"src/x.registry.lua": DOUBLING}))
        self.assertEqual(code, 3, out)
        self.assertRegex(out, r"src/x\.registry\.lua:2: entries\[1\]\.meta\.b\[1\][\[\]12]*: node budget exceeded")
        self.assertLess(rss_kib, 512 * 1024, out)   # the tree it describes would be ~10^14 bytes

    def test_pcall_cannot_outlive_the_instruction_budget(self):
        code, out = self.check({"src/x.registry.lua": PCALL_INSNS})
        self.assertEqual(code, 3, out)
        self.assertRegex(out, r"src/x\.registry\.lua:2: instruction budget exceeded")

    def test_pcall_cannot_outlive_the_memory_budget(self):
        code, out = self.check({"src/x.registry.lua": PCALL_MEMORY})
        self.assertEqual(code, 3, out)
        self.assertRegex(out, r"src/x\.registry\.lua:\d+: memory budget exceeded")

    def test_deep_flow_yaml_and_json_are_refused(self):
        deep = {"src/x.yaml": "namespace: app\nx: " + "[" * 100000 + "]" * 100000 + "\n",
                "src/y.json": '{"namespace": "app", "x": ' + '{"a": ' * 100000 + "1" + "}" * 100001}
        code, out = self.check(deep)
        self.assertEqual(code, 3, out)
        self.assertRegex(out, r"src/x\.yaml:2: depth budget exceeded")
        self.assertRegex(out, r"src/y\.json:1: depth budget exceeded")

    def test_a_fifo_in_the_source_tree_is_refused(self):
        project = th.make_project({"src/_index.yaml": INDEX, "src/hello.lua": HELLO})
        os.mkfifo(os.path.join(project, "src", "x.yaml"))
        r = th.run(["check", project], timeout=60)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("src/x.yaml: refused: a FIFO, not a regular file", r.stdout)

    def test_a_fifo_as_file_target_is_refused(self):
        project = th.make_project({"src/_index.yaml": INDEX})
        os.mkfifo(os.path.join(project, "src", "hello.lua"))
        r = th.run(["check", project], timeout=60)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"src/_index\.yaml:\d+: file://hello\.lua: refused: a FIFO")

    def test_a_fifo_as_project_config_is_refused(self):
        for name in ("taskhost.yaml", "wippy.lock"):
            project = th.make_project({"src/_index.yaml": INDEX, "src/hello.lua": HELLO}, lock=False)
            os.mkfifo(os.path.join(project, name))
            r = th.run(["check", project], timeout=60)
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertIn(name + ": refused: a FIFO, not a regular file", r.stderr)

    def test_sigint_stops_a_slow_load_with_130(self):
        for cmd in ("check", "run"):
            project = th.make_project({"src/x.registry.lua": SLOW})
            p = subprocess.Popen([th.BIN, cmd, project], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            time.sleep(0.5)                     # well inside the 2 s the load would take
            p.send_signal(signal.SIGINT)
            try:
                out, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            self.assertEqual(p.returncode, 130, cmd + ":\n" + out + err)
            self.assertIn("interrupted while loading", out + err)


class Reload(th.TestCase):
    def setUp(self):
        self.project = th.make_project({"src/_index.yaml": INDEX, "src/hello.lua": HELLO})
        self.server = th.Server(self.project, OVERRIDE)
        self.port = self.server.ports()[0]

    def tearDown(self):
        self.server.stop()

    def hello(self):
        status, _, body = th.http(self.port, "GET", "/api/hello")
        return status, body

    def test_doubling_table_reload_is_refused_and_the_old_code_serves(self):
        write(self.project, "x.registry.lua", DOUBLING)
        self.server.wait_for(r"x\.registry\.lua:2: .*node budget exceeded[\s\S]*reload .* refused", timeout=60)
        self.assertEqual(self.hello(), (200, '{"version":1}'))
        os.remove(os.path.join(self.project, "src", "x.registry.lua"))
        self.server.wait_for(r"reloaded \(", timeout=60)
        self.assertEqual(self.hello(), (200, '{"version":1}'))

    def test_deep_yaml_reload_is_refused(self):
        write(self.project, "x.yaml", "namespace: app\nx: " + "[" * 100000 + "\n")
        self.server.wait_for(r"x\.yaml:2: depth budget exceeded[\s\S]*reload .* refused", timeout=60)
        self.assertEqual(self.hello(), (200, '{"version":1}'))

    def test_sigterm_is_not_held_up_by_a_working_reload(self):
        write(self.project, "x.registry.lua", SLOW)
        time.sleep(1.0)                        # after the 30 ms burst wait the load spins for 2 s
        self.assertEqual(self.server.stop(timeout=30), 0, self.server.log())
        self.assertIn("interrupted while loading", self.server.log())


if __name__ == "__main__":
    th.main()
