"""env storages through the real binary: os, file (.env), static, memory (shared between
processes), defaults, read-only refusals, get_all, and a broken .env refused by check."""
import th

STORAGES = """
- name: os
  kind: env.storage.os
- name: dotenv
  kind: env.storage.file
  file_path: config/app.env
- name: consts
  kind: env.storage.static
  values: {REGION: eu, SHARDS: 4}
- name: mem
  kind: env.storage.memory
  values: {COUNTER: "0"}
- name: home
  kind: env.variable
  storage: os
  variable: TASKHOST_ENV_HOME
- name: locked
  kind: env.variable
  storage: mem
  variable: LOCKED
  default: fixed
  read_only: true
- name: db_url
  kind: env.variable
  storage: dotenv
  variable: DB_URL
- name: greeting
  kind: env.variable
  storage: dotenv
  variable: GREETING
- name: missing_in_file
  kind: env.variable
  storage: dotenv
  variable: NOT_THERE
  default: fallback
- name: region
  kind: env.variable
  storage: consts
  variable: REGION
- name: shards
  kind: env.variable
  storage: consts
  variable: SHARDS
- name: counter
  kind: env.variable
  storage: mem
  variable: COUNTER
- name: note
  kind: env.variable
  storage: mem
- name: nothing
  kind: env.variable
  storage: mem
  variable: NOTHING
- name: writer
  kind: process.lua
  source: file://writer.lua
  method: main
  modules: [env]
"""

DOTENV = """# the app's settings
export DB_URL = "postgres://u:p@h/db"   # a comment
GREETING='hello # not a comment'

EMPTY=
"""

WRITER = """
local env = require("env")
return { main = function(v)
  assert(env.set("COUNTER", v))
  assert(env.set("app:note", "from " .. v))
  return env.get("COUNTER")
end }
"""

MAIN = """
local io = require("io")
local env = require("env")
local function show(label, v, err) io.print(label, tostring(v), err and err:kind() or "-") end
return { main = function()
  show("home", env.get("TASKHOST_ENV_HOME"))
  show("db", env.get("DB_URL"))
  show("greeting", env.get("app:greeting"))
  show("file default", env.get("app:missing_in_file"))
  show("region", env.get("REGION"))
  show("shards", env.get("SHARDS"))
  show("counter", env.get("COUNTER"))
  show("locked", env.get("LOCKED"))
  show("nothing", env.get("NOTHING"))
  show("unknown", env.get("TASKHOST_ENV_SURELY_UNSET"))
  show("set locked", env.set("LOCKED", "x"))
  show("set os", env.set("TASKHOST_ENV_HOME", "x"))
  show("set file", env.set("DB_URL", "x"))
  show("set static", env.set("REGION", "x"))
  show("set unknown", env.set("NO_SUCH_VARIABLE", "x"))
  local events = process.events()
  local pid = assert(process.spawn_monitored("app:writer", "app:processes", "41"))
  local ev = events:receive()
  assert(ev.kind == process.event.EXIT and ev.from == pid)
  show("child saw", ev.result.value)
  show("counter after", env.get("COUNTER"))
  show("note after", env.get("app:note"))
  local all = env.get_all()
  local keys = {}
  for k, v in pairs(all) do keys[#keys + 1] = k .. "=" .. v end
  table.sort(keys)
  io.print("all", table.concat(keys, ";"))
  return 0
end }
"""


