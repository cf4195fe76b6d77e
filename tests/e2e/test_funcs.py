"""funcs / ctx / futures through the real binary (issue 13, wippy-compat §3.11, §4.12):
funcs.call from a process, an HTTP handler and a queue consumer (whose deadlines bound it); results, several return
values, tables, errors as nil, err with their kind, a raising callee, unknown ids; a timeout
that really stops the callee (it would have written a marker into a memory env storage);
executors with context values seen by the callee and by a nested call; futures in
channel.select against time.after, cancel, is_complete / is_canceled / error; and a call
that keeps its process-host worker free (workers: 1)."""
import json
import re

import th

ENTRIES = """
- name: mem
  kind: env.storage.memory
- name: mark
  kind: env.variable
  storage: mem
  variable: MARK
- name: calc
  kind: function.lua
  source: file://calc.lua
  method: run
  modules: [ctx, funcs, time, env]
- name: slow
  kind: function.lua
  source: file://calc.lua
  method: slow
  modules: [ctx, funcs, time, env]
- name: jobs
  kind: queue.queue
  driver: memory
- name: job
  kind: function.lua
  source: file://job.lua
  method: run
  modules: [funcs, queue]
- name: jobs.consumer
  kind: queue.consumer
  queue: app:jobs
  func: app:job
  lifecycle: {auto_start: true}
- name: short
  kind: queue.queue
  driver: memory
  timeout: 300ms
  max_retries: 0
- name: jobslow
  kind: function.lua
  source: file://job.lua
  method: slow
  modules: [funcs, queue]
- name: short.consumer
  kind: queue.consumer
  queue: app:short
  func: app:jobslow
  lifecycle: {auto_start: true}
- name: slowcaller
  kind: process.lua
  source: file://procs.lua
  method: slowcaller
  modules: [funcs]
- name: pinger
  kind: process.lua
  source: file://procs.lua
  method: pinger
  modules: [funcs]
"""

CALC = """
local ctx = require("ctx")
local funcs = require("funcs")
local time = require("time")
local env = require("env")
local M = {}
function M.run(mode, a, b)
  if mode == "add" then return a + b, a * b end
  if mode == "table" then return {sum = a + b, list = {a, b}, nested = {deep = {ok = true}}} end
  if mode == "errobj" then return nil, errors.new({message = "bad input", kind = errors.INVALID}) end
  if mode == "errstr" then return nil, "plain text" end
  if mode == "raise" then error("boom") end
  if mode == "raise_obj" then error(errors.new({message = "taken", kind = errors.CONFLICT})) end
  if mode == "ctx" then
    local user = ctx.get("user")
    local missing, err = ctx.get("nope")
    return {all = ctx.all(), user = user, missing = missing, err = err and err:kind()}
  end
  if mode == "nested" then
    local inner = funcs.new():with_context({inner = "yes"}):call("app:calc", "ctx")
    return {outer = ctx.all(), inner = inner}
  end
  if mode == "pid" then return process.pid() end
  if mode == "recurse" then return funcs.call("app:calc", "recurse") end
  return nil, errors.new({message = "unknown mode " .. tostring(mode), kind = errors.INVALID})
end
-- sleeps, then writes the marker: a stopped callee never writes it
function M.slow(seconds, marker)
  time.sleep(seconds)
  if marker then env.set("MARK", marker) end
  return "slept"
end
return M
"""

JOB = """
local funcs = require("funcs")
local function run(data)
  local s, p = funcs.call("app:calc", "add", data.a, data.b)
  local _, err = funcs.call("app:calc", "errobj")
  return {sum = s, product = p, err = err:kind()}
end
-- the job's timeout (300ms) bounds the call: the callee stops before writing its marker
local function slow()
  return funcs.call("app:slow", "1s", "from-job")
end
return {run = run, slow = slow}
"""

