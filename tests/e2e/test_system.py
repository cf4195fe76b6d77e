"""e2e: the system module (issue 13): memory stats, hosts.list, processes(host), runtime
counts that move when processes are spawned, modules(), gc.collect, and system.exit —
from a terminal-host process it ends the host with that code; elsewhere nil, PERMISSION_DENIED.
"""
import json

import th

MAIN = """
local io = require("io")
local json = require("json")
local system = require("system")
local time = require("time")

local function spawn_workers(n)
  local pids = {}
  for i = 1, n do pids[i] = process.spawn("app:worker", "app:processes") end
  return pids
end

local modes = {}

function modes.stats()
  local out = {memory = system.memory.stats(), hosts = system.hosts.list(),
               modules = system.modules(), freed = system.gc.collect()}
  out.before = system.runtime.stats()
  out.pids = spawn_workers(3)
  out.after = system.runtime.stats()
  out.procs = system.processes("app:processes")
  local none, err = system.processes("app:nope")
  out.none = {none == nil, err:kind(), err:message()}
  out.raised = not pcall(system.processes)
  for _, pid in ipairs(out.pids) do process.send(pid, "stop") end
  return out
end

function modes.denied()
  local pid = process.spawn("app:exiter", "app:processes", process.pid())
  local msg = process.inbox():receive()
  return msg:payload():data()
end

function modes.exit_return() system.exit(7) return 0 end
function modes.exit_sleep() system.exit(9) time.sleep("60s") return 0 end
function modes.exit_bad()
  local ok, err = system.exit(256)
  return {ok == nil, err:kind(), not pcall(system.exit, "x")}
end

local function main(mode)
  local r = modes[mode]()
  if type(r) == "table" then io.print(json.encode(r)) return 0 end
  return r
end
return {main = main}
"""

EXTRA = """
- name: worker
  kind: process.lua
  source: file://worker.lua
  method: main
  modules: [time]
- name: exiter
  kind: process.lua
  source: file://exiter.lua
  method: main
  modules: [system]
"""

WORKER = """
local function main() process.inbox():receive() end
return {main = main}
"""

EXITER = """
local system = require("system")
local function main(parent)
  local ok, err = system.exit(3)
  process.send(parent, "r", {ok == nil, err:kind(), err:message()})
end
return {main = main}
"""


def project():
    return th.script_project(MAIN, extra_entries=EXTRA,
                             extra_files={"src/worker.lua": WORKER, "src/exiter.lua": EXITER,
                                          "taskhost.yaml": "shutdown:\n  timeout: 1s\n"},
                             modules="[io, json, time, system]")


class System(th.TestCase):
    def run_mode(self, mode):
        return th.run(["run", project(), "--no-watch", "-x", "app:main", mode], timeout=60)

    def test_stats_hosts_processes_and_runtime(self):
        r = self.run_mode("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        mem = out["memory"]
        for k in ("lua_bytes", "heap_bytes", "heap_system_bytes", "rss_bytes"):
            self.assertIsInstance(mem[k], int, k)
            self.assertGreater(mem[k], 0, k)
        self.assertEqual(mem["lua_limit"], 256 << 20)
        self.assertGreaterEqual(mem["heap_system_bytes"], mem["heap_bytes"] // 2)
        hosts = {h["id"]: h for h in out["hosts"]}
        self.assertEqual(set(hosts), {"app:terminal", "app:processes"})
        self.assertEqual(hosts["app:processes"]["kind"], "process.host")
        self.assertEqual(hosts["app:processes"]["workers"], 2)
        self.assertEqual(hosts["app:terminal"]["kind"], "terminal.host")
        self.assertEqual(hosts["app:terminal"]["processes"], 1)     # main itself
        self.assertIn("system", out["modules"])
        self.assertIn("metrics", out["modules"])
        self.assertEqual(out["modules"], sorted(out["modules"]))
        self.assertIsInstance(out["freed"], int)
        self.assertEqual(out["after"]["processes"], out["before"]["processes"] + 3)
        self.assertEqual(out["before"]["hosts"], 2)
        self.assertEqual(out["before"]["terminal_hosts"], 1)
        self.assertGreaterEqual(out["before"]["workers"], 3)
        procs = {p["pid"]: p for p in out["procs"]}
        self.assertEqual(set(procs), set(out["pids"]))
        self.assertEqual({p["entry"] for p in out["procs"]}, {"app:worker"})
        self.assertEqual(out["none"][:2], [True, "NOT_FOUND"])
        self.assertIn("app:nope", out["none"][2])
        self.assertTrue(out["raised"])

    def test_exit_from_the_terminal_process_ends_the_host_with_its_code(self):
        r = self.run_mode("exit_return")
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn("system.exit(7): shutting down", r.stderr)
        r = self.run_mode("exit_sleep")      # main still sleeping: shutdown cancels it
        self.assertEqual(r.returncode, 9, r.stderr)

    def test_exit_elsewhere_is_denied_and_bad_codes_refused(self):
        r = self.run_mode("denied")
        self.assertEqual(r.returncode, 0, r.stderr)
        kind_ok = json.loads(r.stdout)
        self.assertEqual(kind_ok[:2], [True, "PERMISSION_DENIED"])
        self.assertIn("terminal host", kind_ok[2])
        self.assertNotIn("system.exit(", r.stderr)
        r = self.run_mode("exit_bad")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), [True, "INVALID", True])

    def test_absent_unless_listed(self):
        d = th.script_project('local function main() return require("system") ~= nil end\nreturn {main = main}\n',
                              modules="[io]")
        r = th.run(["run", d, "--no-watch", "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("system", r.stderr)


if __name__ == "__main__":
    th.main()
