"""scripts/check-layers: passes on the tree as it is, and fails naming the file, the line and the
include (or the symbol) when a file reaches a layer above its own. Each failing case runs the
script on a copy of host/ with one planted problem."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import th

SCRIPT = os.path.join(th.ROOT, "scripts", "check-layers")


def run_check(root, *args):
    return subprocess.run([sys.executable, os.path.join(root, "scripts", "check-layers"), *args],
                          capture_output=True, text=True, timeout=120)


class CheckLayers(th.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="taskhost-layers-")
        os.makedirs(os.path.join(self.root, "scripts"))
        shutil.copy(SCRIPT, os.path.join(self.root, "scripts"))
        shutil.copytree(os.path.join(th.ROOT, "host"), os.path.join(self.root, "host"))

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def plant(self, rel, line):
        """Adds `line` after the first #include of host/rel; returns its line number."""
        path = os.path.join(self.root, "host", rel)
        with open(path) as f:
            lines = f.read().split("\n")
        at = next(i for i, l in enumerate(lines) if l.startswith("#include")) + 1
        lines.insert(at, line)
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return at + 1

    def assert_fails(self, *needles):
        r = run_check(self.root, "--no-objects")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for n in needles:
            self.assertIn(n, r.stdout)

    def test_the_tree_passes(self):
        r = run_check(th.ROOT, "--no-objects")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("every arrow points down", r.stdout)
        r = run_check(self.root, "--no-objects")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_an_include_from_above_fails_naming_file_line_and_include(self):
        n = self.plant("http/http.c", '#include "jobs/jobapi.h"')
        self.assert_fails(f'host/http/http.c:{n}: includes "jobs/jobapi.h": jobs/ is above http/')

    def test_a_bare_include_of_another_folder_fails(self):
        n = self.plant("runtime/luaenv.c", '#include "linit.h"')
        self.assert_fails(f'host/runtime/luaenv.c:{n}: includes "linit.h": not a header of runtime/')

    def test_a_path_out_of_host_fails(self):
        self.plant("base/util.c", '#include "../value/json.h"')
        self.assert_fails('host/base/util.c:', 'name a header as "folder/name.h"')

    def test_a_file_outside_the_layer_folders_fails(self):
        with open(os.path.join(self.root, "host", "stray.c"), "w") as f:
            f.write("int stray;\n")
        self.assert_fails("host/stray.c: not in a layer folder")

    def test_a_symbol_from_above_fails_when_objects_are_given(self):
        # two objects built here: a base/ file calling a function a lua/ file defines
        objs = os.path.join(self.root, "objs")
        for rel, text in (("base/low.c", "int lmod_thing(void);\nint low(void) { return lmod_thing(); }\n"),
                          ("lua/lmod_thing.c", "int lmod_thing(void) { return 1; }\n")):
            src = os.path.join(self.root, "src_" + os.path.basename(rel))
            with open(src, "w") as f:
                f.write(text)
            os.makedirs(os.path.join(objs, os.path.dirname(rel)), exist_ok=True)
            subprocess.run(["cc", "-c", src, "-o", os.path.join(objs, rel + ".o")], check=True)
        r = run_check(self.root, "--objects", objs)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("host/base/low.c: uses lmod_thing, defined in host/lua/lmod_thing.c "
                      "(lua/ is above base/)", r.stdout)

    def test_knots_name_files_that_use_each_other(self):
        objs = os.path.join(self.root, "objs")
        os.makedirs(os.path.join(objs, "runtime"))
        for name, text in (("a", "int b(void);\nint a(void) { return b(); }\n"),
                           ("b", "int a(void);\nint b(void) { return a(); }\n"),
                           ("c", "int a(void);\nint c(void) { return a(); }\n")):
            src = os.path.join(self.root, name + ".c")
            with open(src, "w") as f:
                f.write(text)
            subprocess.run(["cc", "-c", src, "-o", os.path.join(objs, "runtime", name + ".c.o")],
                           check=True)
        r = run_check(self.root, "--knots", objs)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("3 objects, 1 circle(s)", r.stdout)
        self.assertIn("2: runtime/a.c runtime/b.c", r.stdout)


if __name__ == "__main__":
    unittest.main()
