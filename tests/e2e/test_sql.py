"""The sql module on SQLite through the real binary: CRUD, NULL and 64-bit integers both ways,
prepare, transactions (commit, rollback, savepoints, one abandoned by a handler that raises is
rolled back), errors (syntax, constraint, unknown id, bad params), budgets, a slow query that
does not block the other process of a 1-worker process.host and is interrupted by
process.terminate and by a handler's deadline."""
import json
import os
import time

import th

DB_ENTRY = """
- name: db
  kind: db.sql.sqlite
  file: data/app.db
  pool: {max_open: 2, max_lifetime: 1h}
  busy_timeout: 2s
  pragmas: {journal_mode: wal, foreign_keys: "on"}
  max_rows: 50
"""

SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c"

SLOW_LUA = """
local sql = require("sql")
return { main = function()
  local db = assert(sql.get("app:db"))
  local rows, err = db:query("%s")
  return rows and "finished" or tostring(err)
end }
""" % SLOW

ECHO_LUA = """
return { main = function()
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    if m:topic() == "stop" then return 0 end
    process.send(m:payload():data(), "pong", 1)
  end
end }
"""

MAIN_LUA = r"""
local io = require("io")
local sql = require("sql")
local time = require("time")
local json = require("json")

local function out(...) io.print(...) end

local function crud(db)
  assert(db:execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, n INTEGER, f REAL, b BLOB, note TEXT)"))
  local r = assert(db:execute("INSERT INTO items (name, n, f, b, note) VALUES (?, ?, ?, ?, ?)",
    {"big", 9007199254740993, 0.25, sql.as.binary("a\0b"), sql.NULL}))
  out("insert", r.last_insert_id, r.rows_affected)
  assert(db:execute("INSERT INTO items (name, n) VALUES (?, ?)", {"min", math.mininteger}))
  assert(db:execute("INSERT INTO items (name, n) VALUES (:name, :n)", {name = "max", n = math.maxinteger}))
  assert(db:execute("INSERT INTO items (name, n) VALUES (?, ?)", {"yes", true}))
  for _, row in ipairs(assert(db:query("SELECT * FROM items ORDER BY id"))) do
    out("row", row.name, row.n, math.type(row.n), tostring(row.f), row.b and #row.b or "-", tostring(row.note))
  end
  local u = assert(db:execute("UPDATE items SET note = ? WHERE n > ?", {"pos", 0}))
  out("update", u.rows_affected)
  local d = assert(db:execute("DELETE FROM items WHERE name = ?", {"yes"}))
  out("delete", d.rows_affected)
  out("null", tostring(db:query("SELECT NULL AS z, 1 AS one")[1].z))
end

local function transactions(db)
  local tx = assert(db:begin())
  assert(tx:execute("INSERT INTO items (name) VALUES (?)", {"rolled"}))
  out("inside", #assert(tx:query("SELECT * FROM items WHERE name = 'rolled'")))
  assert(tx:rollback())
  out("after rollback", #assert(db:query("SELECT * FROM items WHERE name = 'rolled'")))
  local again, aerr = tx:query("SELECT 1")
  out("tx over", tostring(again), aerr:kind())
  tx = assert(db:begin({isolation = sql.isolation.SERIALIZABLE}))
  local st = assert(tx:prepare("INSERT INTO items (name, n) VALUES (?, ?)"))
  assert(st:execute({"c1", 1}))
  assert(tx:savepoint("sp"))
  assert(st:execute({"c2", 2}))
  assert(tx:rollback_to("sp"))
  assert(tx:release("sp"))
  assert(tx:commit())
  out("committed", #db:query("SELECT * FROM items WHERE name IN ('c1', 'c2')"))
  local s2 = assert(db:prepare("SELECT name FROM items WHERE n = ?"))
  out("stmt", s2:query({1})[1].name, s2:query({2})[1] == nil)
  s2:close()
  local ro = assert(db:begin({read_only = true}))
  local _, roerr = ro:execute("INSERT INTO items (name) VALUES ('ro')")
  out("read_only", roerr and roerr:kind())
  assert(ro:rollback())
end

local function errors(db)
  local _, e = db:query("SELEC 1")
  out("syntax", e:kind(), tostring(e))
  _, e = db:execute("INSERT INTO items (name) VALUES (?)", {"big"})
  out("unique", e:kind())
  _, e = db:execute("INSERT INTO items (name) VALUES (NULL)")
  out("notnull", e:kind())
  local none, ne = sql.get("app:nothing")
  out("unknown", tostring(none), ne:kind())
  _, e = db:query("SELECT ?", {{}})
  out("table param", e:kind(), tostring(e))
  _, e = db:query("SELECT ?", {print})
  out("function param", e:kind())
  _, e = db:query("SELECT ?, ?", {1})
  out("count", e:kind(), tostring(e))
  _, e = db:query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 51) SELECT x FROM c")
  out("budget", e:kind(), tostring(e))
  out("budget ok", #assert(db:query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT x FROM c")))
end

local function slow(db)
  local events = process.events()
  local spid = assert(process.spawn_monitored("app:slow", "app:workers"))
  local epid = assert(process.spawn("app:echo", "app:workers"))
  for _ = 1, 500 do                               -- until the slow query runs (bounded)
    if db:stats().in_use >= 1 then break end
    time.sleep("10ms")
  end
  out("slow running", db:stats().in_use)
  local inbox = process.inbox()
  local pongs = 0
  for _ = 1, 20 do
    process.send(epid, "ping", process.pid())
    local r = channel.select({inbox:case_receive(), time.after("5s"):case_receive()})
    if r.channel == inbox then pongs = pongs + 1 end
  end
  out("pongs", pongs)
  assert(process.terminate(spid))
  local ev = events:receive()
  out("slow ended", ev.from == spid)
  local idle = false
  for _ = 1, 500 do
    if db:stats().in_use == 0 then idle = true break end
    time.sleep("10ms")
  end
  out("connection back", idle, db:query("SELECT 7 AS x")[1].x)
  process.send(epid, "stop")
end

return { main = function()
  local db = assert(sql.get("app:db"))
  out("type", db:type(), sql.type.SQLITE)
  crud(db)
  transactions(db)
  errors(db)
  slow(db)
  local s = db:stats()
  out("stats", s.max_open_connections, s.in_use)
  assert(db:release())
  return 0
end }
"""

