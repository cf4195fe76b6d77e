"""The sql module on PostgreSQL (db.sql.postgres, host/db/db_pg.c) through the real binary,
against a private PostgreSQL 15 (pgserver.py): CRUD, int8 min/max and 2^53+1, NULL, bytea
with NUL bytes, booleans, numeric, prepare, transactions (commit, rollback, savepoints, an
aborted one, one abandoned by a handler rolled back), errors by SQLSTATE, a slow query
(pg_sleep) interrupted by process.terminate and by a handler's deadline while a 1-worker
process.host keeps answering (the server's backend is idle afterwards), and the server
stopped then started again: UNAVAILABLE, then success after the reconnect."""
import json
import os
import time

import pgserver
import th

DB_ENTRY = """
- name: db
  kind: db.sql.postgres
  dsn: "${env:DATABASE_URL}"
  pool: {max_open: 2, max_lifetime: 1h}
  max_rows: 50
"""

SLOW_LUA = """
local sql = require("sql")
return { main = function()
  local db = assert(sql.get("app:db"))
  local rows, err = db:query("SELECT pg_sleep(30) AS s")
  return rows and "finished" or tostring(err)
end }
"""

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

local function out(...) io.print(...) end

local function crud(db)
  assert(db:execute("DROP TABLE IF EXISTS items"))
  assert(db:execute("CREATE TABLE items (id serial PRIMARY KEY, name text UNIQUE NOT NULL, n int8, f float8, b bytea, note text, ok boolean, num numeric, s int2)"))
  local r = assert(db:execute("INSERT INTO items (name, n, f, b, note, ok, num, s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    {"big", 9007199254740993, 0.25, sql.as.binary("a\0b\255"), sql.NULL, true, 2.5, 7}))
  out("insert", r.last_insert_id, r.rows_affected)
  assert(db:execute("INSERT INTO items (name, n, ok) VALUES ($1, $2, $3)", {"min", math.mininteger, false}))
  assert(db:execute("INSERT INTO items (name, n) VALUES ($1, $2)", {"max", math.maxinteger}))
  for _, row in ipairs(assert(db:query("SELECT * FROM items ORDER BY id"))) do
    out("row", row.name, row.n, math.type(row.n), tostring(row.f), row.b and #row.b or "-",
        row.b == "a\0b\255", tostring(row.note), tostring(row.ok), tostring(row.num), tostring(row.s))
  end
  local ret = assert(db:query("INSERT INTO items (name) VALUES ($1) RETURNING id", {"ret"}))
  out("returning", ret[1].id)
  local u = assert(db:execute("UPDATE items SET note = $1 WHERE n > $2", {"pos", 0}))
  out("update", u.rows_affected)
  local d = assert(db:execute("DELETE FROM items WHERE name = $1", {"ret"}))
  out("delete", d.rows_affected)
  local z = db:query("SELECT NULL AS z, 1 AS one, 'x'::text AS t, now() IS NOT NULL AS b")[1]
  out("null", tostring(z.z), z.one, z.t, tostring(z.b))
  local m = assert(db:execute("CREATE TEMP TABLE t1 (x int); INSERT INTO t1 VALUES (1), (2)"))
  out("multi", m.rows_affected)
end

local function transactions(db)
  local tx = assert(db:begin())
  assert(tx:execute("INSERT INTO items (name) VALUES ($1)", {"rolled"}))
  out("inside", #assert(tx:query("SELECT * FROM items WHERE name = 'rolled'")))
  assert(tx:rollback())
  out("after rollback", #assert(db:query("SELECT * FROM items WHERE name = 'rolled'")))
  tx = assert(db:begin({isolation = sql.isolation.SERIALIZABLE}))
  out("isolation", tx:query("SHOW transaction_isolation")[1].transaction_isolation)
  local st = assert(tx:prepare("INSERT INTO items (name, n) VALUES ($1, $2)"))
  assert(st:execute({"c1", 1}))
  assert(tx:savepoint("sp"))
  assert(st:execute({"c2", 2}))
  assert(tx:rollback_to("sp"))
  assert(tx:release("sp"))
  assert(tx:commit())
  out("committed", #db:query("SELECT * FROM items WHERE name IN ('c1', 'c2')"))
  local s2 = assert(db:prepare("SELECT name FROM items WHERE n = $1"))
  out("stmt", s2:query({1})[1].name, s2:query({2})[1] == nil)
  s2:close()
  local ro = assert(db:begin({read_only = true}))
  local _, roerr = ro:execute("INSERT INTO items (name) VALUES ('ro')")
  out("read_only", roerr and roerr:kind())
  assert(ro:rollback())
  local ab = assert(db:begin())
  assert(ab:execute("INSERT INTO items (name) VALUES ('aborted')"))
  local _, e1 = ab:execute("INSERT INTO items (name) VALUES ('big')")
  local _, e2 = ab:query("SELECT 1")
  local ok, e3 = ab:commit()
  out("aborted", e1:kind(), e2:kind(), tostring(ok), e3 and e3:kind(),
      #db:query("SELECT * FROM items WHERE name = 'aborted'"))
end

local function errors(db)
  local _, e = db:query("SELEC 1")
  out("syntax", e:kind(), tostring(e))
  _, e = db:query("SELECT * FROM nowhere")
  out("undefined", e:kind())
  _, e = db:execute("INSERT INTO items (name) VALUES ($1)", {"big"})
  out("unique", e:kind(), e:retryable())
  _, e = db:execute("INSERT INTO items (name) VALUES (NULL)")
  out("notnull", e:kind())
  local none, ne = sql.get("app:nothing")
  out("unknown", tostring(none), ne:kind())
  _, e = db:query("SELECT $1::int + $2::int", {1})
  out("count", e:kind())
  _, e = db:query("SELECT x FROM generate_series(1, 51) x")
  out("budget", e:kind(), tostring(e))
  out("budget ok", #assert(db:query("SELECT x FROM generate_series(1, 50) x")))
  _, e = db:query("SELECT :id", {id = 1})
  out("named", e:kind())
  _, e = db:query("SELECT $1::text AS t", {"a\0b"})
  out("nul text", e:kind(), tostring(e))
end

local function slow(db)
  local events = process.events()
  local spid = assert(process.spawn_monitored("app:slow", "app:workers"))
  local epid = assert(process.spawn("app:echo", "app:workers"))
  for _ = 1, 500 do
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
  local act = db:query("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'")[1].n
  out("connection back", idle, db:query("SELECT 7 AS x")[1].x, act)
  process.send(epid, "stop")
end

return { main = function()
  local db = assert(sql.get("app:db"))
  out("type", db:type(), sql.type.POSTGRES)
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
    kind: db.sql.postgres
    host: 127.0.0.1
    port: "${env:PGTEST_PORT}"
    database: postgres
    username: postgres
    password: "not'needed"
"""

ENDPOINTS = [("setup", "POST", "/setup"), ("list", "GET", "/items"), ("abandon", "POST", "/abandon"),
             ("tx", "POST", "/tx"), ("slow", "GET", "/slow"), ("stats", "GET", "/stats"),
             ("ping", "GET", "/ping")]

HANDLERS = r"""
local http = require("http")
local sql = require("sql")

local function db() return assert(sql.get("app:db")) end
local function reply(v, status)
  local res = http.response()
  res:set_status(status or 200)
  res:write_json(v)
end

local M = {}
function M.setup()
  assert(db():execute("DROP TABLE IF EXISTS witems; CREATE TABLE witems (id serial PRIMARY KEY, name text UNIQUE)"))
  reply({ok = true})
end
function M.list()
  local names = {}
  for _, row in ipairs(assert(db():query("SELECT name FROM witems ORDER BY id"))) do names[#names + 1] = row.name end
  reply(names)
end
function M.abandon()
  local tx = assert(db():begin())
  assert(tx:execute("INSERT INTO witems (name) VALUES ('ghost')"))
  error("the handler fails with its transaction open")
end
function M.tx()
  local tx = assert(db():begin())
  assert(tx:execute("INSERT INTO witems (name) VALUES ('real')"))
  assert(tx:commit())
  reply({ok = true})
end
function M.slow()
  db():query("SELECT pg_sleep(30)")
  reply({finished = true})
end
function M.stats() reply(db():stats()) end
function M.ping()
  local rows, err = db():query("SELECT 1 AS one")
  if not rows then return reply({kind = err:kind(), error = tostring(err)}, 503) end
  reply({one = rows[1].one})
end
return M
"""


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


def sleeping(pg):
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' "
                       "AND state = 'active' AND pid <> pg_backend_pid()").strip())


@th.unittest.skipUnless(pgserver.available(), "no PostgreSQL 15 server binaries")
class SqlPostgres(pgserver.ServerPerClass, th.TestCase):
    def test_from_a_process(self):
        project = th.script_project(MAIN_LUA, extra_entries=DB_ENTRY + WORKERS,
                                    extra_files={"src/slow.lua": SLOW_LUA, "src/echo.lua": ECHO_LUA},
                                    modules="[io, process, time, channel, json, sql]")
        url = f"postgresql://postgres:secret@127.0.0.1:{self.pg.port}/postgres"
        r = th.run(["run", project, "-x", "app:main"], timeout=120, env={"DATABASE_URL": url})
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        o = r.stdout
        self.assertIn("type\tpostgres\tpostgres", o)
        self.assertIn("insert\t0\t1", o)
        self.assertIn("row\tbig\t9007199254740993\tinteger\t0.25\t4\ttrue\tnil\ttrue\t2.5\t7", o)
        self.assertIn("row\tmin\t-9223372036854775808\tinteger\tnil\t-\tfalse\tnil\tfalse\tnil\tnil", o)
        self.assertIn("row\tmax\t9223372036854775807\tinteger", o)
        self.assertRegex(o, r"returning\t\d+\n")
        self.assertIn("update\t2", o)
        self.assertIn("delete\t1", o)
        self.assertIn("null\tnil\t1\tx\ttrue", o)
        self.assertIn("multi\t2", o)
        self.assertIn("inside\t1", o)
        self.assertIn("after rollback\t0", o)
        self.assertIn("isolation\tserializable", o)
        self.assertIn("committed\t1", o)
        self.assertIn("stmt\tc1\ttrue", o)
        self.assertIn("read_only\tINVALID", o)
        self.assertIn("aborted\tCONFLICT\tINVALID\tnil\tINVALID\t0", o)
        self.assertIn("syntax\tINVALID\tpostgres: syntax error at or near \"SELEC\" (SQLSTATE 42601)\n", o)
        self.assertIn("undefined\tINVALID", o)
        self.assertIn("unique\tCONFLICT", o)
        self.assertIn("notnull\tINVALID", o)
        self.assertIn("unknown\tnil\tNOT_FOUND", o)
        self.assertIn("count\tINVALID", o)
        self.assertIn("budget\tINVALID\tsql: result too large: more than 50 rows (max_rows)", o)
        self.assertIn("budget ok\t50", o)
        self.assertIn("named\tINVALID", o)
        self.assertIn("nul text\tINVALID\tsql: param 1 holds a NUL byte", o)
        self.assertIn("slow running\t1", o)
        self.assertIn("pongs\t20", o)             # the 1-worker host kept answering
        self.assertIn("slow ended\ttrue", o)
        self.assertIn("connection back\ttrue\t7\t0", o)   # the server's backend is idle again
        self.assertIn("stats\t2\t0", o)
        self.assertNotIn("secret", r.stdout + r.stderr)

    def test_from_http_handlers_and_a_restart(self):
        project = http_project()
        s = th.Server(project, ["-o", "app:gateway:addr=127.0.0.1:0", "--no-watch"],
                      env={"PGTEST_PORT": str(self.pg.port)})
        try:
            port = s.ports()[0]
            self.assertEqual(th.http(port, "POST", "/api/setup")[0], 200)
            st, _, body = th.http(port, "POST", "/api/abandon")
            self.assertEqual(st, 500)
            st, _, body = th.http(port, "POST", "/api/tx")
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(th.http(port, "GET", "/api/items")[2]), ["real"])
            s.wait_for(r"WARN .*1 transaction left open .* rolled back")
            # a query past the handler's deadline (write: 1s) is cancelled on the server
            t0 = time.monotonic()
            st, _, body = th.http(port, "GET", "/api/slow", timeout=30)
            self.assertEqual(st, 500)
            self.assertLess(time.monotonic() - t0, 20)
            n = None
            for _ in range(500):
                n = sleeping(self.pg)
                if n == 0:
                    break
                time.sleep(0.02)
            self.assertEqual(n, 0)
            # the server goes away: UNAVAILABLE; it comes back: the next calls reconnect
            self.pg.stop()
            kinds = set()
            for _ in range(4):
                st, _, body = th.http(port, "GET", "/api/ping")
                self.assertEqual(st, 503, body)
                kinds.add(json.loads(body)["kind"])
            self.assertEqual(kinds, {"UNAVAILABLE"})
            self.pg.start()
            ok = None
            for _ in range(200):                      # bounded: backoff is at most 2 s
                st, _, body = th.http(port, "GET", "/api/ping")
                if st == 200:
                    ok = json.loads(body)
                    break
                time.sleep(0.05)
            self.assertEqual(ok, {"one": 1}, body)
            for _ in range(8):                        # every connection of the pool is back
                st, _, body = th.http(port, "GET", "/api/items")
                self.assertEqual((st, body), (200, '["real"]'))
        finally:
            code = s.stop()
        self.assertEqual(code, 0, s.log())
        self.assertNotIn("not'needed", s.log())


if __name__ == "__main__":
    th.main()
