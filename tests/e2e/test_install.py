"""Packaging: `cmake --install` of the build the tests run (the build dir is the one holding
TASKHOST_BIN) into a temp prefix puts the binary, the man page, the examples and the systemd
unit in place; the man page parses and lists every command and option `taskhost help` does;
systemd-analyze accepts the unit; the *installed* binary runs installed examples (copied out
first). And `taskhost version` names every linked library with a version."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import th

BUILD = os.path.dirname(os.path.abspath(th.BIN))
LIBS = ["lua", "lua-cjson", "libyaml", "civetweb", "libcurl", "sqlite", "libpq", "openssl"]
VERSION = r"\d+(\.\d+)+"
# pkg-config modules of the libraries pkg-config knows (civetweb and lua-cjson it does not).
PKG = {"lua": "lua5.4", "libyaml": "yaml-0.1", "sqlite": "sqlite3", "libpq": "libpq",
       "libcurl": "libcurl", "openssl": "libcrypto"}


def read(path):
    with open(path) as f:
        return f.read()


def man_text(src):
    """The man page's roff source as plain words: escapes and font changes dropped."""
    s = src.replace("\\-", "-").replace("\\(dq", '"')
    return re.sub(r"\\f[BIRP]", "", s)


class Install(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cmake = shutil.which("cmake")
        assert cmake, "cmake not found"
        cls.prefix = tempfile.mkdtemp(prefix="taskhost-install-")
        r = subprocess.run([cmake, "--install", BUILD, "--prefix", cls.prefix],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.stdout, r.stderr)
        cls.bin = os.path.join(cls.prefix, "bin", "taskhost")
        cls.man = os.path.join(cls.prefix, "share", "man", "man1", "taskhost.1")
        cls.unit = os.path.join(cls.prefix, "lib", "systemd", "system", "taskhost.service")
        cls.examples = os.path.join(cls.prefix, "share", "taskhost", "examples")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.prefix, ignore_errors=True)

    def run_installed(self, args, **kw):
        saved, th.BIN = th.BIN, self.bin
        try:
            return th.run(args, **kw)
        finally:
            th.BIN = saved

    def installed_example(self, name):
        d = tempfile.mkdtemp(prefix="taskhost-e2e-")
        shutil.copytree(os.path.join(self.examples, name), d, dirs_exist_ok=True)
        return d

    def test_files_are_in_place(self):
        self.assertTrue(os.access(self.bin, os.X_OK), self.bin)
        self.assertTrue(os.path.isfile(self.man))
        self.assertTrue(os.path.isfile(os.path.join(self.prefix, "share", "doc", "taskhost", "README.md")))
        # every example of the source tree, with its files (and no data/ a run left)
        src = os.path.join(th.ROOT, "examples")
        self.assertEqual(sorted(os.listdir(self.examples)), sorted(os.listdir(src)))
        for name in os.listdir(src):
            top = os.path.join(src, name)
            for dirpath, dirs, files in os.walk(top):
                if dirpath == top and "data" in dirs:
                    dirs.remove("data")
                rel = os.path.relpath(dirpath, src)
                for f in files:
                    self.assertTrue(os.path.isfile(os.path.join(self.examples, rel, f)), (rel, f))
            self.assertTrue(os.path.isfile(os.path.join(self.examples, name, "wippy.lock")), name)
            self.assertFalse(os.path.exists(os.path.join(self.examples, name, "data")), name)
        # the unit names the installed binary; nothing is left unsubstituted
        unit = read(self.unit)
        self.assertIn("ExecStart=%s run /srv/taskhost\n" % self.bin, unit)
        self.assertIn("Type=simple\n", unit)
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID\n", unit)
        self.assertNotIn("@", unit)

    def test_destdir_stages_files_for_the_final_prefix(self):
        stage = tempfile.mkdtemp(prefix="taskhost-destdir-")
        try:
            r = subprocess.run([shutil.which("cmake"), "--install", BUILD, "--prefix", "/opt/th"],
                               capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, DESTDIR=stage))
            self.assertEqual(r.returncode, 0, r.stderr)
            root = os.path.join(stage, "opt", "th")
            self.assertTrue(os.access(os.path.join(root, "bin", "taskhost"), os.X_OK))
            unit = read(os.path.join(root, "lib", "systemd", "system", "taskhost.service"))
            self.assertIn("ExecStart=/opt/th/bin/taskhost run /srv/taskhost\n", unit)  # not the stage
            self.assertEqual(os.listdir(stage), ["opt"])
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def test_man_page_parses_and_lists_every_command_and_option(self):
        src = read(self.man)
        self.assertRegex(src, r'(?m)^\.TH TASKHOST 1 .*"taskhost \d+\.\d+\.\d+"')
        groff, man = shutil.which("groff"), shutil.which("man")
        if groff:
            r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", self.man],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
        elif man:
            r = subprocess.run([man, "-l", self.man], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, MANPAGER="cat", PAGER="cat"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("taskhost", r.stdout)
        help_text = self.run_installed(["help"]).stdout
        commands = re.findall(r"(?m)^  taskhost (\w+)", help_text)
        options = re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)(?=[ ,\n=])", help_text.split("options:")[1])
        self.assertEqual(commands, ["run", "check", "init", "stubs", "version", "help"])
        self.assertGreaterEqual(len(options), 10, options)
        text = man_text(src)
        sections = {m.group(1): m.start() for m in re.finditer(r"(?m)^\.SH (\w[\w ]*)$", text)}
        self.assertLess(sections["COMMANDS"], sections["OPTIONS"])
        commands_part = text[sections["COMMANDS"]:sections["OPTIONS"]]
        options_part = text[sections["OPTIONS"]:sections["SIGNALS"]]
        for c in commands:
            self.assertRegex(commands_part, r"(?m)^\.B %s$" % c)
        for o in options:
            self.assertRegex(options_part, r"(?m)^\.(B|BR|BI) .*(?<![\w-])%s(?![\w-])" % re.escape(o), o)

    def test_systemd_accepts_the_unit(self):
        sa = shutil.which("systemd-analyze")
        if not sa:
            self.skipTest("no systemd-analyze")
        # Documentation=man:taskhost(1) is looked up with man: find the installed page
        env = dict(os.environ, MANPATH=os.path.join(self.prefix, "share", "man"))
        r = subprocess.run([sa, "verify", self.unit], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        mine = [l for l in r.stderr.splitlines() if "taskhost" in l]
        self.assertEqual(mine, [])      # unknown keys are only warnings: none may be ours

    def test_installed_binary_runs_the_terminal_example(self):
        d = self.installed_example("echo-service")
        r = self.run_installed(["run", d, "-o", "app:relay-service:lifecycle.stop_timeout=1s",
                                "-x", "app:terminal/app:cli"], stdin="hello world\n\n", timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("  HELLO WORLD", r.stdout)
        self.assertIn("Goodbye!", r.stdout)

    def test_installed_binary_serves_the_http_example(self):
        d = self.installed_example("http-async-task")
        saved, th.BIN = th.BIN, self.bin
        try:
            server = th.Server(d, ["-o", "app:gateway:addr=127.0.0.1:0"])
        finally:
            th.BIN = saved
        try:
            self.assertEqual(server.p.args[0], self.bin)
            port = server.ports()[0]
            status, _, body = th.http(port, "POST", "/api/tasks", '{"name":"installed","duration":1}',
                                      {"Content-Type": "application/json"})
            self.assertEqual(status, 202, body)
            self.assertEqual(json.loads(body)["name"], "installed")
        finally:
            self.assertEqual(server.stop(), 0, server.log())


class Version(th.TestCase):
    def test_version_lists_every_library(self):
        r = th.run(["version"])
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^taskhost \d+\.\d+\.\d+$")
        got = dict(line.split(" ", 1) for line in lines[1:])
        self.assertEqual([line.split(" ")[0] for line in lines[1:]], LIBS)
        for name in LIBS:
            self.assertRegex(got[name], r"^%s$" % VERSION, name)

    def test_versions_are_the_linked_libraries(self):
        """Where pkg-config knows the library, its version is the one taskhost reports (Debian
        keeps a -dev package at its library's version)."""
        pc = shutil.which("pkg-config")
        if not pc:
            self.skipTest("no pkg-config")
        got = dict(line.split(" ", 1) for line in th.run(["version"]).stdout.splitlines()[1:])
        for name, module in PKG.items():
            with self.subTest(name):
                r = subprocess.run([pc, "--modversion", module], capture_output=True, text=True, timeout=30)
                if r.returncode != 0:
                    continue
                self.assertEqual(got[name], r.stdout.strip())


if __name__ == "__main__":
    th.main()