PROCS = """
local funcs = require("funcs")
local M = {}
function M.slowcaller(parent, marker)
  if marker then process.send(parent, "calling", marker) end
  local r = funcs.call("app:slow", "1s", marker)
  process.send(parent, "slow", r)
end
function M.pinger()
  local msg = process.inbox():receive()
  process.send(msg:payload():data(), "pong", "pong")
end
return M
"""

MAIN = r"""
local funcs = require("funcs")
local json = require("json")
local time = require("time")
local env = require("env")
local queue = require("queue")
local io = require("io")

local function E(e) return e and {kind = e:kind(), message = e:message()} or nil end

local function main()
  local out = {}
  -- results, several values, tables, errors
  local s, p = funcs.call("app:calc", "add", 20, 22)
  out.add = {s, p}
  out.table = funcs.call("app:calc", "table", 1, 2)
  local r, e = funcs.call("app:calc", "errobj")
  out.errobj = {r = r, e = E(e)}
  r, e = funcs.call("app:calc", "errstr")
  out.errstr = {r = r, e = E(e)}
  r, e = funcs.call("app:calc", "raise")
  out.raise = {r = r, e = E(e)}
  r, e = funcs.call("app:calc", "raise_obj")
  out.raise_obj = {r = r, e = E(e)}
  r, e = funcs.call("app:nope")
  out.unknown = {r = r, e = E(e)}
  r, e = funcs.call("app:slowcaller")
  out.not_function = {r = r, e = E(e)}
  out.misuse = select(2, pcall(funcs.call, "app:calc", "add", function() end)) and "raised"
  out.pid = funcs.call("app:calc", "pid")
  r, e = funcs.call("app:calc", "recurse")
  out.recurse = {r = r, e = E(e)}

  -- executors: immutable, context merged and propagated to nested calls
  local base = funcs.new()
  local x = base:with_context({user = "bob", n = 1})
  local y = x:with_context({n = 2})
  out.ctx_base = funcs.call("app:calc", "ctx")
  out.ctx_x = x:call("app:calc", "ctx")
  out.ctx_y = y:call("app:calc", "ctx")
  out.ctx_nested = y:call("app:calc", "nested")
  out.ctx_bad_key = pcall(base.with_context, base, {[1] = "x"})

  -- a timeout stops the callee: the marker it would write after 1 s never appears
  local t0 = time.now()
  r, e = funcs.new():with_options({timeout = "200ms"}):call("app:slow", "1s", "late")
  out.timeout = {r = r, e = E(e), ms = time.now():sub(t0):milliseconds()}
  r, e = funcs.new():with_options({timeout = 150}):call("app:slow", "1s", "late-ms")
  out.timeout_ms = {r = r, e = E(e)}

  -- futures
  local f = funcs.async("app:calc", "add", 5, 6)
  local pl, ferr = f:result()
  out.future = {data = pl and pl:data(), err = ferr, complete = f:is_complete(),
                canceled = f:is_canceled(), has_error = select(2, f:error())}
  local g = funcs.async("app:slow", "1s", "canceled-future")
  local timer = time.after("100ms")
  local sel = channel.select{g:channel():case_receive(), timer:case_receive()}
  out.select_timer = {timer_won = sel.channel == timer, complete = g:is_complete()}
  out.cancel = g:cancel()
  local ge, has = g:error()
  out.after_cancel = {complete = g:is_complete(), canceled = g:is_canceled(), has = has,
                      kind = ge and ge:kind(), again = g:cancel()}
  local h = funcs.async("app:calc", "add", 1, 1)
  local sel2 = channel.select{h:channel():case_receive(), time.after("20s"):case_receive()}
  out.select_future = {future_won = sel2.channel == h:channel(), data = sel2.value and sel2.value:data()}
  local bad = funcs.async("app:calc", "errobj")
  local sel3 = channel.select{bad:channel():case_receive(), time.after("20s"):case_receive()}
  local be, bhas = bad:error()
  local bp, bre = bad:result()
  out.future_failed = {closed = sel3.channel == bad:channel() and not sel3.ok, has = bhas,
                       kind = be and be:kind(), result = bp, result_kind = bre and bre:kind(),
                       canceled = bad:is_canceled()}

  -- a call waiting on the process host keeps its only worker free
  local order = {}
  process.spawn("app:slowcaller", "app:processes", process.pid())
  local pinger = process.spawn("app:pinger", "app:processes")
  process.send(pinger, "ping", process.pid())
  local inbox = process.inbox()
  for i = 1, 2 do
    local sel4 = channel.select{inbox:case_receive(), time.after("20s"):case_receive()}
    if sel4.channel ~= inbox then break end
    order[#order + 1] = sel4.value:topic() .. "=" .. tostring(sel4.value:payload():data())
  end
  out.order = order

  -- a terminated caller stops its callee (which would write the marker after 1 s)
  local victim = process.spawn("app:slowcaller", "app:processes", process.pid(), "killed")
  local sel5 = channel.select{inbox:case_receive(), time.after("20s"):case_receive()}
  out.victim_calling = sel5.channel == inbox and sel5.value:topic()
  process.terminate(victim)

  -- a consumer calling functions
  local id = queue.publish("app:jobs", {a = 3, b = 4})
  for i = 1, 400 do
    local job = queue.get("app:jobs", id)
    if job and (job.state == "done" or job.state == "failed") then out.job = job break end
    time.sleep("25ms")
  end

  local sid = queue.publish("app:short", {})
  for i = 1, 400 do
    local job = queue.get("app:short", sid)
    if job and (job.state == "done" or job.state == "failed") then out.short_job = job break end
    time.sleep("25ms")
  end

  -- long after the timeouts and the cancel: no callee wrote its marker
  time.sleep("1500ms")
  out.mark = env.get("MARK") or "none"
  io.print(json.encode(out))
  return 0
end
return {main = main}
"""