class EnvStorage(th.TestCase):
    def project(self, dotenv=DOTENV):
        return th.script_project(MAIN, extra_entries=STORAGES,
                                 extra_files={"src/writer.lua": WRITER, "config/app.env": dotenv})

    def test_storages_defaults_readonly_and_memory_shared(self):
        r = th.run(["run", self.project(), "-x", "app:main"], env={"TASKHOST_ENV_HOME": "/h"})
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        for line in ["home\t/h\t-", "db\tpostgres://u:p@h/db\t-", "greeting\thello # not a comment\t-",
                     "file default\tfallback\t-", "region\teu\t-", "shards\t4\t-", "counter\t0\t-",
                     "locked\tfixed\t-", "nothing\tnil\tNOT_FOUND", "unknown\tnil\tNOT_FOUND",
                     "set locked\tnil\tPERMISSION_DENIED", "set os\tnil\tPERMISSION_DENIED",
                     "set file\tnil\tPERMISSION_DENIED", "set static\tnil\tPERMISSION_DENIED",
                     "set unknown\tnil\tNOT_FOUND", "child saw\t41\t-", "counter after\t41\t-",
                     "note after\tfrom 41\t-"]:
            self.assertIn(line + "\n", out)
        self.assertIn("all\tCOUNTER=41;DB_URL=postgres://u:p@h/db;GREETING=hello # not a comment;"
                      "LOCKED=fixed;NOT_THERE=fallback;REGION=eu;SHARDS=4;TASKHOST_ENV_HOME=/h;"
                      "app:note=from 41\n", out)

    def test_broken_dotenv_is_a_check_error_with_file_line(self):
        project = self.project(dotenv="A=1\n# fine\nB='unterminated\n")
        r = th.run(["check", project])
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("config/app.env:3: unterminated single quote", r.stdout + r.stderr)

    def test_missing_dotenv_is_a_check_error(self):
        project = self.project()
        import os
        os.remove(os.path.join(project, "config/app.env"))
        r = th.run(["check", project])
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("config/app.env", r.stdout + r.stderr)

    def test_router_reads_first_hit_and_writes_first_writable(self):
        extra = STORAGES + """
- name: overrides
  kind: env.storage.memory
- name: layered
  kind: env.storage.router
  storages: [overrides, consts, dotenv]
- name: ro_router
  kind: env.storage.router
  storages: [consts, dotenv]
- name: nested
  kind: env.storage.router
  storages: [ro_router, layered]
- name: r_region
  kind: env.variable
  storage: layered
  variable: REGION
- name: r_db
  kind: env.variable
  storage: layered
  variable: DB_URL
- name: r_none
  kind: env.variable
  storage: layered
  variable: NONE_ANYWHERE
  default: dflt
- name: ro_region
  kind: env.variable
  storage: ro_router
  variable: RO_REGION
- name: n_greeting
  kind: env.variable
  storage: nested
  variable: GREETING
"""
        main = """
local io = require("io")
local env = require("env")
local function show(label, v, err) io.print(label, tostring(v), err and err:kind() or "-") end
return { main = function()
  show("region", env.get("app:r_region"))
  show("db", env.get("app:r_db"))
  show("none", env.get("app:r_none"))
  show("set region", env.set("app:r_region", "us"))
  show("region after", env.get("app:r_region"))
  show("static still", env.get("REGION"))
  show("set ro", env.set("RO_REGION", "x"))
  show("nested", env.get("app:n_greeting"))
  show("set nested", env.set("app:n_greeting", "hi"))
  show("nested after", env.get("app:n_greeting"))
  return 0
end }
"""
        project = th.script_project(main, extra_entries=extra,
                                    extra_files={"src/writer.lua": WRITER, "config/app.env": DOTENV})
        r = th.run(["run", project, "-x", "app:main"])
        self.assertEqual(r.returncode, 0, r.stderr)
        for line in ["region\teu\t-", "db\tpostgres://u:p@h/db\t-", "none\tdflt\t-",
                     "set region\ttrue\t-", "region after\tus\t-", "static still\teu\t-",
                     "set ro\tnil\tPERMISSION_DENIED", "nested\thello # not a comment\t-",
                     "set nested\ttrue\t-", "nested after\thello # not a comment\t-"]:
            self.assertIn(line + "\n", r.stdout)


RELOAD_INDEX = th.HELLO_INDEX.replace("modules: [http]", "modules: [http, env]") + """
  - name: mem
    kind: env.storage.memory
    values: {HITS: "0"}
  - name: hits
    kind: env.variable
    storage: mem
    variable: HITS
"""

COUNT = """
local http = require("http")
local env = require("env")
local function handler()
  local n = tonumber(env.get("HITS")) + 1
  assert(env.set("HITS", tostring(n)))
  http.response():write_json({hits = n, code = %d})
end
return {handler = handler}
"""


class EnvMemoryReload(th.TestCase):
    def test_memory_values_survive_a_hot_reload(self):
        import json
        import os
        project = th.make_project({"src/_index.yaml": RELOAD_INDEX, "src/hello.lua": COUNT % 1})
        s = th.Server(project, ["-o", "app:gateway:addr=127.0.0.1:0"])
        try:
            port = s.ports()[0]
            got = [json.loads(th.http(port, "GET", "/api/hello")[2]) for _ in range(3)]
            self.assertEqual([g["hits"] for g in got], [1, 2, 3])
            path = os.path.join(project, "src", "hello.lua")
            with open(path + ".tmp", "w") as f:
                f.write(COUNT % 2)
            os.replace(path + ".tmp", path)
            s.wait_for(r"reloaded \(hello\.lua changed", timeout=15)
            after = json.loads(th.http(port, "GET", "/api/hello")[2])
            self.assertEqual(after, {"hits": 4, "code": 2})
        finally:
            s.stop()


if __name__ == "__main__":
    th.main()
