"""The registry module through the real binary: registry.entry entries found by meta and
kind, get/parse_id/snapshot/namespace/versions from a process; change sets applied from an
HTTP handler as hot reloads: a new endpoint answers, a new auto_start process.service runs,
a refused change set (missing field, Lua syntax error) leaves the old generation serving and
the version unchanged, a file edit keeps the runtime entries, delete removes a route."""
import json
import os
import re

import th

ENTRIES = """
- name: cfg1
  kind: registry.entry
  meta: {type: config, tags: [red, blue]}
  value: 1
- name: cfg2
  kind: registry.entry
  meta: {type: config, title: "the second"}
  data: {value: 2, nested: {deep: true}}
"""

MORE = """
namespace: app.more
entries:
  - name: cfg3
    kind: registry.entry
    meta: {type: other}
    value: 3
"""

READS = r"""
local json = require("json")
local registry = require("registry")

local function ids(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e.id end
  return out
end

local function main()
  local r = {}
  r.config = ids(assert(registry.find({["meta.type"] = "config"})))
  r.bare = ids(assert(registry.find({type = "config"})))
  r.more = ids(assert(registry.find({[".kind"] = "registry.entry", [".ns"] = "app.more"})))
  r.tag = ids(assert(registry.find({["*meta.tags"] = "blu"})))
  r.tags = ids(assert(registry.find({["meta.tags"] = {"red", "blue"}})))
  r.prefix = ids(assert(registry.find({["^meta.title"] = "the s", ["$title"] = "cond"})))
  r.kind_only = #assert(registry.find({[".kind"] = "registry.entry"}))
  local none, ferr = registry.find({["~meta.title"] = ".*"})
  r.regex = {none == nil, ferr:kind()}
  local e = assert(registry.get("app:cfg2"))
  r.entry = {e.id, e.kind, e.meta.type, e.data.value, e.data.nested.deep}
  local missing, gerr = registry.get("app:nope")
  r.missing = {missing == nil, gerr:kind()}
  local id = registry.parse_id("app.more:cfg3")
  r.parsed = {id.ns, id.name}
  r.parsed_bare = registry.parse_id("plain").ns

  local snap = assert(registry.snapshot())
  local v0 = snap:version()
  r.same_version = v0:id() == registry.current_version():id()
  r.ns = ids(snap:namespace("app.more"))
  r.count = #snap:entries()
  r.first_source = v0:source()
  r.snap_get = snap:get("app:cfg1").data.value
  r.snap_find = #snap:find({["meta.type"] = "config"})

  local ch = snap:changes()
  assert(ch:create({id = {ns = "app", name = "cfg9"}, kind = "registry.entry",
                    meta = {type = "config"}, data = {value = 9}}) == ch)
  ch:update({id = "app:cfg1", kind = "registry.entry", meta = {type = "changed"}, data = {value = 10}})
  ch:delete("app.more:cfg3")
  local ops = ch:ops()
  r.ops = {#ops, ops[1].kind, ops[1].entry.id, ops[2].kind, ops[3].kind, ops[3].entry.id}
  local v1, aerr = ch:apply()
  assert(v1, aerr)
  r.applied = {v1:id() > v0:id(), v1:source(), registry.current_version():id() == v1:id()}
  r.after = ids(assert(registry.find({["meta.type"] = "config"})))
  r.updated = registry.get("app:cfg1").data.value
  r.deleted = registry.get("app.more:cfg3") == nil
  r.old_snapshot = {#snap:entries(), snap:get("app:cfg9") == nil}   -- still its generation
  local vs = assert(registry.versions())
  r.versions = {#vs, vs[#vs]:id() == v1:id(), v1:previous():id() == v0:id(), v0:next():id() == v1:id()}
  r.vstring = tostring(v1)

  -- refused: the whole change set, with every problem
  local bad = registry.snapshot():changes()
  bad:update({id = "app:ghost", kind = "registry.entry", data = {}})
  bad:create({id = "app:cfg9", kind = "registry.entry"})
  local nv, berr = bad:apply()
  r.refused = {nv == nil, berr:kind(), berr:message()}
  r.unchanged = registry.current_version():id() == v1:id()
  local _, ierr = registry.snapshot():changes():create({id = "noname", kind = "x"})
  r.bad_id = ierr:kind()
  local _, eerr = registry.snapshot():changes():apply()
  r.empty = eerr:kind()
  local big = {}
  for i = 1, 200001 do big[i] = i end
  local _, berr2 = registry.snapshot():changes():create({id = "app:big", kind = "registry.entry", data = {list = big}})
  r.budget = {berr2:kind(), berr2:message():find("budget") ~= nil}
  local _, ferr2 = registry.snapshot():changes():create({id = "app:f", kind = "registry.entry", data = {f = print}})
  r.not_data = ferr2:kind()

  -- history: the kept generations, deltas, a rollback
  local old = assert(registry.snapshot_at(v0:id()))
  r.at = {#old:entries(), old:get("app:cfg9") == nil}
  local _, nerr = registry.snapshot_at(999999)
  r.at_missing = nerr:kind()
  local h = assert(registry.history())
  r.hist = {#h:versions(), h:get_version(v1:id()):id() == v1:id(), #h:snapshot_at(v1):entries()}
  local delta = assert(registry.build_delta(old:entries(), registry.snapshot():entries()))
  r.delta = {}
  for _, op in ipairs(delta) do r.delta[#r.delta + 1] = op.kind .. " " .. op.entry.id end
  r.noop = registry.apply_version(registry.current_version())
  local ok, rerr = registry.apply_version(v0)
  assert(ok, rerr)
  r.rollback = {registry.get("app:cfg9") == nil, registry.get("app:cfg1").data.value,
                registry.get("app.more:cfg3") ~= nil, registry.current_version():id() > v1:id(),
                #registry.versions()}
  return json.encode(r)   -- printed on stdout by -x
end
return {main = main}
"""