def project():
    return th.script_project(MAIN, extra_entries=ENTRIES,
                             modules="[io, process, time, channel, json, env, funcs, queue]",
                             extra_files={"src/calc.lua": CALC, "src/job.lua": JOB,
                                          "src/procs.lua": PROCS})


class FromAProcess(th.TestCase):
    @classmethod
    def setUpClass(cls):
        d = project()
        # the process host has one worker: the slow call must not hold it
        idx = d + "/src/_index.yaml"
        with open(idx) as f:
            text = f.read()
        with open(idx, "w") as f:
            f.write(text.replace("workers: 2", "workers: 1"))
        cls.res = th.run(["run", d, "-x", "app:main"], timeout=60)
        m = re.search(r"^\{.*\}$", cls.res.stdout, re.M)
        cls.out = json.loads(m.group(0)) if m else None

    def setUp(self):
        self.assertEqual(self.res.returncode, 0, self.res.stderr)
        self.assertIsNotNone(self.out, self.res.stdout + self.res.stderr)

    def test_results_tables_and_errors(self):
        o = self.out
        self.assertEqual(o["add"], [42, 440])
        self.assertEqual(o["table"], {"sum": 3, "list": [1, 2], "nested": {"deep": {"ok": True}}})
        self.assertEqual(o["errobj"]["e"], {"kind": "INVALID", "message": "bad input"})
        self.assertNotIn("r", o["errobj"])
        self.assertEqual(o["errstr"]["e"]["message"], "plain text")
        self.assertIn("boom", o["raise"]["e"]["message"])
        self.assertEqual(o["raise_obj"]["e"], {"kind": "CONFLICT", "message": "taken"})
        self.assertEqual(o["unknown"]["e"]["kind"], "NOT_FOUND")
        self.assertEqual(o["not_function"]["e"]["kind"], "NOT_FOUND")
        self.assertEqual(o["misuse"], "raised")
        self.assertEqual(o["recurse"]["e"]["kind"], "INVALID", o["recurse"])
        self.assertIn("nested more than 16 deep", o["recurse"]["e"]["message"])
        self.assertRegex(o["pid"], r"^\{app:calc\|0x[0-9a-f]+\}$")

    def test_context_values_and_nested_calls(self):
        o = self.out
        self.assertEqual(o["ctx_base"], {"all": [], "err": "NOT_FOUND"})
        self.assertEqual(o["ctx_x"]["all"], {"user": "bob", "n": 1})
        self.assertEqual(o["ctx_x"]["user"], "bob")
        self.assertEqual(o["ctx_y"]["all"], {"user": "bob", "n": 2})   # x itself unchanged above
        self.assertEqual(o["ctx_nested"]["outer"], {"user": "bob", "n": 2})
        self.assertEqual(o["ctx_nested"]["inner"]["all"], {"user": "bob", "n": 2, "inner": "yes"})
        self.assertIs(o["ctx_bad_key"], False)

    def test_timeout_stops_the_callee(self):
        o = self.out
        self.assertEqual(o["timeout"]["e"]["kind"], "TIMEOUT", o["timeout"])
        self.assertLess(o["timeout"]["ms"], 1000)
        self.assertEqual(o["timeout_ms"]["e"]["kind"], "TIMEOUT")
        self.assertEqual(o["mark"], "none")     # neither timed-out nor cancelled callee wrote it

    def test_futures(self):
        o = self.out
        self.assertEqual(o["future"], {"data": 11, "complete": True, "canceled": False,
                                       "has_error": False})
        self.assertEqual(o["select_timer"], {"timer_won": True, "complete": False})
        self.assertIs(o["cancel"], True)
        self.assertEqual(o["after_cancel"], {"complete": True, "canceled": True, "has": True,
                                             "kind": "CANCELED", "again": False})
        self.assertEqual(o["select_future"], {"future_won": True, "data": 2})
        self.assertEqual(o["future_failed"], {"closed": True, "has": True, "kind": "INVALID",
                                              "result_kind": "INVALID", "canceled": False})

    def test_worker_stays_free_and_consumer_calls(self):
        o = self.out
        self.assertEqual(o["order"], ["pong=pong", "slow=slept"])
        self.assertEqual(o["victim_calling"], "calling")
        self.assertEqual(o["mark"], "none")     # the terminated caller's callee was stopped
        self.assertEqual(o["job"]["state"], "done", o["job"])
        self.assertEqual(o["job"]["result"], {"sum": 7, "product": 12, "err": "INVALID"})
        self.assertEqual(o["short_job"]["state"], "failed", o["short_job"])
        self.assertIn("timed out", o["short_job"]["errors"][0]["error"])
        self.assertEqual(o["mark"], "none")     # and the function it called was stopped


