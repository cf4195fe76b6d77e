#!/usr/bin/env lua5.1
--[[
check-stubs.lua — checks Lua code against the stub files `taskhost stubs DIR` writes, the
files lua-language-server would read, without LuaLS (not obtainable here). It runs on
lua5.1 with Debian's lua-check, whose parser (luacheck.parser, Lua 5.4 syntax) it uses.

  lua5.1 scripts/check-stubs.lua [--luacheckrc OUT] STUBDIR PATH...
  lua5.1 scripts/check-stubs.lua --dump STUBDIR     (the names the stub files declare)

1. Parses every STUBDIR/*.lua: `---@meta NAME` + `return X` make module NAME (require'd) of
   the table X; a global `X = {}` or `function X.f` makes a global; `X.f = {}` a sub-table;
   `---@field f` lines above a table declare its fields, `function X.f` / `X:f` its
   functions. Each `---@param p` must name a parameter of the function after it.
2. Walks every .lua under each PATH: names bound to `require("<stub module>")` (scoped:
   locals, parameters and loops shadow) and the stubs' globals; every read `x.f`, `x:f`,
   `x.f.g` on them must be declared (through sub-tables as deep as the stubs go).
3. With --luacheckrc, writes a luacheck config whose std `taskhost` has Lua 5.4's base
   functions the sandbox keeps, string/table/math, coroutine plus the stubs' additions and
   every stub global with its fields, for `luacheck --config OUT --only 11 14 PATH...`.

Prints `file:line: message` per problem; exits 1 if there was one, 2 on usage or a file
that does not parse, else 0 (a summary goes to stderr).
]]

local parser = require("luacheck.parser")
local decoder = require("luacheck.decoder")
local lfs = require("lfs")

local problems = 0
local function report(file, line, msg)
  problems = problems + 1
  io.write(("%s:%d: %s\n"):format(file, line or 0, msg))
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function parse(path, src)
  local ok, ast = pcall(parser.parse, decoder.decode(src))
  if not ok then
    io.stderr:write(("%s:%s: syntax error: %s\n"):format(path, type(ast) == "table" and ast.line or "?",
                                                         type(ast) == "table" and ast.msg or tostring(ast)))
    os.exit(2)
  end
  return ast
end

local function lua_files(path, out)
  if lfs.attributes(path, "mode") == "directory" then
    local names = {}
    for n in lfs.dir(path) do if n ~= "." and n ~= ".." then names[#names + 1] = n end end
    table.sort(names)
    for _, n in ipairs(names) do lua_files(path .. "/" .. n, out) end
  elseif path:match("%.lua$") then
    out[#out + 1] = path
  end
  return out
end

-- ---- 1. the stubs -----------------------------------------------------------------------

-- "a.b.c" of an Id/Index chain with string keys, or nil.
local function dotted(node)
  if node.tag == "Id" then return node[1] end
  if node.tag == "Index" and node[2].tag == "String" then
    local base = dotted(node[1])
    return base and base .. "." .. node[2][1]
  end
end

local decl = {}          -- table path ("process", "process.registry", "time") -> set of members
local modules = {}       -- require name -> table path
local globals = {}       -- global name -> true
local function member(path, name)
  decl[path] = decl[path] or {}
  decl[path][name] = true
end

local function stub_file(path)
  local src = read(path)
  local ast = parse(path, src)
  local meta = src:match("^%-%-%-@meta ([%w_]+)")
  -- annotations by line: the ---@field / ---@param lines above each statement
  local lines, pending, at = {}, {fields = {}, params = {}}, {}
  for l in (src .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  for i, l in ipairs(lines) do
    local f = l:match("^%-%-%-@field ([%w_]+)")
    local p = l:match("^%-%-%-@param ([%w_.]+)")
    if f then pending.fields[#pending.fields + 1] = f end
    if p then pending.params[#pending.params + 1] = {name = p, line = i} end
    if not l:match("^%s*%-%-") and l:match("%S") then
      at[i] = pending
      pending = {fields = {}, params = {}}
    end
  end
  local locals = {}
  for _, st in ipairs(ast) do
    local ann = at[st.line] or {fields = {}, params = {}}
    local lhs, rhs = st[1] and st[1][1], st[2] and st[2][1]
    local target
    if st.tag == "Local" and rhs and rhs.tag == "Table" then
      target = lhs[1]
      locals[target] = true
      decl[target] = decl[target] or {}
    elseif st.tag == "Set" and lhs and rhs then
      target = dotted(lhs)
      if not target then report(path, st.line, "unexpected assignment") end
      local base, name = target:match("^(.*)%.([%w_]+)$")
      if base then member(base, name)
      elseif not locals[target] then globals[target] = true end
      if rhs.tag == "Table" then decl[target] = decl[target] or {}
      elseif rhs.tag == "Function" then
        local params = {}
        for _, p in ipairs(rhs[1]) do params[p.tag == "Dots" and "..." or p[1]] = true end
        for _, p in ipairs(ann.params) do
          if not params[p.name] then report(path, p.line, ("---@param %s names no parameter of %s"):format(p.name, target)) end
        end
        ann.params = {}
        local root = target:match("^[%w_]+")
        if not locals[root] then globals[root] = true end
      end
    elseif st.tag == "Return" and meta and st[1] and st[1].tag == "Id" then
      modules[meta] = st[1][1]
    end
    for _, f in ipairs(ann.fields) do
      if target then member(target, f) else report(path, st.line, "---@field on no table") end
    end
    for _, p in ipairs(ann.params) do report(path, p.line, "---@param " .. p.name .. " before no function") end
  end
end

-- Lua 5.4's own functions of the libraries the host extends (its stubs declare only the
-- additions; LuaLS has these built in).
local LUA_COROUTINE = {"close", "create", "isyieldable", "resume", "running", "status", "wrap", "yield"}

-- ---- 2. the code ------------------------------------------------------------------------

local walk_block, walk_expr

local function lookup(scope, name)
  while scope do
    local b = scope.vars[name]
    if b ~= nil then return b end
    scope = scope.up
  end
end

local function new_scope(up) return {vars = {}, up = up} end

-- The stub table a name stands for: a module bound by require, or a stub global.
local function table_of(scope, name)
  local b = lookup(scope, name)
  if b == nil then return globals[name] and name or nil end
  return b ~= false and b or nil
end

local ctx = {}   -- file, checked count

local function check_path(base, names, line)
  local path = base
  for _, n in ipairs(names) do
    local members = decl[path]
    if not members then return end          -- past what the stubs describe (a function, a field)
    ctx.checked = ctx.checked + 1
    if not members[n] then
      report(ctx.file, line, ("%s.%s is not declared in the stubs"):format(path, n))
      return
    end
    path = path .. "." .. n
  end
end

-- x.f.g / x:f where x is an Id: the Id and the string keys.
local function chain(node)
  local names = {}
  while node.tag == "Index" and node[2].tag == "String" do
    table.insert(names, 1, node[2][1])
    node = node[1]
  end
  if node.tag == "Id" then return node[1], names end
end

local function require_of(scope, e)
  if e and e.tag == "Call" and e[1].tag == "Id" and e[1][1] == "require" and lookup(scope, "require") == nil
     and e[2] and e[2].tag == "String" then
    return modules[e[2][1]] or false
  end
  return false
end

local function walk_function(scope, fn)
  local s = new_scope(scope)
  for _, p in ipairs(fn[1]) do if p.tag == "Id" then s.vars[p[1]] = false end end
  walk_block(s, fn[2])
end

function walk_expr(scope, e)
  if type(e) ~= "table" then return end
  local t = e.tag
  if t == "Index" then
    local id, names = chain(e)
    local base = id and table_of(scope, id)
    if base and #names > 0 then check_path(base, names, e.line) return end
    walk_expr(scope, e[1]); walk_expr(scope, e[2])
  elseif t == "Invoke" then
    local id, names = chain(e[1])
    local base = id and table_of(scope, id)
    if base then
      names[#names + 1] = e[2][1]
      check_path(base, names, e.line)
    else
      walk_expr(scope, e[1])
    end
    for i = 3, #e do walk_expr(scope, e[i]) end
  elseif t == "Function" then
    walk_function(scope, e)
  else
    for _, c in ipairs(e) do walk_expr(scope, c) end
  end
end

local function walk_stat(scope, st)
  local t = st.tag
  if t == "Local" then
    for _, e in ipairs(st[2] or {}) do walk_expr(scope, e) end
    for i, id in ipairs(st[1]) do scope.vars[id[1]] = require_of(scope, (st[2] or {})[i]) end
  elseif t == "Localrec" then
    scope.vars[st[1][1][1]] = false
    walk_function(scope, st[2][1])
  elseif t == "Set" then
    for _, e in ipairs(st[2]) do walk_expr(scope, e) end
    for i, l in ipairs(st[1]) do
      if l.tag == "Id" then
        if lookup(scope, l[1]) == nil then      -- a global: `time = require("time")`
          local root = scope
          while root.up do root = root.up end
          root.vars[l[1]] = require_of(scope, st[2][i])
        end
      else
        walk_expr(scope, l)
      end
    end
  elseif t == "Do" then
    walk_block(new_scope(scope), st)
  elseif t == "While" then
    walk_expr(scope, st[1]); walk_block(new_scope(scope), st[2])
  elseif t == "Repeat" then
    local s = new_scope(scope)
    walk_block(s, st[1]); walk_expr(s, st[2])
  elseif t == "If" then
    for i = 1, #st, 2 do
      if st[i + 1] then walk_expr(scope, st[i]); walk_block(new_scope(scope), st[i + 1])
      else walk_block(new_scope(scope), st[i]) end
    end
  elseif t == "Fornum" then
    for i = 2, #st - 1 do walk_expr(scope, st[i]) end
    local s = new_scope(scope)
    s.vars[st[1][1]] = false
    walk_block(s, st[#st])
  elseif t == "Forin" then
    for _, e in ipairs(st[2]) do walk_expr(scope, e) end
    local s = new_scope(scope)
    for _, id in ipairs(st[1]) do s.vars[id[1]] = false end
    walk_block(s, st[3])
  elseif t == "Call" or t == "Invoke" then
    walk_expr(scope, st)
  else   -- Return, Goto, Label, Break
    for _, e in ipairs(st) do walk_expr(scope, e) end
  end
end

function walk_block(scope, block)
  for _, st in ipairs(block) do walk_stat(scope, st) end
end

-- ---- 3. a luacheck std ------------------------------------------------------------------

-- The sandbox's base functions (README "What the Lua side gets"; no load, dofile, loadfile,
-- collectgarbage, io, debug, package, utf8).
local BASE = {"assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
              "rawequal", "rawget", "rawlen", "rawset", "require", "select", "setmetatable",
              "tonumber", "tostring", "type", "warn", "xpcall", "_G", "_VERSION",
              "string", "table", "math", "coroutine"}

local function fields_def(path)
  local out = {}
  for n in pairs(decl[path] or {}) do
    out[n] = decl[path .. "." .. n] and {fields = fields_def(path .. "." .. n)} or {}
  end
  return out
end

local function serialize(v, ind)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    out[#out + 1] = ("%s  [%q] = %s,"):format(ind, k, serialize(v[k], ind .. "  "))
  end
  return "{\n" .. table.concat(out, "\n") .. "\n" .. ind .. "}"
end

local function write_luacheckrc(path)
  local lua54 = require("luacheck.builtin_standards").lua54.read_globals
  local rg = {}
  for _, n in ipairs(BASE) do rg[n] = lua54[n] end
  for g in pairs(globals) do
    local def = {fields = fields_def(g)}
    if lua54[g] and lua54[g].fields and g == "coroutine" then
      for k, v in pairs(lua54[g].fields) do def.fields[k] = v end
    end
    rg[g] = def
  end
  local f = assert(io.open(path, "w"))
  f:write("-- generated by scripts/check-stubs.lua from the stub files\n",
          "stds.taskhost = {read_globals = ", serialize(rg, ""), "}\nstd = \"taskhost\"\n")
  f:close()
end

-- ---- main -------------------------------------------------------------------------------

-- --dump: "module|global\tNAME\tMEMBER" for every name the stub files declare (sub-tables
-- flattened to "a.b", methods and fields alike), sorted, to compare with `stubs --list`.
local function dump()
  local out = {}
  local function leaves(kind, name, path, prefix)
    for n in pairs(decl[path] or {}) do
      if decl[path .. "." .. n] then leaves(kind, name, path .. "." .. n, prefix .. n .. ".")
      else out[#out + 1] = ("%s\t%s\t%s"):format(kind, name, prefix .. n) end
    end
  end
  for name, var in pairs(modules) do if not globals[var] then leaves("module", name, var, "") end end
  for g in pairs(globals) do if decl[g] then leaves("global", g, g, "") end end
  table.sort(out)
  io.write(table.concat(out, "\n"), "\n")
end

local args, rc_out, want_dump = {}, nil, false
local i = 1
while i <= #arg do
  if arg[i] == "--luacheckrc" then rc_out = arg[i + 1]; i = i + 2
  elseif arg[i] == "--dump" then want_dump = true; i = i + 1
  else args[#args + 1] = arg[i]; i = i + 1 end
end
if #args < 1 then
  io.stderr:write("usage: lua5.1 scripts/check-stubs.lua [--luacheckrc OUT] STUBDIR PATH...\n")
  os.exit(2)
end
local stubs = lua_files(args[1], {})
if #stubs == 0 then io.stderr:write(args[1] .. ": no stub files\n") os.exit(2) end
for _, s in ipairs(stubs) do stub_file(s) end
if want_dump then dump() os.exit(problems > 0 and 1 or 0) end
if decl.coroutine then for _, n in ipairs(LUA_COROUTINE) do member("coroutine", n) end end
if rc_out then write_luacheckrc(rc_out) end

local files, checked = 0, 0
for k = 2, #args do
  for _, path in ipairs(lua_files(args[k], {})) do
    ctx.file, ctx.checked = path, 0
    walk_block(new_scope(nil), parse(path, read(path)))
    files, checked = files + 1, checked + ctx.checked
  end
end
local nmod = 0
for _ in pairs(modules) do nmod = nmod + 1 end
io.stderr:write(("check-stubs: %d stub files (%d modules), %d files checked, %d names looked up, %d problems\n")
                :format(#stubs, nmod, files, checked, problems))
os.exit(problems > 0 and 1 or 0)