class ReadsAndChanges(th.TestCase):
    def test_from_a_process(self):
        d = th.script_project(READS, extra_entries=ENTRIES, extra_files={"src/more.yaml": MORE},
                              modules="[json, registry]")
        p = th.run(["run", d, "-x", "app:main"], timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        line = [l for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(line, p.stdout + p.stderr)
        r = json.loads(line[0])
        self.assertEqual(r["config"], ["app:cfg1", "app:cfg2"])
        self.assertEqual(r["bare"], ["app:cfg1", "app:cfg2"])
        self.assertEqual(r["more"], ["app.more:cfg3"])
        self.assertEqual(r["tag"], ["app:cfg1"])
        self.assertEqual(r["tags"], ["app:cfg1"])
        self.assertEqual(r["prefix"], ["app:cfg2"])
        self.assertEqual(r["kind_only"], 3)
        self.assertEqual(r["regex"], [True, "INVALID"])
        self.assertEqual(r["entry"], ["app:cfg2", "registry.entry", "config", 2, True])
        self.assertEqual(r["missing"], [True, "NOT_FOUND"])
        self.assertEqual(r["parsed"], ["app.more", "cfg3"])
        self.assertEqual(r["parsed_bare"], "")
        self.assertTrue(r["same_version"])
        self.assertEqual(r["ns"], ["app.more:cfg3"])
        self.assertEqual(r["count"], 6)          # terminal, processes, main, cfg1, cfg2, cfg3
        self.assertEqual(r["first_source"], "files")
        self.assertEqual(r["snap_get"], 1)
        self.assertEqual(r["snap_find"], 2)
        self.assertEqual(r["ops"], [3, "entry.create", "app:cfg9", "entry.update", "entry.delete", "app.more:cfg3"])
        self.assertEqual(r["applied"], [True, "runtime", True])
        self.assertEqual(r["after"], ["app:cfg2", "app:cfg9"])
        self.assertEqual(r["updated"], 10)
        self.assertTrue(r["deleted"])
        self.assertEqual(r["old_snapshot"], [6, True])
        self.assertEqual(r["versions"], [2, True, True, True])
        self.assertRegex(r["vstring"], r"^version \d+ \(runtime, \d{4}-\d\d-\d\dT[\d:]+Z, 6 entries\)$")
        self.assertEqual(r["refused"][:2], [True, "INVALID"])
        self.assertIn("update app:ghost: no entry has this id", r["refused"][2])
        self.assertIn("create app:cfg9: an entry with this id already exists", r["refused"][2])
        self.assertIn("src/main.lua:", r["refused"][2])      # where the op was made
        self.assertTrue(r["unchanged"])
        self.assertEqual(r["bad_id"], "INVALID")
        self.assertEqual(r["empty"], "INVALID")
        self.assertEqual(r["budget"], ["INVALID", True])      # over one registry file's budget
        self.assertEqual(r["not_data"], "INVALID")            # a function is not data
        self.assertEqual(r["at"], [6, True])
        self.assertEqual(r["at_missing"], "NOT_FOUND")
        self.assertEqual(r["hist"], [2, True, 6])
        self.assertEqual(r["delta"], ["entry.update app:cfg1", "entry.delete app.more:cfg3", "entry.create app:cfg9"])
        self.assertTrue(r["noop"])
        self.assertEqual(r["rollback"], [True, 1, True, True, 3])


ADMIN_ENTRIES = """
  - name: procs
    kind: process.host
    host: {workers: 2}
    lifecycle: {auto_start: true}
  - name: admin
    kind: function.lua
    source: file://admin.lua
    method: handler
    modules: [http, json, registry]
  - name: admin.ep
    kind: http.endpoint
    meta: {router: app:api}
    method: POST
    path: /admin
    func: app:admin
"""

# POST /api/admin {"ops": [{"op": "create"|"update"|"delete", "entry": {...} | "id": ...}]}
# applies them as one change set; answers {version, versions, current} or {error, kind}.
ADMIN = """
local http = require("http")
local json = require("json")
local registry = require("registry")

local function handler()
  local body = json.decode(http.request():body())
  local ch = registry.snapshot():changes()
  for _, o in ipairs(body.ops) do
    local _, err = ch[o.op](ch, o.entry or o.id)
    assert(not err, err and err:message())
  end
  local v, err = ch:apply()
  local out = {current = registry.current_version():id(), versions = #registry.versions()}
  if v then out.version = v:id() else out.error, out.kind = err:message(), err:kind() end
  http.response():write_json(out)
end
return {handler = handler}
"""

HELLO = """
local http = require("http")
return {handler = function() http.response():write_json({version = %d}) end}
"""

DYN_LUA = """
local http = require("http")
return {handler = function() http.response():write_json({dyn = true}) end}
"""

DYN_OPS = [
    {"op": "create", "entry": {"id": "app:dyn", "kind": "function.lua",
                               "data": {"source": "file://dyn.lua", "method": "handler", "modules": ["http"]}}},
    {"op": "create", "entry": {"id": "app:dyn.ep", "kind": "http.endpoint", "meta": {"router": "app:api"},
                               "data": {"method": "GET", "path": "/dyn", "func": "app:dyn"}}},
]

SVC_OPS = [
    {"op": "create", "entry": {"id": "app:bg", "kind": "process.lua", "data": {
        "method": "main", "modules": ["time"],
        "source": "local time = require('time')\n"
                  "return {main = function() print('bg service alive') time.sleep('1h') end}\n"}}},
    {"op": "create", "entry": {"id": "app:bg.svc", "kind": "process.service", "data": {
        "process": "bg", "host": "procs", "lifecycle": {"auto_start": True, "stop_timeout": "1s"}}}},
]

BAD_OPS = [   # registry problems: every one is reported (compiling comes after, as in `check`)
    {"op": "create", "entry": {"id": "app:nofunc.ep", "kind": "http.endpoint", "meta": {"router": "app:api"},
                               "data": {"method": "GET", "path": "/nofunc"}}},
    {"op": "create", "entry": {"id": "app:nopath.ep", "kind": "http.endpoint", "meta": {"router": "app:api"},
                               "data": {"method": "GET", "func": "app:hello"}}},
]

SYNTAX_OPS = [
    {"op": "create", "entry": {"id": "app:broken", "kind": "function.lua",
                               "data": {"source": "return {handler = function( end}", "method": "handler"}}},
]


def write(project, rel, text):
    path = os.path.join(project, "src", rel)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


class ChangeSetsOverHttp(th.TestCase):
    def setUp(self):
        index = th.HELLO_INDEX + ADMIN_ENTRIES
        self.d = th.make_project({"src/_index.yaml": index, "src/hello.lua": HELLO % 1,
                                  "src/admin.lua": ADMIN, "src/dyn.lua": DYN_LUA})
        self.s = th.Server(self.d, ["-o", "app:gateway:addr=127.0.0.1:0"])
        self.addCleanup(self.stopped_cleanly)
        self.port = self.s.ports()[0]

    def stopped_cleanly(self):   # (under ASan a leak or a bad access would fail the exit code)
        rc = self.s.stop()
        self.assertEqual(rc, 0, self.s.log()[-4000:])

    def admin(self, ops):
        status, _, body = th.http(self.port, "POST", "/api/admin", json.dumps({"ops": ops}))
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def get(self, path):
        status, _, body = th.http(self.port, "GET", path)
        return status, body

    def test_endpoint_service_refusal_reload_delete(self):
        self.assertEqual(self.get("/api/dyn")[0], 404)
        r = self.admin(DYN_OPS)
        self.assertIn("version", r, r)
        self.assertEqual(r["current"], r["version"])
        self.assertEqual(r["versions"], 2)
        self.assertEqual(self.get("/api/dyn"), (200, '{"dyn":true}'))

        r = self.admin(SVC_OPS)
        self.assertIn("version", r, r)
        self.s.wait_for(r"bg service alive")
        good = r["version"]

        r = self.admin(BAD_OPS)
        self.assertEqual(r.get("kind"), "INVALID", r)
        self.assertIn("src/admin.lua:9: app:nofunc.ep: missing required field func", r["error"])
        self.assertIn("app:nopath.ep: missing required field path", r["error"])
        self.assertEqual(r["current"], good)                               # the old generation stays
        self.assertEqual(r["versions"], 3)
        r = self.admin(SYNTAX_OPS)
        self.assertEqual(r.get("kind"), "INVALID", r)
        self.assertIn("[app:broken]:1:", r["error"])                       # the Lua syntax error
        self.assertEqual(r["current"], good)
        self.assertEqual(self.get("/api/dyn"), (200, '{"dyn":true}'))
        self.assertEqual(self.get("/api/hello"), (200, '{"version":1}'))
        self.assertEqual(self.get("/api/nofunc")[0], 404)
        self.assertIn("registry: change set refused", self.s.log())

        reloads = self.s.log().count("reloaded (")
        write(self.d, "hello.lua", HELLO % 2)                             # a file edit
        self.s.wait_for(r"(reloaded \([\s\S]*){%d}" % (reloads + 1))
        self.assertEqual(self.get("/api/hello"), (200, '{"version":2}'))
        self.assertEqual(self.get("/api/dyn"), (200, '{"dyn":true}'))      # the runtime entry stays
        self.assertEqual(self.s.log().count("bg service alive"), 1)        # unchanged: not restarted

        r = self.admin([{"op": "delete", "id": "app:dyn.ep"}, {"op": "delete", "id": "app:dyn"}])
        self.assertIn("version", r, r)
        self.assertEqual(r["versions"], 5)
        self.assertEqual(self.get("/api/dyn")[0], 404)
        self.assertEqual(self.get("/api/hello"), (200, '{"version":2}'))

        reloads = self.s.log().count("reloaded (")
        write(self.d, "hello.lua", HELLO % 3)                             # the deletes survive too
        self.s.wait_for(r"(reloaded \([\s\S]*){%d}" % (reloads + 1))
        self.assertEqual(self.get("/api/hello"), (200, '{"version":3}'))
        self.assertEqual(self.get("/api/dyn")[0], 404)
        self.assertNotIn("runtime change is dropped", self.s.log())   # a wrong fold of create+delete
                                                                           # would leave a delete of nothing

        r = self.admin([])
        self.assertEqual(r.get("kind"), "INVALID")
        self.assertIn("no changes", r["error"])

    def test_file_reload_drops_a_conflicting_runtime_change(self):
        r = self.admin(DYN_OPS)
        self.assertIn("version", r, r)
        reloads = self.s.log().count("reloaded (")
        # the files now define app:dyn themselves: the runtime create is dropped, the file wins
        write(self.d, "dyn.yaml", "namespace: app\nentries:\n"
                                  "  - {name: dyn, kind: function.lua, source: file://hello.lua, method: handler, modules: [http]}\n")
        self.s.wait_for(r"(reloaded \([\s\S]*){%d}" % (reloads + 1))
        self.assertRegex(self.s.log(), r"create app:dyn: an entry with this id already exists; the runtime change is dropped")
        self.assertEqual(self.get("/api/dyn"), (200, '{"version":1}'))     # the endpoint (runtime) calls the file's function

    def test_runtime_delete_of_a_file_entry_survives_a_file_edit(self):
        r = self.admin([{"op": "delete", "id": "app:hello.ep"}])
        self.assertIn("version", r, r)
        self.assertEqual(self.get("/api/hello")[0], 404)
        reloads = self.s.log().count("reloaded (")
        write(self.d, "hello.lua", HELLO % 2)
        self.s.wait_for(r"(reloaded \([\s\S]*){%d}" % (reloads + 1))
        self.assertEqual(self.get("/api/hello")[0], 404)                   # still deleted
        self.assertEqual(self.get("/api/admin")[0], 405)                   # the rest serves


if __name__ == "__main__":
    th.main()