WORKERS = """
- name: workers
  kind: process.host
  host: {workers: 1}
  lifecycle: {auto_start: true}
- name: slow
  kind: process.lua
  source: file://slow.lua
  method: main
  modules: [sql]
- name: echo
  kind: process.lua
  source: file://echo.lua
  method: main
  modules: [process]
"""

HTTP_INDEX = """
version: "1.0"
namespace: app
entries:
  - name: gateway
    kind: http.service
    addr: ":8080"
    timeouts: {write: 1s}
    lifecycle: {auto_start: true}
  - name: api
    kind: http.router
    meta: {server: app:gateway}
    prefix: /api
  - name: db
    kind: db.sql.sqlite
    file: data/web.db
    busy_timeout: 3s
    pragmas: {journal_mode: wal}
"""

ENDPOINTS = [("setup", "POST", "/setup"), ("add", "POST", "/items"), ("list", "GET", "/items"),
             ("abandon", "POST", "/abandon"), ("tx", "POST", "/tx"), ("slow", "GET", "/slow"),
             ("stats", "GET", "/stats")]

HANDLERS = r"""
local http = require("http")
local sql = require("sql")
local json = require("json")

local function db() return assert(sql.get("app:db")) end
local function reply(v, status)
  local res = http.response()
  res:set_status(status or 200)
  res:write_json(v)
end

local M = {}
function M.setup() assert(db():execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")) reply({ok = true}) end
function M.add()
  local body = json.decode(http.request():body())
  local r, err = db():execute("INSERT INTO items (name) VALUES (?)", {body.name})
  if not r then return reply({error = tostring(err), kind = err:kind()}, 409) end
  reply({id = r.last_insert_id}, 201)
end
function M.list()
  local names = {}
  for _, row in ipairs(assert(db():query("SELECT name FROM items ORDER BY id"))) do names[#names + 1] = row.name end
  reply(names)
end
function M.abandon()
  local tx = assert(db():begin())
  assert(tx:execute("INSERT INTO items (name) VALUES ('ghost')"))
  error("the handler fails with its transaction open")
end
function M.tx()
  local tx = assert(db():begin())
  assert(tx:execute("INSERT INTO items (name) VALUES ('real')"))
  assert(tx:commit())
  reply({ok = true})
end
function M.slow()
  db():query("%s")
  reply({finished = true})
end
function M.stats() reply(db():stats()) end
return M
""" % SLOW


def http_project():
    idx = HTTP_INDEX
    for name, method, path in ENDPOINTS:
        idx += f"""
  - name: {name}
    kind: function.lua
    source: file://handlers.lua
    method: {name}
    modules: [http, sql, json]
  - name: {name}.ep
    kind: http.endpoint
    meta: {{router: app:api}}
    method: {method}
    path: {path}
    func: app:{name}
"""
    return th.make_project({"src/_index.yaml": idx, "src/handlers.lua": HANDLERS})


