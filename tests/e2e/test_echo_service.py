"""The echo-service app of seed 003, unmodified, driven over a stdin pipe (plain and with
Luau-style type annotations)."""
import os
import re
import time

import th

ANNOTATIONS = [
    # (file, plain text, annotated text)
    ("relay.lua", "local stats = {", "type Stats = {\n    messages: number,\n    workers_spawned: number,\n}\nlocal stats: Stats = {"),
    ("relay.lua", "local function stats_reporter()", "local function stats_reporter(): ()"),
    ("relay.lua", "local function main()", "local function main(): integer"),
    ("worker.lua", "local function main(sender_pid, data)", "local function main(sender_pid: string, data: string): number"),
    ("worker.lua", "local response = {", "local response: {data: string, worker: string} = {"),
    ("cli.lua", "local function dim(s)", "local function dim(s: string): string"),
    ("cli.lua", "local function main()", "local function main(): number"),
    ("cli.lua", "local input = io.readline()", "local input: string? = io.readline()"),
]


def annotate(project):
    for name, plain, typed in ANNOTATIONS:
        path = os.path.join(project, "src", name)
        text = open(path).read()
        assert plain in text, (name, plain)
        open(path, "w").write(text.replace(plain, typed, 1))


class EchoService(th.TestCase):
    def dialogue(self, project, stdin):
        # The client waits 2 s for each answer and prints "timeout" otherwise, so seeing the
        # answer below also means it came within 2 s.
        return th.run(["run", project, "-o", "app:relay-service:lifecycle.stop_timeout=1s",
                       "-x", "app:terminal/app:cli"], stdin=stdin, timeout=60)

    def check_dialogue(self, r):
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Echo Client", r.stdout)
        self.assertIn("  HELLO WORLD", r.stdout)
        self.assertNotIn("timeout", r.stdout)
        self.assertRegex(r.stdout, r"from worker: \{app:processes\|0x[0-9a-f]{5}\}")
        self.assertIn("Goodbye!", r.stdout)
        # logs go to stderr, not stdout
        self.assertNotIn("relay started", r.stdout)
        self.assertIn("relay started", r.stderr)
        m = re.search(r"worker exited (\{.*\})", r.stderr)
        self.assertTrue(m, r.stderr)
        self.assertIn('"from":"{app:processes|0x', m.group(1))
        self.assertIn('"result":{"value":0}', m.group(1))

    def test_plain_dialogue_with_empty_line(self):
        r = self.dialogue(th.copy_example("echo-service"), "hello world\n\n")
        self.check_dialogue(r)

    def test_eof_ends_the_client(self):
        r = self.dialogue(th.copy_example("echo-service"), "hello world\n")
        self.check_dialogue(r)

    def test_annotated_sources_run(self):
        project = th.copy_example("echo-service")
        annotate(project)
        self.assertIn("type Stats", open(os.path.join(project, "src/relay.lua")).read())
        r = self.dialogue(project, "hello world\nsecond line\n\n")
        self.check_dialogue(r)
        self.assertIn("  SECOND LINE", r.stdout)

    def test_stats_every_five_seconds(self):
        project = th.copy_example("echo-service")
        # keep the client alive ~6 s: the relay's stats coroutine must have logged once
        p = th.subprocess.Popen([th.BIN, "run", project, "-o", "app:relay-service:lifecycle.stop_timeout=1s",
                                 "-x", "app:cli"], stdin=th.subprocess.PIPE,
                                stdout=th.subprocess.PIPE, stderr=th.subprocess.PIPE, text=True)
        try:
            p.stdin.write("hello world\n")
            p.stdin.flush()
            time.sleep(6.0)
            out, err = p.communicate("\n", timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertEqual(p.returncode, 0, err)
        self.assertRegex(err, r'stats \{.*"messages":1')
        self.assertRegex(err, r'"workers_spawned":1')


if __name__ == "__main__":
    th.main()
