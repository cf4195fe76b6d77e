"""e2e: editor stubs (issue 15). host/lua/modules.lua is the one description of the Lua side;
`taskhost stubs` writes LuaLS meta files from it, `--readme` the README's module table,
`--list` its names. Checked here:
- the description matches the running host both ways: a program under `run -x` requires
  every module and walks every global, and makes one object of each class it can without
  an outside server (a local http.service, a memory queue and a sqlite :memory: entry are
  part of its project), and lists their names; they must equal `stubs --list`'s;
- README's table is the generated one;
- the stub files parse (luac5.4 -p), every ---@param names a parameter, and the stubs check
  the example apps: scripts/check-stubs.lua (luacheck's parser) finds every field read on
  a host module or global declared, and luacheck with the std it writes finds no undefined
  global or field; the checker fails on a typo; lua-language-server --check runs where it
  is installed (not here);
- `init` writes the stubs and a .luarc.json, and keeps an existing one; exit codes.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile

import th

CHECKER = os.path.join(th.ROOT, "scripts", "check-stubs.lua")

# Lua 5.4's own names: the description declares only what the host adds.
LUA_BASE = {"assert", "collectgarbage", "dofile", "error", "getmetatable", "ipairs", "load",
            "loadfile", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawlen", "rawset",
            "require", "select", "setmetatable", "tonumber", "tostring", "type", "warn", "xpcall",
            "_G", "_VERSION", "string", "table", "math", "coroutine", "os", "io", "utf8", "debug",
            "package"}
LUA_COROUTINE = {"close", "create", "isyieldable", "resume", "running", "status", "wrap", "yield"}

MODULES = ["time", "logger", "json", "io", "env", "http", "http_client", "queue", "uuid", "hash",
           "base64", "crypto", "events", "registry", "metrics", "system", "funcs", "ctx", "sql"]
GLOBALS = ["process", "channel", "errors", "payload", "coroutine", "os"]

# names(v [, flat]): a table's members as "a" (with flat, sub-tables as "a.b", as modules
# have them), ":m" for methods of its metatable's __index; a userdata's methods.
NAMES_LUA = r"""
local function names(v, flat, prefix, out, seen)
  out, prefix, seen = out or {}, prefix or "", seen or {}
  if type(v) == "table" then
    if seen[v] then return out end
    seen[v] = true
    for k, x in pairs(v) do
      if type(k) == "string" then
        if flat and type(x) == "table" and getmetatable(x) == nil then names(x, flat, prefix .. k .. ".", out, seen)
        else out[#out + 1] = (flat and "" or ".") .. prefix .. k end
      end
    end
  end
  local mt = getmetatable(v)
  if prefix == "" and type(mt) == "table" and type(mt.__index) == "table" and mt.__index ~= v then
    for k in pairs(mt.__index) do out[#out + 1] = ":" .. k end
  end
  return out
end
"""

MAIN = NAMES_LUA + r"""
local io, json, time = require("io"), require("json"), require("time")
local sql, funcs, events = require("sql"), require("funcs"), require("events")
local registry, queue, http_client = require("registry"), require("queue"), require("http_client")

local function main(port)
  local out = {modules = {}, globals = {}, classes = {}, base = {}}
  for _, m in ipairs({@MODULES@}) do out.modules[m] = names(require(m), true) end
  for _, g in ipairs({@GLOBALS@}) do out.globals[g] = names(_G[g], true) end
  for k in pairs(_G) do out.base[#out.base + 1] = k end
  local c = out.classes
  c.Time = names(time.now())
  c.Duration = names(time.parse_duration("1s"))
  local ticker = time.ticker("1h")
  c["time.Ticker"] = names(ticker)
  ticker:stop()
  c.Channel = names(channel.new())
  c.Error = names(errors.new("x"))
  c.Logger = names(require("logger"):with({a = 1}))
  local db = assert(sql.get("app:db"))
  c.DB = names(db)
  local tx = assert(db:begin())
  c.Tx = names(tx)
  tx:rollback()
  c.Stmt = names(assert(db:prepare("select 1")))
  local fut = funcs.async("app:f")
  c.Future = names(fut)
  fut:result()
  c["funcs.Executor"] = names(funcs.new())
  local sub = assert(events.subscribe("stubs.test"))
  c.Subscription = names(sub)
  sub:close()
  local snap = registry.snapshot()
  c["registry.Snapshot"] = names(snap)
  c["registry.Version"] = names(registry.current_version())
  c["registry.Entry"] = names(registry.get("app:db"))
  c["registry.Changes"] = names(snap:changes())
  c["registry.History"] = {}
  for _, n in ipairs(names(registry.history(), true)) do table.insert(c["registry.History"], ":" .. n) end
  process.send(process.pid(), "t", 1)
  local msg = process.inbox():receive()
  c.Message = names(msg)
  c.Payload = names(payload.new(1))
  -- a handler's request and response (it answers their names) and the client's response
  local url = "http://127.0.0.1:" .. port .. "/names"
  local res = assert(http_client.get(url))
  c["http_client.Response"] = names(res)
  local h = json.decode(res.body)
  c["http.Request"], c["http.Response"] = h.req, h.res
  local sres = assert(http_client.get(url, {stream = true}))
  c["http_client.Stream"] = names(sres.stream)
  for _, n in ipairs(names(sres)) do       -- the optional fields: stream (nil without stream = true)
    if n == ".stream" then table.insert(c["http_client.Response"], n) end
  end
  sres.stream:close()
  -- a consumer's job and message (the job's result is their names)
  local id = assert(queue.publish("app:jobs", {n = 1}))
  local job
  for _ = 1, 1000 do
    job = assert(queue.get("app:jobs", id))
    if job.state == "done" or job.state == "failed" then break end
    time.sleep("10ms")
  end
  assert(job.state == "done", json.encode(job))
  c["queue.Message"], c["queue.Job"] = job.result.msg, job.result.job
  io.print(json.encode(out))
  return 0
end
return {main = main}
""".replace("@MODULES@", ", ".join(f'"{m}"' for m in MODULES)).replace(
    "@GLOBALS@", ", ".join(f'"{g}"' for g in GLOBALS))

HANDLER = NAMES_LUA + r"""
local http, json = require("http"), require("json")
local function handler()
  local req, res = http.request(), http.response()
  res:set_content_type("application/json")
  res:write(json.encode({req = names(req), res = names(res)}))
end
return {handler = handler}
"""

WORK = NAMES_LUA + r"""
local queue = require("queue")
local function work()
  return {msg = names(queue.message()), job = names(queue.job())}
end
return {work = work}
"""

EXTRA = """
- name: db
  kind: db.sql.sqlite
  file: ":memory:"
- name: f
  kind: function.lua
  source: file://f.lua
  method: main
- name: gateway
  kind: http.service
  addr: ":8080"
  lifecycle: {auto_start: true}
- name: api
  kind: http.router
  meta: {server: app:gateway}
- name: names
  kind: function.lua
  source: file://handler.lua
  method: handler
  modules: [http, json]
- name: names.ep
  kind: http.endpoint
  meta: {router: app:api}
  method: GET
  path: /names
  func: app:names
- name: jobs
  kind: queue.queue
  driver: memory
- name: work
  kind: function.lua
  source: file://work.lua
  method: work
  modules: [queue]
- name: work.consumer
  kind: queue.consumer
  queue: app:jobs
  func: app:work
  lifecycle: {auto_start: true}
"""


def read(path):
    with open(path) as f:
        return f.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stubs_list():
    r = th.run(["stubs", "--list"], timeout=30)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        kind, owner, member = line.split("\t")
        out.setdefault((kind, owner), set()).add(member)
    return out


def write_stubs():
    d = tempfile.mkdtemp(prefix="taskhost-stubs-")
    r = th.run(["stubs", d], timeout=30)
    assert r.returncode == 0, r.stderr
    return d


def check_stubs(stubdir, *paths, rc=None):
    args = ["lua5.1", CHECKER] + (["--luacheckrc", rc] if rc else []) + [stubdir] + list(paths)
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


class Description(th.TestCase):
    """The description against the running host: every name it exposes is declared, every
    declared name is real."""

    @classmethod
    def setUpClass(cls):
        port = free_port()
        d = th.script_project(MAIN, extra_entries=EXTRA, modules="[" + ", ".join(MODULES) + "]",
                              extra_files={"src/f.lua": "return {main = function() return 1 end}\n",
                                           "src/handler.lua": HANDLER, "src/work.lua": WORK})
        r = th.run(["run", d, "--no-watch", "-o", f"app:gateway:addr=127.0.0.1:{port}",
                    "-x", "app:main", str(port)], timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        cls.host = json.loads(r.stdout)
        cls.desc = stubs_list()

    def compare(self, kind, owner, real, ignore=()):
        declared = self.desc.get((kind, owner), set())
        real = set(real) - set(ignore)
        self.assertEqual(sorted(real - declared), [], f"{owner}: exposed by the host, not in modules.lua")
        self.assertEqual(sorted(declared - real), [], f"{owner}: in modules.lua, not in the host")

    def test_modules(self):
        self.assertEqual(sorted(self.host["modules"]), sorted(MODULES))
        for m, real in self.host["modules"].items():
            self.assertGreater(len(real), 0, m)
            self.compare("module", m, real)
        owners = {o for (k, o) in self.desc if k == "module"}
        self.assertEqual(sorted(owners), sorted(MODULES))

    def test_globals(self):
        for g, real in self.host["globals"].items():
            self.compare("global", g, real, ignore=LUA_COROUTINE if g == "coroutine" else ())
        self.assertEqual(self.desc[("global", "coroutine")], {"spawn"})
        owners = {o for (k, o) in self.desc if k == "global"}
        self.assertEqual(sorted(owners), sorted(GLOBALS))
        extra = set(self.host["base"]) - LUA_BASE - set(GLOBALS)
        self.assertEqual(sorted(extra), sorted(self.desc[("function", "_G")]))

    def test_classes(self):
        made = self.host["classes"]
        self.assertGreaterEqual(len(made), 24)
        for cls, real in made.items():
            self.assertIn(("class", cls), self.desc, f"class {cls} is not described")
            self.assertGreater(len(real), 0, cls)
            self.compare("class", cls, real)
        # the one described class no object stands for: the options a caller passes
        unmade = {o for (k, o) in self.desc if k == "class"} - set(made)
        self.assertEqual(sorted(unmade), ["http_client.Options"])


class Readme(th.TestCase):
    def test_readme_block_is_generated(self):
        r = th.run(["stubs", "--readme"], timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = read(os.path.join(th.ROOT, "README.md"))
        m = re.search(r"<!-- modules:begin[^>]*-->\n(.*?)<!-- modules:end -->", text, re.S)
        self.assertIsNotNone(m, "README has no <!-- modules:begin --> ... <!-- modules:end --> block")
        self.assertEqual(m.group(1), r.stdout,
                         "README's module table differs from `taskhost stubs --readme`; "
                         "edit host/lua/modules.lua, build, run scripts/gen-readme-modules")
        self.assertEqual(len([l for l in r.stdout.splitlines() if l.startswith("| `")]), 22)


class StubFiles(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = write_stubs()
        cls.files = sorted(os.listdir(cls.dir))

    def test_one_file_per_module_and_global(self):
        self.assertEqual(self.files, sorted([m + ".lua" for m in MODULES + GLOBALS] + ["globals.lua"]))
        for m in MODULES:
            text = read(os.path.join(self.dir, m + ".lua"))
            self.assertTrue(text.startswith(f"---@meta {m}\n"), m)
            self.assertTrue(text.rstrip().endswith(f"return {m}"), m)
        time_stub = read(os.path.join(self.dir, "time.lua"))
        self.assertIn("---@param d DurationLike\nfunction time.sleep(d) end",
                      time_stub)
        self.assertIn("---@class Time\nlocal Time = {}", time_stub)
        self.assertIn("---@overload fun(t: {message?: string", read(os.path.join(self.dir, "errors.lua")))

    def test_files_declare_exactly_the_description(self):
        # the stub files, as a reader of them sees them, against `stubs --list` (which the
        # Description tests hold against the host): no name lost or made up on the way
        r = subprocess.run(["lua5.1", CHECKER, "--dump", self.dir], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        in_files = set(r.stdout.splitlines())
        described = {f"{k}\t{o}\t{m.lstrip(':')}" for (k, o), ms in stubs_list().items()
                     if k in ("module", "global") for m in ms}
        self.assertEqual(sorted(in_files - described), [])
        self.assertEqual(sorted(described - in_files), [])
        self.assertGreater(len(in_files), 200)

    def test_every_file_parses_with_lua54(self):
        for f in self.files:
            r = subprocess.run(["luac5.4", "-p", os.path.join(self.dir, f)], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, f + r.stderr)

    def test_params_name_parameters(self):
        r = check_stubs(self.dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        d = tempfile.mkdtemp(prefix="taskhost-stubs-")
        shutil.copytree(self.dir, d, dirs_exist_ok=True)
        p = os.path.join(d, "time.lua")
        text = read(p).replace("---@param d DurationLike\n", "---@param dd DurationLike\n", 1)
        with open(p, "w") as f:
            f.write(text)
        r = check_stubs(d)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("---@param dd names no parameter of time.sleep", r.stdout)


class Examples(th.TestCase):
    """The example apps against the stubs."""

    @classmethod
    def setUpClass(cls):
        cls.dir = write_stubs()
        cls.examples = os.path.join(th.ROOT, "examples")

    def test_checker_finds_every_host_name_in_the_stubs(self):
        r = check_stubs(self.dir, self.examples)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = re.search(r"(\d+) stub files \((\d+) modules\), (\d+) files checked, (\d+) names looked up, 0 problems",
                      r.stderr)
        self.assertIsNotNone(m, r.stderr)
        self.assertEqual(int(m.group(2)), len(MODULES) + len(GLOBALS) - 1)   # coroutine extends Lua's
        self.assertGreaterEqual(int(m.group(3)), 13)
        self.assertGreater(int(m.group(4)), 50)

    def test_checker_reports_names_the_stubs_lack(self):
        d = tempfile.mkdtemp(prefix="taskhost-stubs-")
        with open(os.path.join(d, "typo.lua"), "w") as f:
            f.write('local time = require("time")\n'
                    'local function f()\n'
                    '  time.sleeep("1s")\n'            # line 3: a typo
                    '  local time = {}\n'
                    '  time.whatever()\n'              # shadowed: not the module
                    '  process.registry.lookupp("x")\n'  # line 6
                    '  require("logger"):info("ok")\n'
                    '  os.getenv("HOME")\n'            # line 8: not in the sandbox's os
                    'end\n'
                    'local l = require("logger")\n'
                    'l:infoo("x")\n'                   # line 11
                    'coroutine.spawn(f)\n'
                    'return {f = f}\n')
        r = check_stubs(self.dir, d)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stdout.splitlines(), [
            f"{d}/typo.lua:3: time.sleeep is not declared in the stubs",
            f"{d}/typo.lua:6: process.registry.lookupp is not declared in the stubs",
            f"{d}/typo.lua:8: os.getenv is not declared in the stubs",
            f"{d}/typo.lua:11: logger.infoo is not declared in the stubs"])

    def test_luacheck_finds_no_undefined_globals(self):
        luacheck = shutil.which("luacheck")
        self.assertIsNotNone(luacheck, "luacheck (Debian lua-check) is not installed: run scripts/setup")
        rc = os.path.join(tempfile.mkdtemp(prefix="taskhost-stubs-"), "luacheckrc")
        r = check_stubs(self.dir, rc=rc)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        args = [luacheck, "--config", rc, "--only", "11", "14", "--no-color", "--codes"]
        r = subprocess.run(args + ["--", self.examples], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 warnings / 0 errors in 13 files", r.stdout)
        # and the std is strict: the sandbox has no io global, its os no getenv
        d = tempfile.mkdtemp(prefix="taskhost-stubs-")
        with open(os.path.join(d, "bad.lua"), "w") as f:
            f.write('io.write("x")\nos.getenv("HOME")\nprocess.sendd("a", "b")\nprocess.send("a", "b")\n')
        r = subprocess.run(args + ["--", d], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("bad.lua:1:1: (W113) accessing undefined variable 'io'", r.stdout)
        self.assertIn("bad.lua:2:1: (W143) accessing undefined field 'getenv' of global 'os'", r.stdout)
        self.assertIn("bad.lua:3:1: (W143) accessing undefined field 'sendd' of global 'process'", r.stdout)
        self.assertIn("3 warnings", r.stdout)

    def test_lua_language_server_check(self):
        luals = shutil.which("lua-language-server")
        if not luals:
            self.skipTest("lua-language-server is not installed here (not in Debian 12, not obtainable "
                          "on this machine); scripts/check-stubs.lua and luacheck stand in for it")
        for name in sorted(os.listdir(self.examples)):
            d = th.copy_example(name)
            shutil.rmtree(os.path.join(d, ".taskhost"), ignore_errors=True)
            r = th.run(["stubs", os.path.join(d, ".taskhost", "stubs")], timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            luarc = os.path.join(d, ".luarc.json")
            if os.path.exists(luarc):
                os.remove(luarc)
            with open(luarc, "w") as f:
                json.dump({"runtime.version": "Lua 5.4",
                           "runtime.builtin": {"io": "disable", "os": "disable", "debug": "disable",
                                               "utf8": "disable"},
                           "workspace.library": [os.path.join(d, ".taskhost", "stubs")],
                           "diagnostics.severity": {"undefined-global": "Error", "undefined-field": "Error"}}, f)
            logdir = tempfile.mkdtemp(prefix="taskhost-luals-")
            r = subprocess.run([luals, "--check", os.path.join(d, "src"), f"--configpath={luarc}",
                                "--checklevel=Error", f"--logpath={logdir}"],
                               capture_output=True, text=True, timeout=300)
            report = os.path.join(logdir, "check.json")
            problems = json.loads(read(report)) if os.path.exists(report) else {}
            bad = [(f, p) for f, ps in problems.items() for p in ps
                   if p.get("code") in ("undefined-global", "undefined-field")]
            self.assertEqual(bad, [], name + r.stdout + r.stderr)


class Cli(th.TestCase):
    def test_exit_codes(self):
        r = th.run(["stubs"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("stubs takes one of DIR, --readme or --list", r.stderr)
        self.assertEqual(th.run(["stubs", "x", "--list"]).returncode, 2)
        d = tempfile.mkdtemp(prefix="taskhost-stubs-")
        blocker = os.path.join(d, "file")
        open(blocker, "w").close()
        r = th.run(["stubs", os.path.join(blocker, "stubs")])          # a file where a directory must go
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("Not a directory", r.stderr)
        r = th.run(["stubs", os.path.join(d, "a", "b")])               # parents are made
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("wrote 26 stub files", r.stdout)
        self.assertTrue(os.path.exists(os.path.join(d, "a", "b", "time.lua")))

    def test_help_lists_stubs(self):
        r = th.run(["help"])
        self.assertIn("taskhost stubs DIR", r.stdout)

    def test_init_writes_stubs_and_luarc(self):
        for template in ("hello", "http", "jobs"):
            d = os.path.join(tempfile.mkdtemp(prefix="taskhost-stubs-"), "p")
            r = th.run(["init", d, "-t", template])
            self.assertEqual(r.returncode, 0, r.stderr)
            luarc = json.loads(read(os.path.join(d, ".luarc.json")))
            self.assertEqual(luarc["runtime.version"], "Lua 5.4")
            self.assertEqual(luarc["runtime.builtin"]["io"], "disable")
            lib = luarc["workspace.library"]
            self.assertEqual(len(lib), 1)
            libdir = os.path.join(d, lib[0])
            self.assertTrue(os.path.isdir(libdir), libdir)
            self.assertEqual(sorted(os.listdir(libdir)), sorted(os.listdir(write_stubs())))
            # the project's own code checks clean against them
            r = check_stubs(libdir, os.path.join(d, "src"))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(th.run(["check", d]).returncode, 0)

    def test_init_keeps_an_existing_luarc(self):
        d = tempfile.mkdtemp(prefix="taskhost-stubs-")
        with open(os.path.join(d, ".luarc.json"), "w") as f:
            f.write('{"mine": true}\n')
        r = th.run(["init", d])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(".luarc.json exists, kept", r.stderr)
        self.assertEqual(read(os.path.join(d, ".luarc.json")), '{"mine": true}\n')
        self.assertTrue(os.path.exists(os.path.join(d, ".taskhost", "stubs", "process.lua")))


if __name__ == "__main__":
    th.main()