class Sql(th.TestCase):
    def test_from_a_process(self):
        project = th.script_project(MAIN_LUA, extra_entries=DB_ENTRY + WORKERS,
                                    extra_files={"src/slow.lua": SLOW_LUA, "src/echo.lua": ECHO_LUA},
                                    modules="[io, process, time, channel, json, sql]")
        r = th.run(["run", project, "-x", "app:main"], timeout=90)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        o = r.stdout
        self.assertIn("type\tsqlite\tsqlite", o)
        self.assertIn("insert\t1\t1", o)
        self.assertIn("row\tbig\t9007199254740993\tinteger\t0.25\t3\tnil", o)
        self.assertIn("row\tmin\t-9223372036854775808\tinteger\tnil\t-\tnil", o)
        self.assertIn("row\tmax\t9223372036854775807\tinteger", o)
        self.assertIn("row\tyes\t1\tinteger", o)
        self.assertIn("update\t3", o)
        self.assertIn("delete\t1", o)
        self.assertIn("null\tnil", o)
        self.assertIn("inside\t1", o)
        self.assertIn("after rollback\t0", o)
        self.assertIn("tx over\tnil\tINVALID", o)
        self.assertIn("committed\t1", o)
        self.assertIn("stmt\tc1\ttrue", o)
        self.assertIn("read_only\tINVALID", o)
        self.assertRegex(o, r"syntax\tINVALID\tsqlite: near \"SELEC\": syntax error")
        self.assertIn("unique\tCONFLICT", o)
        self.assertIn("notnull\tINVALID", o)
        self.assertIn("unknown\tnil\tNOT_FOUND", o)
        self.assertIn("table param\tINVALID\tsql: param 1 is a table", o)
        self.assertIn("function param\tINVALID", o)
        self.assertIn("count\tINVALID\tsql: the statement has 2 parameters, 1 given", o)
        self.assertIn("budget\tINVALID\tsql: result too large: more than 50 rows (max_rows)", o)
        self.assertIn("budget ok\t50", o)
        self.assertIn("slow running\t1", o)
        self.assertIn("pongs\t20", o)             # the 1-worker host kept answering
        self.assertIn("slow ended\ttrue", o)
        self.assertIn("connection back\ttrue\t7", o)
        self.assertIn("stats\t2\t0", o)
        self.assertTrue(os.path.exists(os.path.join(project, "data", "app.db")))

    def test_from_http_handlers(self):
        project = http_project()
        s = th.Server(project, ["-o", "app:gateway:addr=127.0.0.1:0", "--no-watch"])
        try:
            port = s.ports()[0]
            self.assertEqual(th.http(port, "POST", "/api/setup")[0], 200)
            st, _, body = th.http(port, "POST", "/api/items", json.dumps({"name": "a"}))
            self.assertEqual((st, json.loads(body)), (201, {"id": 1}))
            st, _, body = th.http(port, "POST", "/api/items", json.dumps({"name": "a"}))
            self.assertEqual(st, 409)
            self.assertEqual(json.loads(body)["kind"], "CONFLICT")
            st, _, body = th.http(port, "POST", "/api/abandon")
            self.assertEqual(st, 500)
            self.assertIn("transaction open", body)
            # its write lock is gone: a new write transaction commits (busy_timeout is 3s)
            st, _, body = th.http(port, "POST", "/api/tx")
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(th.http(port, "GET", "/api/items")[2]), ["a", "real"])
            s.wait_for(r"WARN .*1 transaction left open .* rolled back")
            # a query past the handler's deadline (write: 1s) is interrupted
            t0 = time.monotonic()
            st, _, body = th.http(port, "GET", "/api/slow", timeout=30)
            self.assertEqual(st, 500)
            self.assertLess(time.monotonic() - t0, 20)
            idle = False
            for _ in range(500):
                stats = json.loads(th.http(port, "GET", "/api/stats")[2])
                if stats["in_use"] == 0:
                    idle = True
                    break
                time.sleep(0.01)
            self.assertTrue(idle, stats)
            self.assertEqual(json.loads(th.http(port, "GET", "/api/items")[2]), ["a", "real"])
        finally:
            code = s.stop()
        self.assertEqual(code, 0, s.log())


    def test_result_over_the_state_memory_limit(self):
        main = r"""
local io = require("io")
local sql = require("sql")
return { main = function()
  local db = assert(sql.get("app:db"))
  local rows, err = db:query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40000) SELECT x, printf('%0500d', x) AS pad FROM c")
  io.print("big", tostring(rows), err and err:kind(), tostring(err))
  io.print("small", #assert(db:query("SELECT 1 AS x")))
  return 0
end }
"""
        entry = """
- name: db
  kind: db.sql.sqlite
  file: ":memory:"
"""
        project = th.script_project(main, extra_entries=entry, modules="[io, sql]",
                                    extra_files={"taskhost.yaml": "limits:\n  process_memory: 8MB\n"})
        r = th.run(["run", project, "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertIn("big\tnil\tINVALID\tsql: result too large for the state's memory", r.stdout)
        self.assertIn("small\t1", r.stdout)

    def test_reload_gives_a_changed_entry_a_new_pool(self):
        project = http_project()
        s = th.Server(project, ["-o", "app:gateway:addr=127.0.0.1:0"])
        try:
            port = s.ports()[0]
            self.assertEqual(th.http(port, "GET", "/api/stats")[2].count('"max_open_connections":4'), 1)
            idx = os.path.join(project, "src", "_index.yaml")
            with open(idx) as f:
                text = f.read()
            with open(idx, "w") as f:
                f.write(text.replace("busy_timeout: 3s", "busy_timeout: 3s\n    pool: {max_open: 3}"))
            s.wait_for(r"reloaded")
            st, _, body = th.http(port, "GET", "/api/stats")
            self.assertEqual(json.loads(body)["max_open_connections"], 3, body)
        finally:
            code = s.stop()
        self.assertEqual(code, 0, s.log())


if __name__ == "__main__":
    th.main()
