"""The command line: help, version, init, check, and clear file:line errors with exit codes
for broken projects."""
import os
import time

import th


class Cli(th.TestCase):
    def test_help_and_version(self):
        r = th.run(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("taskhost run [DIR]", r.stdout)
        self.assertIn("exit codes", r.stdout)
        r = th.run(["version"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^taskhost \d+\.\d+\.\d+\nlua 5\.4")

    def test_usage_errors_exit_2(self):
        for args in (["frobnicate"], ["run", "--bogus"], ["run", ".", "-x"], ["run", "-o", "nonsense"]):
            r = th.run(args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn("taskhost:", r.stderr)

    def test_init_then_run(self):
        d = th.make_project({}, lock=False)
        r = th.run(["init", d])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(d, "wippy.lock")))
        r = th.run(["check", d])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ok:", r.stdout)
        r = th.run(["run", d, "-x", "app:hello", "taskhost"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "hello, taskhost\n")

    def test_init_hint_runs_as_printed(self):
        import shlex
        parent = th.make_project({}, lock=False)
        d = os.path.join(parent, "my app")                  # a space: the hint must quote it
        r = th.run(["init", d])
        self.assertEqual(r.returncode, 0, r.stderr)
        hint = r.stdout.split("try", 1)[1].strip()
        argv = shlex.split(hint)
        self.assertEqual(argv[1:], ["run", d, "-x", "hello"], hint)
        r = th.run(argv[1:])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "hello, world\n")

    def test_exec_resolves_bare_names_as_wippy(self):
        entries = """
- name: hello
  kind: process.lua
  source: file://hello.lua
  method: main
  modules: [io]
  meta:
    command: {name: greet}
"""
        d = th.script_project('return { main = function() return 0 end }', extra_entries=entries,
                              extra_files={"src/hello.lua": 'local io = require("io")\n'
                                           'return { main = function(n) io.print("hi " .. (n or "?")) return 0 end }\n',
                                           "src/other.yaml": "namespace: other\nentries:\n  - name: main\n"
                                           "    kind: process.lua\n    source: file://hello.lua\n    method: main\n"})
        r = th.run(["run", d, "-x", "greet", "a"])         # meta.command.name
        self.assertEqual((r.returncode, r.stdout), (0, "hi a\n"), r.stderr)
        r = th.run(["run", d, "-x", "hello", "b"])         # a unique entry name
        self.assertEqual((r.returncode, r.stdout), (0, "hi b\n"), r.stderr)
        r = th.run(["run", d, "-x", "terminal/hello", "c"])  # host by name too
        self.assertEqual((r.returncode, r.stdout), (0, "hi c\n"), r.stderr)
        r = th.run(["run", d, "-x", "main"])               # app:main and other:main
        self.assertEqual(r.returncode, 2)
        self.assertIn("main is ambiguous: app:main, other:main", r.stderr)
        r = th.run(["run", d, "-x", "nothing"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("no process.lua entry named nothing", r.stderr)

    def test_missing_source_dir(self):
        d = th.make_project({"wippy.lock": "directories:\n  src: ./nowhere\n"}, lock=False)
        r = th.run(["run", d])
        self.assertEqual(r.returncode, 3)
        self.assertIn("nowhere", r.stderr)

    def test_broken_yaml_names_file_and_line(self):
        d = th.make_project({"src/_index.yaml": "namespace: app\nentries:\n  - name: a\n    kind: [oops\n"})
        for cmd, stream in (("check", "stdout"), ("run", "stderr")):
            r = th.run([cmd, d])
            self.assertEqual(r.returncode, 3, r)
            self.assertRegex(getattr(r, stream), r"src/_index\.yaml:\d+: ")

    def test_file_escape_is_refused(self):
        d = th.make_project({
            "secret.lua": "return 1\n",
            "src/_index.yaml": "namespace: app\nentries:\n  - name: p\n    kind: process.lua\n"
                               "    source: file://../secret.lua\n    method: main\n",
        })
        r = th.run(["check", d])
        self.assertEqual(r.returncode, 3)
        self.assertRegex(r.stdout, r"src/_index\.yaml:5: .*escapes")

    def test_lua_syntax_error_names_the_lua_file(self):
        d = th.make_project({
            "src/_index.yaml": "namespace: app\nentries:\n  - name: p\n    kind: process.lua\n"
                               "    source: file://p.lua\n    method: main\n",
            "src/p.lua": "local x = 1\nlocal function main()\n  return x +\nend\nreturn {main = main}\n",
        })
        r = th.run(["check", d])
        self.assertEqual(r.returncode, 3)
        self.assertRegex(r.stdout, r"src/p\.lua:4: ")

    def test_unknown_reference_is_an_error(self):
        d = th.make_project({
            "src/_index.yaml": "namespace: app\nentries:\n  - name: svc\n    kind: process.service\n"
                               "    process: missing\n    host: nohost\n",
        })
        r = th.run(["check", d])
        self.assertEqual(r.returncode, 3)
        self.assertIn("app:missing", r.stdout)
        self.assertRegex(r.stdout, r"src/_index\.yaml:\d+: ")

    def test_exec_target_errors(self):
        d = th.script_project("return { main = function() return 0 end }")
        r = th.run(["run", d, "-x", "app:nope"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("app:nope", r.stderr)

    def test_sigterm_stops_a_running_host(self):
        d = th.copy_example("echo-service")
        p = th.subprocess.Popen([th.BIN, "run", d, "-o", "app:relay-service:lifecycle.stop_timeout=1s"],
                                stdout=th.subprocess.PIPE, stderr=th.subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            p.terminate()
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("relay started", err)
        self.assertIn("received SIGTERM", err)


if __name__ == "__main__":
    th.main()
