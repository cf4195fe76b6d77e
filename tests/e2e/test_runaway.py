"""Runaway Lua code never takes the host down: a busy loop is preempted (other processes on
the same host keep running), process.terminate stops it even inside pcall, and shutdown
ends it."""
import th

ENTRIES = """
- name: spin
  kind: process.lua
  source: file://spin.lua
  method: main
- name: ticker
  kind: process.lua
  source: file://ticker.lua
  method: main
  modules: [time]
"""

SPIN = """
return { main = function(mode)
  if mode == "pcall" then
    while true do pcall(function() while true do end end) end
  end
  local x = 0
  while true do x = x + 1 end
end }
"""

TICKER = """
local time = require("time")
return { main = function(n)
  for i = 1, n do time.sleep("10ms") end
  return n
end }
"""


class Runaway(th.TestCase):
    def run_main(self, lua, timeout=60):
        project = th.script_project(lua, extra_entries=ENTRIES,
                                    extra_files={"src/spin.lua": SPIN, "src/ticker.lua": TICKER})
        return th.run(["run", project, "-x", "app:main"], timeout=timeout)

    def test_busy_loops_are_preempted_and_terminated(self):
        r = self.run_main("""
local io = require("io")
local time = require("time")
return { main = function()
  local events = process.events()
  -- two spinning processes on a two-worker host, plus one that needs the CPU briefly
  local a = process.spawn_monitored("app:spin", "app:processes")
  local b = process.spawn_monitored("app:spin", "app:processes", "pcall")
  local t = process.spawn_monitored("app:ticker", "app:processes", 20)
  local ev = events:receive()
  io.print("first exit", ev.from == t, tostring(ev.result.value))
  assert(process.terminate(a))
  assert(process.terminate(b))
  for _ = 1, 2 do
    ev = events:receive()
    io.print("terminated", ev.from == a or ev.from == b, tostring(ev.result.error))
  end
  return 0
end }
""")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("first exit\ttrue\t20", r.stdout)
        self.assertEqual(r.stdout.count("terminated\ttrue\tterminated"), 2, r.stdout)

    def test_shutdown_ends_a_busy_service(self):
        project = th.script_project(
            'local time = require("time")\nreturn { main = function() time.sleep("200ms") return 0 end }',
            extra_entries=ENTRIES + """
- name: spin-service
  kind: process.service
  process: spin
  host: processes
  lifecycle:
    auto_start: true
    stop_timeout: 200ms
""", extra_files={"src/spin.lua": SPIN, "src/ticker.lua": TICKER})
        r = th.run(["run", project, "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("terminating it", r.stderr)

    def test_busy_loop_at_chunk_top_level_is_terminated_at_shutdown(self):
        project = th.script_project(
            'local time = require("time")\nreturn { main = function() time.sleep("100ms") return 0 end }',
            extra_entries="""
- name: stuck
  kind: process.lua
  source: file://stuck.lua
  method: main
- name: stuck-service
  kind: process.service
  process: stuck
  host: processes
  lifecycle:
    auto_start: true
    stop_timeout: 100ms
""", extra_files={"src/stuck.lua": "while true do end\nreturn {}\n",
                  "taskhost.yaml": "shutdown:\n  timeout: 200ms\n"})
        r = th.run(["run", project, "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    th.main()
