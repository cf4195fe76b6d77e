"""Shared pieces of the http_client e2e tests: run a Lua snippet as the -x process of a
throwaway project and read back the one JSON line it prints.

A snippet is the body of `run(C)`: C is the JSON config the test passes (URLs of its servers),
the snippet returns a table, printed as JSON. R(res, err [, nobody]) turns a call's result into
plain data: {status_code, body, body_size, headers, url} or {err = {message, kind, retryable}}.
"""
import json
import tempfile
import textwrap

import th

MODULES = "[io, process, time, channel, json, errors, http_client]"

PRELUDE = """
local io = require("io")
local json = require("json")
local time = require("time")
local errors = require("errors")
local http_client = require("http_client")

local function E(err)
  if err == nil then return nil end
  if type(err) ~= "userdata" and type(err) ~= "table" then return {message = tostring(err)} end
  local okk, kind = pcall(function() return err:kind() end)
  local okm, msg = pcall(function() return err:message() end)
  local okr, retry = pcall(function() return err:retryable() end)
  return {message = okm and msg or tostring(err), kind = okk and kind or nil,
          retryable = okr and retry or nil}
end

local function R(res, err, nobody)
  local o = {err = E(err)}
  if res then
    o.status_code, o.body_size, o.url = res.status_code, res.body_size, res.url
    o.headers = res.headers
    if not nobody then o.body = res.body end
  end
  return o
end

local function now_ms() return time.now():unix_nano() / 1e6 end
"""

EPILOGUE = """
return {main = function(arg)
  local out = run(json.decode(arg))
  io.print(json.encode(out))
  return 0
end}
"""


def lua(test, snippet, cfg, timeout=60, env=None, extra_entries="", extra_files=None):
    """Runs snippet (the body of run(C)) as app:main with -x; returns its decoded result."""
    main = PRELUDE + "local function run(C)\n" + textwrap.dedent(snippet) + "\nend\n" + EPILOGUE
    project = th.script_project(main, modules=MODULES, extra_entries=extra_entries,
                                extra_files=extra_files)
    r = th.run(["run", project, "-x", "app:main", json.dumps(cfg)], timeout=timeout, env=env)
    test.assertEqual(r.returncode, 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("{", "["))]
    test.assertTrue(lines, f"no JSON line in stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return json.loads(lines[-1])


def headers(o):
    """The response headers of R's result as a dict (an empty Lua table encodes as [])."""
    h = o.get("headers") or {}
    return h if isinstance(h, dict) else {}


def body_json(o):
    return json.loads(o["body"])


def read(path):
    with open(path) as f:
        return f.read()


def tmpdir():
    return tempfile.mkdtemp(prefix="taskhost-httpc-")

