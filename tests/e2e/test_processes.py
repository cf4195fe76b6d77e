"""Process semantics through the real binary: spawn/monitor/EXIT results, send by name,
channels and select, messages keep integer types, sandbox, supervision with backoff."""
import re

import th

WORKER_ENTRIES = """
- name: boom
  kind: process.lua
  source: file://boom.lua
  method: main
  modules: [time]
- name: echo
  kind: process.lua
  source: file://echo.lua
  method: main
  modules: [process]
"""

BOOM = """
local function main(mode)
  if mode == "raise" then error("kaboom") end
  if mode == "return_err" then return nil, "soft failure" end
  return {answer = 42, list = {1, 2, 3}}
end
return { main = main }
"""

ECHO = """
local function main()
  local inbox = process.inbox()
  while true do
    local msg = inbox:receive()
    if msg:topic() == "stop" then return "stopped" end
    local p = msg:payload():data()
    process.send(p.reply_to, "echo", p.value, math.type(p.value))
  end
end
return { main = main }
"""


def run_script(test, lua, entries="", files=None, timeout=60, expect_code=0,
               modules="[io, process, time, channel, logger, json, env]"):
    f = {"src/boom.lua": BOOM, "src/echo.lua": ECHO}
    f.update(files or {})
    project = th.script_project(lua, extra_entries=WORKER_ENTRIES + entries, extra_files=f,
                                modules=modules)
    r = th.run(["run", project, "-x", "app:main"], timeout=timeout)
    test.assertEqual(r.returncode, expect_code, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


class Processes(th.TestCase):
    def test_log_lines_cannot_be_forged(self):
        r = run_script(self, r"""
local logger = require("logger")
local function main()
  logger:info("one\n2026-01-01T00:00:00.000Z ERROR forged", {k = "v\nw"})
  print("two\r\nERROR also forged \27[31m")
  error("three\nERROR forged by an error")
end
return { main = main }
""", expect_code=1)
        lines = r.stderr.splitlines()
        self.assertFalse([l for l in lines if l.startswith(("2026-01-01", "ERROR also"))], r.stderr)
        self.assertIn(r"failed: src/main.lua:5: three\nERROR forged by an error", r.stderr)
        self.assertIn(r"one\n2026-01-01T00:00:00.000Z ERROR forged", r.stderr)
        self.assertIn(r'"k":"v\nw"', r.stderr)
        self.assertIn(r"two\r\nERROR also forged \x1b[31m", r.stderr)
        # (the -x program's own error is then printed as is, like lua(1) does: "three" + newline)

    def test_exit_events_carry_value_and_error(self):
        r = run_script(self, """
local io = require("io")
local function main()
  local events = process.events()
  for _, mode in ipairs({"ok", "raise", "return_err"}) do
    local pid, err = process.spawn_monitored("app:boom", "app:processes", mode)
    assert(pid, tostring(err))
    local ev = events:receive()
    assert(ev.kind == process.event.EXIT, ev.kind)
    assert(ev.from == pid, "from " .. tostring(ev.from) .. " vs " .. pid)
    local res = ev.result
    if res.error then
      io.print(mode, "error", tostring(res.error), res.error:kind())
    else
      io.print(mode, "value", res.value.answer, #res.value.list, math.type(res.value.answer))
    end
  end
  return 0
end
return { main = main }
""")
        self.assertIn("ok\tvalue\t42\t3\tinteger", r.stdout)
        self.assertRegex(r.stdout, r"raise\terror\t.*kaboom")
        self.assertIn("return_err\terror\tsoft failure", r.stdout)

    def test_send_to_unknown_name_returns_nil_err(self):
        r = run_script(self, """
local io = require("io")
return { main = function()
  local ok, err = process.send("nobody-here", "x", 1)
  io.print(tostring(ok), tostring(err), err:kind())
  local ok2, err2 = process.send("{app:processes|0xfffff}", "x", 1)
  io.print(tostring(ok2), err2 ~= nil)
  return 0
end }
""")
        self.assertIn("nil\tcould not resolve: nobody-here\tNOT_FOUND", r.stdout)
        self.assertIn("nil\ttrue", r.stdout)

    def test_messages_round_trip_by_registered_name(self):
        r = run_script(self, """
local io = require("io")
return { main = function()
  local pid = process.spawn("app:echo", "app:processes")
  assert(process.registry.register("echo-svc", pid))
  assert(process.registry.lookup("echo-svc") == pid)
  local inbox = process.inbox()
  for _, v in ipairs({7, 7.5, "s", true}) do
    assert(process.send("echo-svc", "ping", {reply_to = process.pid(), value = v}))
    local m = inbox:receive()
    local payloads = m:payload()
    io.print(m:topic(), tostring(payloads[1]:data()), tostring(payloads[2]:data()), m:from() == pid)
  end
  process.send(pid, "stop")
  local ok, err = process.send(process.pid(), "x", function() end)
  io.print("function:", tostring(ok), tostring(err))
  return 0
end }
""")
        self.assertIn("echo\t7\tinteger\ttrue", r.stdout)
        self.assertIn("echo\t7.5\tfloat\ttrue", r.stdout)
        self.assertIn("echo\ts\tnil\ttrue", r.stdout)
        self.assertRegex(r.stdout, r"function:\tnil\t.*function")

    def test_channels_select_and_timers(self):
        r = run_script(self, """
local io = require("io")
local time = require("time")
return { main = function()
  local ch = channel.new()
  local buf = channel.new(2)
  local out = {}
  coroutine.spawn(function()
    for i = 1, 3 do ch:send(i) end
    ch:close()
  end)
  while true do
    local v, ok = ch:receive()
    if not ok then break end
    out[#out + 1] = v
  end
  io.print("unbuffered", table.concat(out, ","))
  buf:send("a"); buf:send("b")
  local r = channel.select{ buf:case_send("c"), default = true }
  io.print("full buffer select default", tostring(r.default))
  r = channel.select{ ch:case_receive(), buf:case_receive() }
  io.print("closed first", r.channel == ch, tostring(r.ok), tostring(r.value))
  local timeout = time.after("50ms")
  local never = channel.new()
  local t0 = time.now()
  r = channel.select{ never:case_receive(), timeout:case_receive() }
  local waited = time.now():sub(t0):milliseconds()
  io.print("timeout fired", r.channel == timeout, waited >= 40)
  local order = {}
  coroutine.spawn(function() order[#order + 1] = "child" end)
  order[#order + 1] = "parent"
  io.print("spawn order", table.concat(order, ","))
  local ok, err = pcall(function() ch:send(1) end)
  io.print("send on closed", ok, tostring(err):match("closed") ~= nil)
  time.sleep("10ms")
  return 0
end }
""")
        self.assertIn("unbuffered\t1,2,3", r.stdout)
        self.assertIn("full buffer select default\ttrue", r.stdout)
        self.assertIn("closed first\ttrue\tfalse\tnil", r.stdout)
        self.assertIn("timeout fired\ttrue\ttrue", r.stdout)
        self.assertIn("spawn order\tchild,parent", r.stdout)
        self.assertIn("send on closed\tfalse\ttrue", r.stdout)

    def test_listen_routes_topics_before_the_inbox(self):
        r = run_script(self, """
local io = require("io")
local time = require("time")
return { main = function()
  local me = process.pid()
  process.send(me, "early.a", "queued before listen")
  local raw = process.listen("early.*")
  local full = process.listen("exact", {message = true})
  local inbox = process.inbox()
  process.send(me, "exact", 1, 2)
  process.send(me, "other", "to inbox")
  io.print("glob", raw:receive())
  local m = full:receive()
  io.print("message", m:topic(), #m:payload(), m:payload()[2]:data())
  io.print("inbox", inbox:receive():payload():data())
  assert(process.unlisten(raw))
  local v, ok = raw:receive()
  io.print("after unlisten", tostring(v), tostring(ok))
  process.send(me, "early.b", "back to inbox")
  io.print("inbox again", inbox:receive():topic())
  local tk = time.ticker("10ms")
  local ticks = 0
  for i = 1, 3 do tk:channel():receive(); ticks = ticks + 1 end
  tk:stop()
  channel.select{ tk:channel():case_receive(), default = true }  -- a tick buffered before stop
  local r = channel.select{ tk:channel():case_receive(), time.after("50ms"):case_receive() }
  io.print("ticks", ticks, "after stop", r.channel == tk:channel() and "tick" or "quiet")
  return 0
end }
""")
        self.assertIn("glob\tqueued before listen", r.stdout)
        self.assertIn("message\texact\t2\t2", r.stdout)
        self.assertIn("inbox\tto inbox", r.stdout)
        self.assertIn("after unlisten\tnil\tfalse", r.stdout)
        self.assertIn("inbox again\tearly.b", r.stdout)
        self.assertIn("ticks\t3\tafter stop\tquiet", r.stdout)

    def test_memory_limit_fails_only_the_greedy_process(self):
        greedy = """
return { main = function()
  local t = {}
  for i = 1, 1e8 do t[i] = ("x"):rep(100) .. i end
end }
"""
        r = run_script(self, """
local io = require("io")
return { main = function()
  local events = process.events()
  process.spawn_monitored("app:greedy", "app:processes")
  local ev = events:receive()
  io.print("greedy", tostring(ev.result.error))
  local pid = process.spawn_monitored("app:boom", "app:processes", "ok")
  io.print("next", events:receive().result.value.answer)
  return 0
end }
""", entries="""
- name: greedy
  kind: process.lua
  source: file://greedy.lua
  method: main
""", files={"src/greedy.lua": greedy, "taskhost.yaml": "limits:\n  process_memory: 4MB\n"})
        self.assertIn("greedy\tnot enough memory", r.stdout)
        self.assertIn("next\t42", r.stdout)

    def test_hide_logs_silences_the_log_while_the_terminal_process_runs(self):
        index = th.TERMINAL_HEADER.replace("kind: terminal.host\n", "kind: terminal.host\n    hide_logs: true\n")
        project = th.make_project({
            "src/_index.yaml": th.textwrap.dedent(index).lstrip("\n") + """
  - name: main
    kind: process.lua
    source: file://main.lua
    method: main
    modules: [logger, io]
""",
            "src/main.lua": 'local logger = require("logger")\nreturn { main = function() logger:info("hidden line") require("io").print("done") return 0 end }\n'})
        r = th.run(["run", project, "-x", "app:main"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "done\n")
        self.assertNotIn("hidden line", r.stderr)

    def test_imports_and_env(self):
        lib = """
local M = {}
function M.greet(name) return "hello " .. name end
return M
"""
        entries = """
- name: greeter
  kind: library.lua
  source: file://greeter.lua
- name: port
  kind: env.variable
  variable: TASKHOST_TEST_PORT
  default: "8123"
"""
        project = th.script_project("""
local io = require("io")
local g = require("words")
local env = require("env")
return { main = function()
  io.print(g.greet("lua"), require("words") == g)
  io.print("port", env.get("TASKHOST_TEST_PORT"), env.get("app:port"))
  io.print("home", env.get("TASKHOST_TEST_HOME"))
  local v, err = env.get("TASKHOST_SURELY_UNSET_VAR")
  io.print("unset", tostring(v), err and err:kind())
  local ok, e = pcall(require, "nothere")
  io.print("missing", ok, tostring(e):match("not found") ~= nil)
  return 0
end }
""", extra_entries=entries, extra_files={"src/greeter.lua": lib}, modules="[io, env]",
            imports="{words: greeter}")
        r = th.run(["run", project, "-x", "app:main"], env={"TASKHOST_TEST_HOME": "/h"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("hello lua\ttrue", r.stdout)
        self.assertIn("port\t8123\t8123", r.stdout)
        self.assertIn("home\t/h", r.stdout)
        self.assertIn("unset\tnil\tNOT_FOUND", r.stdout)
        self.assertIn("missing\tfalse\ttrue", r.stdout)

    def test_sandbox(self):
        r = run_script(self, """
local io = require("io")
return { main = function()
  io.print("load", type(load), "dofile", type(dofile), "debug", type(debug))
  io.print("os", type(os.time), type(os.execute), type(os.getenv))
  io.print("require json", pcall(require, "json"))
  local ok, err = pcall(require, "http")
  io.print("require http", ok, tostring(err):match("not") ~= nil)
  return 0
end }
""", modules="[io]")
        self.assertIn("load\tnil\tdofile\tnil\tdebug\tnil", r.stdout)
        self.assertIn("os\tfunction\tnil\tnil", r.stdout)
        self.assertIn("require json\tfalse", r.stdout)
        self.assertIn("require http\tfalse\ttrue", r.stdout)

    def test_exit_codes_follow_main_result(self):
        for ret, code, out in [("0", 0, ""), ("3", 3, ""), ("true", 0, ""), ("false", 1, ""),
                               ('"text"', 0, "text\n")]:
            project = th.script_project(f"return {{ main = function() return {ret} end }}")
            r = th.run(["run", project, "-x", "app:main"])
            self.assertEqual(r.returncode, code, (ret, r.stderr))
            self.assertEqual(r.stdout, out, ret)
        project = th.script_project('return { main = function() error("bad thing") end }')
        r = th.run(["run", project, "-x", "app:main"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad thing", r.stderr)

    def test_cli_args_reach_main(self):
        project = th.script_project("""
local io = require("io")
return { main = function(a, b) io.print(a, b, select("#", a, b)) return 0 end }
""")
        r = th.run(["run", project, "-x", "app:terminal/app:main", "one", "two words"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("one\ttwo words\t2", r.stdout)

    def test_crashing_service_restarts_with_backoff(self):
        crash = """
local logger = require("logger")
return { main = function()
  logger:info("crasher up")
  error("crash on purpose")
end }
"""
        entries = """
- name: crasher
  kind: process.lua
  source: file://crasher.lua
  method: main
  modules: [logger]
- name: crasher-service
  kind: process.service
  process: crasher
  host: processes
  lifecycle:
    auto_start: true
"""
        main = """
local time = require("time")
return { main = function() time.sleep("5s") return 0 end }
"""
        project = th.script_project(main, extra_entries=entries + WORKER_ENTRIES,
                                    extra_files={"src/crasher.lua": crash, "src/boom.lua": BOOM,
                                                 "src/echo.lua": ECHO})
        r = th.run(["run", project, "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        starts = r.stderr.count("crasher up")
        self.assertEqual(starts, 3, r.stderr)      # t=0, ~1 s, ~3 s; the next would be ~7 s
        delays = [float(x) for x in re.findall(r"restarting in ([0-9.]+)s \(attempt \d+\)", r.stderr)]
        self.assertGreaterEqual(len(delays), 2, r.stderr)
        self.assertTrue(0.9 <= delays[0] <= 1.1, delays)
        self.assertTrue(1.8 <= delays[1] <= 2.2, delays)
        self.assertIn("crash on purpose", r.stderr)


if __name__ == "__main__":
    th.main()
