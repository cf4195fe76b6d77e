"""http_client through the real binary, against local servers the tests start
(httpd_misbehave.py): methods, headers, query/form/JSON bodies and response fields; redirects;
chunked, 10 MB and over-limit bodies; refused, reset, never-answering and unresolvable
servers; unix sockets; TLS with a CA made here; request_batch; the same calls from an HTTP
handler and a job consumer; connection reuse and limits. One class per feature. Futures:
test_http_client_futures.py; load and cancellation: test_http_client_load.py; the examples:
test_http_client_examples.py."""
import json
import os
import time
import urllib.parse

import th
from httpd_lua import body_json, headers, lua, tmpdir
from httpd_misbehave import Server, make_certs, pattern_bytes, refused_port

MB = 1024 * 1024


class WithServer(th.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def cfg(self, **kw):
        c = {"echo": self.srv.url("/echo"), "base": self.srv.url("")}
        c.update(kw)
        return c

    def assertOk(self, o, status=200):
        self.assertIsNone(o.get("err"), o)
        self.assertEqual(o["status_code"], status, o)


class Methods(WithServer):
    def test_every_method_sends_its_name_headers_and_body(self):
        out = lua(self, """
            local out = {}
            for _, m in ipairs({"get", "post", "put", "patch", "delete", "head"}) do
              local opts = {headers = {["X-Test"] = "v-" .. m}}
              if m ~= "get" and m ~= "head" then opts.body = "body-" .. m end
              out[m] = R(http_client[m](C.echo .. "?m=" .. m, opts))
            end
            out.options = R(http_client.request("OPTIONS", C.echo))
            out.req_put = R(http_client.request("PUT", C.echo, {body = "via-request"}))
            return out
        """, self.cfg())
        for m in ("get", "post", "put", "patch", "delete"):
            self.assertOk(out[m])
            e = body_json(out[m])
            self.assertEqual(e["method"], m.upper())
            self.assertEqual(e["query"], {"m": [m]})
            self.assertEqual(e["headers"]["x-test"], "v-" + m)
            self.assertEqual(e["body"], "" if m == "get" else "body-" + m)
        self.assertOk(out["head"])
        self.assertEqual(out["head"]["body"], "")
        self.assertEqual(out["head"]["body_size"], 0)
        self.assertEqual(headers(out["head"])["content-type"], "application/json")
        self.assertEqual(body_json(out["options"])["method"], "OPTIONS")
        e = body_json(out["req_put"])
        self.assertEqual((e["method"], e["body"]), ("PUT", "via-request"))

    def test_query_table_is_encoded(self):
        out = lua(self, """
            return R(http_client.get(C.echo, {query = {a = "1", b = "x y&z=\\u{e9}/?"}}))
        """, self.cfg())
        self.assertOk(out)
        self.assertEqual(body_json(out)["query"], {"a": ["1"], "b": ["x y&z=\u00e9/?"]})

    def test_a_query_array_repeats_its_key(self):
        out = lua(self, """
            return R(http_client.get(C.echo, {query = {tag = {"a", "b c"}, one = "1"}}))
        """, self.cfg())
        self.assertOk(out)
        self.assertEqual(body_json(out)["query"], {"tag": ["a", "b c"], "one": ["1"]})

    def test_form_is_url_encoded_with_its_content_type(self):
        out = lua(self, """
            return R(http_client.post(C.echo, {form = {name = "a b", x = "1&2=3", u = "\\u{e9}"}}))
        """, self.cfg())
        self.assertOk(out)
        e = body_json(out)
        self.assertEqual(e["method"], "POST")
        self.assertTrue(e["headers"]["content-type"].startswith("application/x-www-form-urlencoded"), e)
        self.assertEqual(urllib.parse.parse_qs(e["body"]), {"name": ["a b"], "x": ["1&2=3"], "u": ["\u00e9"]})

    def test_json_body_and_a_large_request_body(self):
        out = lua(self, """
            local doc = {a = 1, list = {1, 2, 3}, s = "\\u{e9}", nested = {ok = true}}
            local small = R(http_client.post(C.echo, {headers = {["Content-Type"] = "application/json"},
                                                     body = json.encode(doc)}))
            local big = R(http_client.put(C.echo, {body = string.rep("x", 1048576)}))
            local b = json.decode(big.body); big.body = nil
            return {small = small, big = big, big_size = b.body_size}
        """, self.cfg())
        self.assertOk(out["small"])
        e = body_json(out["small"])
        self.assertEqual(e["headers"]["content-type"], "application/json")
        self.assertEqual(json.loads(e["body"]), {"a": 1, "list": [1, 2, 3], "s": "\u00e9", "nested": {"ok": True}})
        self.assertOk(out["big"])
        self.assertEqual(out["big_size"], MB)

    def test_response_fields_status_lower_case_and_repeated_headers(self):
        url = self.srv.url("/echo?status=201&header=X-Reply:Yes&header=X-Multi:a&header=X-Multi:b")
        out = lua(self, """
            local r = R(http_client.get(C.url))
            local nf = R(http_client.get(C.echo .. "?status=404"))
            local se = R(http_client.get(C.echo .. "?status=503"))
            return {r = r, nf = nf, se = se}
        """, self.cfg(url=url))
        r = out["r"]
        self.assertOk(r, 201)
        h = headers(r)
        self.assertTrue(h and all(k == k.lower() for k in h), h)
        self.assertEqual(h["x-reply"], "Yes")
        self.assertEqual(h["x-multi"], "a, b")                 # repeated: joined with ", "
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(r["body_size"], len(r["body"].encode()))
        self.assertEqual(int(h["content-length"]), r["body_size"])
        self.assertEqual(r["url"], url)
        # an HTTP error status is a response, not an error
        self.assertOk(out["nf"], 404)
        self.assertOk(out["se"], 503)

    def test_encode_and_decode_uri(self):
        out = lua(self, """
            local s = "a b&c=d/\\u{e9}?#%+"
            local e = http_client.encode_uri(s)
            local v, err = http_client.decode_uri("%zz")
            return {e = e, back = http_client.decode_uri(e), bad = E(err), bad_value = v}
        """, self.cfg())
        self.assertEqual(out["back"], "a b&c=d/\u00e9?#%+")
        self.assertEqual(out["bad"]["kind"], "INVALID", out)
        for c in " &=?#\u00e9":
            self.assertNotIn(c, out["e"])


class Redirects(WithServer):
    def test_relative_and_absolute_hops_are_followed_to_the_final_url(self):
        out = lua(self, """
            return {rel = R(http_client.get(C.base .. "/redirect?n=3&kind=rel", {follow_redirects = 5})),
                    abs = R(http_client.get(C.base .. "/redirect?n=3&kind=abs", {follow_redirects = 5})),
                    s301 = R(http_client.get(C.base .. "/redirect?n=1&code=301", {follow_redirects = 5}))}
        """, self.cfg())
        for k in ("rel", "abs", "s301"):
            self.assertOk(out[k])
            e = body_json(out[k])
            self.assertEqual((e["method"], e["query"]["n"]), ("GET", ["0"]), k)
            self.assertEqual(urllib.parse.urlsplit(out[k]["url"]).path, "/redirect", out[k]["url"])
            self.assertIn("n=0", out[k]["url"])

    def test_more_hops_than_allowed_fail_and_zero_does_not_follow(self):
        out = lua(self, """
            return {over = R(http_client.get(C.base .. "/redirect?n=3", {follow_redirects = 2})),
                    exact = R(http_client.get(C.base .. "/redirect?n=2", {follow_redirects = 2})),
                    none = R(http_client.get(C.base .. "/redirect?n=1", {follow_redirects = 0})),
                    yes = R(http_client.get(C.base .. "/redirect?n=2", {follow_redirects = true}))}
        """, self.cfg())
        self.assertIsNotNone(out["over"].get("err"), out["over"])
        self.assertIsNone(out["over"].get("status_code"), out["over"])
        self.assertOk(out["exact"])
        self.assertOk(out["yes"])
        self.assertOk(out["none"], 302)
        self.assertIn("/redirect?n=0", headers(out["none"])["location"])

    def test_307_keeps_post_and_body_303_turns_it_into_get(self):
        out = lua(self, """
            return {t = R(http_client.post(C.base .. "/redirect?n=1&code=307", {body = "keep", follow_redirects = 3})),
                    s = R(http_client.post(C.base .. "/redirect?n=1&code=303", {body = "drop", follow_redirects = 3}))}
        """, self.cfg())
        t, s = body_json(out["t"]), body_json(out["s"])
        self.assertEqual((t["method"], t["body"]), ("POST", "keep"))
        self.assertEqual((s["method"], s["body"]), ("GET", ""))


class Bodies(WithServer):
    def test_chunked_response(self):
        out = lua(self, """
            local res, err = http_client.get(C.base .. "/chunked?n=100&size=1000")
            local o = R(res, err, true)
            o.same = res and res.body == string.rep("0123456789", 10000)
            o.len = res and #res.body
            return o
        """, self.cfg())
        self.assertOk(out)
        self.assertEqual((out["body_size"], out["len"], out["same"]), (100000, 100000, True))

    def test_ten_megabytes(self):
        size = 10 * MB
        out = lua(self, """
            local res, err = http_client.get(C.base .. "/big?size=" .. C.size,
                                             {max_response_body = 16 * 1048576, timeout = "60s"})
            local o = R(res, err, true)
            if res then o.len, o.head, o.tail = #res.body, res.body:sub(1, 20), res.body:sub(-20) end
            return o
        """, self.cfg(size=size))
        self.assertOk(out)
        tail = pattern_bytes(size)[-20:].decode()
        self.assertEqual((out["body_size"], out["len"]), (size, size))
        self.assertEqual((out["head"], out["tail"]), ("01234567890123456789", tail))

    def test_max_response_body_exceeded_is_an_error(self):
        out = lua(self, """
            return {cl = R(http_client.get(C.base .. "/big?size=1048576", {max_response_body = 1000})),
                    ch = R(http_client.get(C.base .. "/chunked?n=100&size=1000", {max_response_body = 5000})),
                    fits = R(http_client.get(C.base .. "/big?size=1000", {max_response_body = 1000}), nil, true)}
        """, self.cfg())
        for k in ("cl", "ch"):
            self.assertIsNone(out[k].get("status_code"), out[k])
            self.assertRegex(out[k]["err"]["message"], r"(?i)too large|max_response_body|limit", out[k])
        self.assertOk(out["fits"])
        self.assertEqual(out["fits"]["body_size"], 1000)


class Failures(WithServer):
    def test_connection_refused_is_unavailable_and_retryable(self):
        out = lua(self, """
            return R(http_client.get(C.url, {timeout = "5s"}))
        """, self.cfg(url=f"http://127.0.0.1:{refused_port()}/x"))
        self.assertEqual(out["err"]["kind"], "UNAVAILABLE", out)
        self.assertIs(out["err"].get("retryable"), True, out)

    def test_reset_mid_body_is_unavailable(self):
        out = lua(self, """
            return R(http_client.get(C.base .. "/reset?size=100000&part=1000", {timeout = "10s"}))
        """, self.cfg())
        self.assertIsNone(out.get("status_code"), out)
        self.assertEqual(out["err"]["kind"], "UNAVAILABLE", out)

    def test_a_server_that_never_answers_times_out_and_the_connection_is_closed(self):
        out = lua(self, """
            local t0 = now_ms()
            local a = R(http_client.get(C.base .. "/hang?tag=to-str", {timeout = "300ms"}))
            a.ms = now_ms() - t0
            t0 = now_ms()
            local b = R(http_client.get(C.base .. "/hang?tag=to-num", {timeout = 0.3}))
            b.ms = now_ms() - t0
            return {a = a, b = b}
        """, self.cfg())
        for k, tag in (("a", "to-str"), ("b", "to-num")):
            self.assertEqual(out[k]["err"]["kind"], "TIMEOUT", out[k])
            self.assertGreaterEqual(out[k]["ms"], 250, out[k])   # it did wait for the timeout
            self.assertLess(out[k]["ms"], 10000, out[k])         # hang detector
            self.assertTrue(self.srv.wait_event("closed", tag, timeout=10), tag)

    def test_an_unresolvable_host_fails_within_its_timeout(self):
        out = lua(self, """
            local t0 = now_ms()
            local o = R(http_client.get("http://no-such-host.taskhost-test.invalid/x", {timeout = "3s"}))
            o.ms = now_ms() - t0
            return o
        """, self.cfg())
        self.assertIsNone(out.get("status_code"), out)
        self.assertIn(out["err"].get("kind"), ("UNAVAILABLE", "TIMEOUT"), out)
        self.assertLess(out["ms"], 3000 + 2000, out)  # its timeout, plus slack for a loaded box

    def test_a_malformed_url_is_invalid(self):
        out = lua(self, """
            return {empty = R(http_client.get("")), bracket = R(http_client.get("http://[::1/x"))}
        """, self.cfg())
        for k in ("empty", "bracket"):
            self.assertEqual(out[k]["err"]["kind"], "INVALID", out[k])


class Limits(th.TestCase):
    """Connection reuse and the taskhost.yaml limits (http_client: max_connections_per_host,
    max_in_flight)."""

    def setUp(self):
        self.srv = Server()

    def tearDown(self):
        self.srv.stop()

    def test_sequential_requests_reuse_one_keep_alive_connection(self):
        out = lua(self, """
            local ok = 0
            for i = 1, 20 do
              local res = http_client.get(C.echo .. "?i=" .. i)
              if res and res.status_code == 200 then ok = ok + 1 end
            end
            return {ok = ok}
        """, {"echo": self.srv.url("/echo")})
        self.assertEqual(out["ok"], 20)
        self.assertEqual(self.srv.events.conns, 1)

    def test_connections_per_host_and_in_flight_caps(self):
        yaml = "http_client:\n  max_connections_per_host: 2\n  max_in_flight: 6\n"
        out = lua(self, """
            local done = channel.new(8)
            for i = 1, 8 do
              coroutine.spawn(function()
                local res, err = http_client.get(C.slow .. "&tag=cap" .. i, {timeout = "60s"})
                done:send(res and res.status_code == 200 and "ok" or (err and err:kind() or "?"))
              end)
            end
            local kinds = {}
            for i = 1, 8 do local k = done:receive() kinds[k] = (kinds[k] or 0) + 1 end
            return kinds
        """, {"slow": self.srv.url("/slow?delay=0.5")}, extra_files={"taskhost.yaml": yaml})
        self.assertEqual(out, {"ok": 6, "RATE_LIMITED": 2})
        self.assertLessEqual(self.srv.events.max_active, 2)
        self.assertLessEqual(self.srv.events.conns, 2)


class UnixSocket(th.TestCase):
    def test_get_over_a_unix_socket(self):
        d = tmpdir()
        path = os.path.join(d, "httpd.sock")
        with Server(unix_path=path):
            out = lua(self, """
                return {ok = R(http_client.get("http://localhost/echo?x=1", {unix_socket = C.path})),
                        missing = R(http_client.get("http://localhost/echo", {unix_socket = C.path .. ".none"}))}
            """, {"path": path})
        self.assertIsNone(out["ok"].get("err"), out)
        e = body_json(out["ok"])
        self.assertEqual((e["path"], e["query"]), ("/echo", {"x": ["1"]}))
        self.assertEqual(out["missing"]["err"]["kind"], "UNAVAILABLE", out)


class Tls(th.TestCase):
    """tls.ca / tls.cert / tls.key are paths of PEM files, made here by openssl."""

    @classmethod
    def setUpClass(cls):
        cls.certs = make_certs(tmpdir())
        c = cls.certs
        cls.good = Server(certfile=c["good.pem"], keyfile=c["good.key"])
        cls.wrong = Server(certfile=c["wrong.pem"], keyfile=c["wrong.key"])
        cls.mutual = Server(certfile=c["good.pem"], keyfile=c["good.key"], client_ca=c["ca.pem"])

    @classmethod
    def tearDownClass(cls):
        for s in (cls.good, cls.wrong, cls.mutual):
            s.stop()

    def cfg(self):
        c = self.certs
        return {"good": self.good.url("/echo"), "wrong": self.wrong.url("/echo"),
                "mutual": self.mutual.url("/echo"), "ca": c["ca.pem"],
                "cert": c["good.pem"], "key": c["good.key"]}

    def test_ca_accepted_wrong_name_refused_and_skip_verify(self):
        out = lua(self, """
            return {
              ca = R(http_client.get(C.good, {tls = {ca = C.ca}})),
              no_ca = R(http_client.get(C.good)),
              wrong = R(http_client.get(C.wrong, {tls = {ca = C.ca}})),
              skip = R(http_client.get(C.wrong, {tls = {insecure_skip_verify = true}})),
            }
        """, self.cfg())
        self.assertIsNone(out["ca"].get("err"), out["ca"])
        self.assertEqual(out["ca"]["status_code"], 200)
        for k in ("no_ca", "wrong"):
            self.assertIsNone(out[k].get("status_code"), (k, out[k]))
            self.assertIsNotNone(out[k].get("err"), (k, out[k]))
        self.assertIsNone(out["skip"].get("err"), out["skip"])
        self.assertEqual(out["skip"]["status_code"], 200)

    def test_server_name_is_the_name_the_certificate_must_have(self):
        out = lua(self, """
            return {name = R(http_client.get(C.wrong, {tls = {ca = C.ca, server_name = "wrong.example"}})),
                    other = R(http_client.get(C.good, {tls = {ca = C.ca, server_name = "wrong.example"}}))}
        """, self.cfg())
        self.assertIsNone(out["name"].get("err"), out["name"])
        self.assertEqual(out["name"]["status_code"], 200)
        self.assertIsNone(out["other"].get("status_code"), out["other"])

    def test_client_certificate(self):
        out = lua(self, """
            return {with = R(http_client.get(C.mutual, {tls = {ca = C.ca, cert = C.cert, key = C.key}})),
                    without = R(http_client.get(C.mutual, {tls = {ca = C.ca}}))}
        """, self.cfg())
        self.assertIsNone(out["with"].get("err"), out["with"])
        self.assertEqual(out["with"]["status_code"], 200)
        self.assertIsNone(out["without"].get("status_code"), out["without"])


class Batch(WithServer):
    def test_results_in_item_order_with_partial_failures(self):
        out = lua(self, """
            local items = {
              {"GET", C.echo .. "?i=1"},
              {"POST", C.echo .. "?i=2", {body = "two"}},
              {"GET", C.refused},
              {"GET", C.base .. "/slow?delay=0.3&i=4"},
              {"GET", C.base .. "/hang?tag=batch", {timeout = "300ms"}},
              {"PUT", C.echo .. "?i=6", {body = "six"}},
            }
            local rs, es = http_client.request_batch(items)
            local out = {}
            for i = 1, #items do out[i] = R(rs[i], es[i]) end
            local e1, e2 = http_client.request_batch({})
            return {items = out, empty = {#e1, #e2}}
        """, self.cfg(refused=f"http://127.0.0.1:{refused_port()}/"))
        items = out["items"]
        self.assertEqual(len(items), 6)
        for i, method, body in ((1, "GET", ""), (2, "POST", "two"), (4, "GET", ""), (6, "PUT", "six")):
            o = items[i - 1]
            self.assertIsNone(o.get("err"), (i, o))
            e = body_json(o)
            self.assertEqual((e["method"], e["query"]["i"], e["body"]), (method, [str(i)], body))
        self.assertEqual(items[2]["err"]["kind"], "UNAVAILABLE", items[2])
        self.assertIsNone(items[2].get("status_code"))
        self.assertEqual(items[4]["err"]["kind"], "TIMEOUT", items[4])
        self.assertEqual(out["empty"], [0, 0])

    def test_items_run_concurrently(self):
        srv = Server()
        try:
            out = lua(self, """
                local items = {}
                for i = 1, 8 do items[i] = {"GET", C.slow .. "&tag=c" .. i} end
                local rs, es = http_client.request_batch(items)
                local ok = 0
                for i = 1, 8 do if rs[i] and rs[i].status_code == 200 then ok = ok + 1 end end
                return {ok = ok}
            """, {"slow": srv.url("/slow?delay=1")})
            self.assertEqual(out["ok"], 8)
            self.assertGreaterEqual(srv.events.max_active, 4)   # the server saw them at once
        finally:
            srv.stop()


CONTEXTS_INDEX = """
version: "1.0"
namespace: app
entries:
  - name: processes
    kind: process.host
    lifecycle: {auto_start: true}
  - name: gateway
    kind: http.service
    addr: "127.0.0.1:0"
    lifecycle: {auto_start: true}
  - {name: root, kind: http.router, meta: {server: gateway}, prefix: /}
  - {name: fetch, kind: function.lua, source: "file://fetch.lua", method: handler,
     modules: [http, http_client, json, channel]}
  - {name: fetch.ep, kind: http.endpoint, meta: {router: root}, method: GET, path: /fetch, func: fetch}
  - {name: fan.ep, kind: http.endpoint, meta: {router: root}, method: GET, path: /fan, func: fetch}
  - {name: batch.ep, kind: http.endpoint, meta: {router: root}, method: GET, path: /batch, func: fetch}
  - {name: jobs, kind: queue.queue, driver: memory, max_retries: 0}
  - {name: work, kind: function.lua, source: "file://work.lua", method: run, modules: [http_client, json]}
  - {name: workers, kind: queue.consumer, queue: jobs, func: work, concurrency: 2,
     lifecycle: {auto_start: true}}
  - {name: jobs.api, kind: queue.http, meta: {router: root}, queue: jobs, path: /jobs}
"""

# request_batch of {echo, refused}: {from of item 1, kind of item 2's error}
BATCH_LUA = """
local function batch(url, refused, from)
  local rs, es = http_client.request_batch({{"GET", url .. "?from=" .. from}, {"GET", refused}})
  return {rs[1] and json.decode(rs[1].body).query.from[1], es[2] and es[2]:kind(), rs[2] == nil}
end
"""

CONTEXTS_FETCH = """
local http = require("http")
local http_client = require("http_client")
local json = require("json")
""" + BATCH_LUA + """
local function handler()
  local req, w = http.request(), http.response()
  local url = req:query("url")
  if req:path() == "/batch" then
    w:write_json(batch(url, req:query("refused"), "handler"))
    return
  end
  if req:path() == "/fan" then
    -- three coroutines spawned by the handler, each its own request
    local ch = channel.new(3)
    for i = 1, 3 do
      coroutine.spawn(function()
        local res, err = http_client.get(url .. "?from=fan" .. i)
        ch:send(res and json.decode(res.body).query.from[1] or tostring(err))
      end)
    end
    local got = {}
    for i = 1, 3 do got[#got + 1] = ch:receive() end
    table.sort(got)
    w:write_json({got = got})
    return
  end
  local res, err = http_client.get(url .. "?from=handler")
  if not res then w:set_status(502) w:write_json({err = tostring(err)}) return end
  w:write_json({status = res.status_code, echo = json.decode(res.body)})
end
return {handler = handler}
"""

CONTEXTS_WORK = """
local http_client = require("http_client")
local json = require("json")
""" + BATCH_LUA + """
local function run(job)
  local res, err = http_client.get(job.url .. "?from=job")
  if not res then return nil, err end
  return {status = res.status_code, echo = json.decode(res.body),
          batch = batch(job.url, job.refused, "job-batch")}
end
return {run = run}
"""


class Contexts(WithServer):
    def test_get_and_batch_from_an_http_handler_a_spawned_coroutine_and_a_job_consumer(self):
        project = th.make_project({"src/_index.yaml": CONTEXTS_INDEX, "src/fetch.lua": CONTEXTS_FETCH,
                                   "src/work.lua": CONTEXTS_WORK})
        host = th.Server(project)
        try:
            port = host.ports()[0]
            q = urllib.parse.urlencode({"url": self.srv.url("/echo")})
            status, _, body = th.http(port, "GET", "/fetch?" + q, timeout=30)
            self.assertEqual(status, 200, body)
            data = json.loads(body)
            self.assertEqual((data["status"], data["echo"]["query"]["from"]), (200, ["handler"]))
            status, _, body = th.http(port, "GET", "/fan?" + q, timeout=30)
            self.assertEqual((status, json.loads(body)), (200, {"got": ["fan1", "fan2", "fan3"]}), body)
            refused = f"http://127.0.0.1:{refused_port()}/"
            q2 = urllib.parse.urlencode({"url": self.srv.url("/echo"), "refused": refused})
            status, _, body = th.http(port, "GET", "/batch?" + q2, timeout=30)
            self.assertEqual((status, json.loads(body)), (200, ["handler", "UNAVAILABLE", True]), body)
            status, _, body = th.http(port, "POST", "/jobs", json.dumps({"url": self.srv.url("/echo"),
                                                                          "refused": refused}))
            self.assertEqual(status, 202, body)
            jid = json.loads(body)["id"]
            deadline = time.monotonic() + 30
            info = {}
            while time.monotonic() < deadline:
                info = json.loads(th.http(port, "GET", f"/jobs/{jid}")[2])
                if info["state"] in ("done", "failed"):
                    break
                time.sleep(0.05)
            self.assertEqual(info["state"], "done", info)
            status, _, body = th.http(port, "GET", f"/jobs/{jid}/result")
            result = json.loads(body)
            result = result.get("result", result)
            self.assertEqual((result["status"], result["echo"]["query"]["from"]), (200, ["job"]), body)
            self.assertEqual(result["batch"], ["job-batch", "UNAVAILABLE", True], body)
        finally:
            code = host.stop()
        self.assertEqual(code, 0, host.log())


if __name__ == "__main__":
    th.main()