LIMITS_MAIN = r"""
local funcs = require("funcs")
local json = require("json")
local time = require("time")
local io = require("io")
local function main()
  local out = {}
  local busy = funcs.async("app:slow", "5s")            -- takes the one call thread
  -- waits in the queue (1 of 2 places); its waiter gives up at the deadline by itself
  local t0 = time.now()
  local r, e = funcs.new():with_options({timeout = "100ms"}):call("app:calc", "add", 1, 1)
  out.queued = {kind = e and e:kind(), message = e and e:message(),
                ms = time.now():sub(t0):milliseconds(), busy_done = busy:is_complete()}
  local second = funcs.async("app:calc", "add", 1, 2)   -- the 2nd place (the 1st is still held)
  local over = funcs.async("app:calc", "add", 1, 3)
  local oe = over:error()
  out.over = {complete = over:is_complete(), kind = oe and oe:kind(), retry_later = second:is_complete()}
  busy:cancel()
  local pl = second:result()
  out.second = pl and pl:data()
  io.print(json.encode(out))
  return 0
end
return {main = main}
"""


class Limits(th.TestCase):
    """taskhost.yaml funcs: {max_threads, max_queue}: a full queue is RATE_LIMITED, and a call
    waiting for a thread gives up at its deadline."""

    def test_queue_bound_and_deadline_while_queued(self):
        d = th.script_project(LIMITS_MAIN, extra_entries=ENTRIES,
                              modules="[io, time, json, funcs]",
                              extra_files={"src/calc.lua": CALC, "src/job.lua": JOB,
                                           "src/procs.lua": PROCS,
                                           "taskhost.yaml": "funcs:\n  max_threads: 1\n  max_queue: 2\n"})
        res = th.run(["run", d, "-x", "app:main"], timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        out = json.loads(re.search(r"^\{.*\}$", res.stdout, re.M).group(0))
        self.assertEqual(out["queued"]["kind"], "TIMEOUT", out)
        self.assertEqual(out["queued"]["message"], "funcs: the call did not finish in time")
        self.assertLess(out["queued"]["ms"], 4000)       # long before the 5 s call freed the thread
        self.assertIs(out["queued"]["busy_done"], False)
        self.assertEqual(out["over"], {"complete": True, "kind": "RATE_LIMITED", "retry_later": False})
        self.assertEqual(out["second"], 3)

    def test_bad_setting_is_refused(self):
        d = th.script_project("return {main = function() return 0 end}",
                              extra_files={"taskhost.yaml": "funcs:\n  max_threads: 0\n"})
        res = th.run(["check", d], timeout=60)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("funcs.max_threads must be an integer from 1 to 1024", res.stderr + res.stdout)


HTTP_ENTRIES = """
- name: gateway
  kind: http.service
  addr: ":8080"
  timeouts: {write: 300ms}
  lifecycle: {auto_start: true}
- name: api
  kind: http.router
  meta: {server: app:gateway}
- name: handler
  kind: function.lua
  source: file://handler.lua
  method: handler
  modules: [http, funcs, json, env]
- name: ep
  kind: http.endpoint
  meta: {router: app:api}
  method: GET
  path: /calc/{mode}
  func: app:handler
"""

HANDLER = """
local http = require("http")
local funcs = require("funcs")
local json = require("json")
local env = require("env")
local function handler()
  local req, res = http.request(), http.response()
  local mode = req:param("mode")
  if mode == "mark" then res:write(env.get("MARK") or "none") return end
  if mode == "slow" then
    local r, e = funcs.call("app:slow", "1s", "from-handler")
    res:write(tostring(r) .. " " .. tostring(e))
    return
  end
  local s, p = funcs.call("app:calc", "add", 6, 7)
  local _, e = funcs.call("app:calc", "raise_obj")
  res:write_json({sum = s, product = p, err = e:kind()})
end
return {handler = handler}
"""


class FromAHandler(th.TestCase):
    def test_handler_calls_and_its_deadline_stops_the_callee(self):
        d = project()
        import os
        idx = os.path.join(d, "src/_index.yaml")
        with open(idx, "a") as f:
            f.write(th.textwrap.indent(th.textwrap.dedent(HTTP_ENTRIES), "  "))
        with open(os.path.join(d, "src/handler.lua"), "w") as f:
            f.write(HANDLER)
        srv = th.Server(d, ["-o", "app:gateway:addr=127.0.0.1:0"])
        try:
            port = srv.ports()[0]
            st, _, body = th.http(port, "GET", "/calc/add")
            self.assertEqual(st, 200, body + srv.log())
            self.assertEqual(json.loads(body), {"sum": 13, "product": 42, "err": "CONFLICT"})
            # the handler's write timeout (300ms) bounds the call: 500, the callee stops
            st, _, body = th.http(port, "GET", "/calc/slow")
            self.assertEqual(st, 500, body)
            # after the callee's 1 s would have passed, the marker is still unwritten
            import time
            time.sleep(1.2)
            st, _, body = th.http(port, "GET", "/calc/mark")
            self.assertEqual((st, body), (200, "none"), srv.log())
        finally:
            srv.stop()


if __name__ == "__main__":
    th.main()
