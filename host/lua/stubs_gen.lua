--[[
stubs_gen.lua — turns the module description (modules.lua) into its outputs. Embedded in the
binary with modules.lua; host/lua/stubs.c runs this chunk in a bare Lua state of its own
(base, string and table libraries only) with the description as its argument, and it returns
a table of three functions:
  files()  -> array of {name, text}: one LuaLS meta file per module ("time.lua" ...) and
              "globals.lua" for the global functions
  readme() -> the README's module table (header and one row per module with a cell)
  list()   -> one line per name the description declares: "module\tNAME\tMEMBER",
              "global\tNAME\tMEMBER", "class\tNAME\tMEMBER" (MEMBER: "a.b", ":m", ".f")
              and "function\t_G\tNAME" for global functions
A malformed item raises with the item's text, so a slip in modules.lua fails the build's
tests, not a user's editor.
]]

local desc = ...

-- ---- signatures ---------------------------------------------------------------------

local OPEN = {["("] = ")", ["{"] = "}", ["<"] = ">", ["["] = "]"}
local CLOSE = {[")"] = true, ["}"] = true, [">"] = true, ["]"] = true}

-- Splits s at top-level commas (outside () {} <> []).
local function split_top(s)
  local out, depth, start = {}, 0, 1
  for i = 1, #s do
    local c = s:sub(i, i)
    if OPEN[c] then depth = depth + 1
    elseif CLOSE[c] then depth = depth - 1
    elseif c == "," and depth == 0 then
      out[#out + 1] = s:sub(start, i - 1)
      start = i + 1
    end
  end
  local last = s:sub(start)
  if last:match("%S") then out[#out + 1] = last end
  for i, v in ipairs(out) do out[i] = v:match("^%s*(.-)%s*$") end
  return out
end

local function bad(sig, why) error(("modules.lua: %q: %s"):format(sig, why), 0) end

-- "a.b" / "a:b" / ":b" -> {segments}, method flag.
local function parse_path(sig, path)
  local method = false
  local head, last = path:match("^(.-):([%w_]+)$")
  if last then method, path = true, (head == "" and last or head .. "." .. last) end
  local segs = {}
  for seg in path:gmatch("[^.]+") do
    if not seg:match("^[%a_][%w_]*$") and not seg:match("^{[%w_,]+}$") then bad(sig, "bad name " .. seg) end
    segs[#segs + 1] = seg
  end
  if #segs == 0 then bad(sig, "no name") end
  return segs, method, head == ""
end

local function parse_param(sig, p)
  local name, opt, ty = p:match("^([%a_][%w_]*)(%??):%s*(.+)$")
  if not name then
    ty = p:match("^%.%.%.:%s*(.+)$")
    if not ty then bad(sig, "bad parameter " .. p) end
    name, opt = "...", ""
  end
  return {name = name, opt = opt == "?", type = ty}
end

-- One item {sig, doc} -> {kind = "func"|"field", segs, method, params, returns, type, doc}.
local function parse_item(item)
  local sig, doc, over = item[1], item[2], item.overloads
  if type(sig) ~= "string" or type(doc) ~= "string" or doc == "" then bad(tostring(sig), "want {signature, doc}") end
  local path, rest = sig:match("^([%w_.:{},]+)(%(.*)$")
  if path then
    local depth, close = 0, nil
    for i = 1, #rest do
      local c = rest:sub(i, i)
      if c == "(" then depth = depth + 1 elseif c == ")" then depth = depth - 1 end
      if depth == 0 then close = i break end
    end
    if not close then bad(sig, "unbalanced parentheses") end
    local params, tail = rest:sub(2, close - 1), rest:sub(close + 1)
    local returns = {}
    if tail:match("%S") then
      local r = tail:match("^%s*%->%s*(.+)$")
      if not r then bad(sig, "want -> after the parameters") end
      returns = split_top(r)
    end
    local segs, method, bare = parse_path(sig, path)
    local ps = {}
    for _, p in ipairs(split_top(params)) do ps[#ps + 1] = parse_param(sig, p) end
    for _, o in ipairs(over or {}) do
      if type(o) ~= "string" or not o:match("^fun%(") then bad(sig, "an overload is a fun(...) type") end
    end
    return {kind = "func", segs = segs, method = method, bare = bare, params = ps, returns = returns, doc = doc,
            overloads = over or {}}
  end
  local fpath, opt, ty = sig:match("^([%w_.{},]+)(%??):%s*(.+)$")
  if not fpath then bad(sig, "neither a function nor a field") end
  local segs = parse_path(sig, fpath)
  return {kind = "field", segs = segs, opt = opt == "?", type = ty, doc = doc}
end

-- The names a field's last segment stands for ("{a,b}" -> a, b).
local function expand(seg)
  local inner = seg:match("^{(.*)}$")
  if not inner then return {seg} end
  local out = {}
  for n in inner:gmatch("[^,]+") do out[#out + 1] = n end
  return out
end

-- ---- LuaLS text ---------------------------------------------------------------------

local function lua_name(class) return (class:gsub("[.]", "_")) end

local function doc_lines(out, doc) out[#out + 1] = "---" .. doc end

local function emit_func(out, owner, it)
  doc_lines(out, it.doc)
  local names = {}
  for _, p in ipairs(it.params) do
    out[#out + 1] = ("---@param %s%s %s"):format(p.name, p.opt and "?" or "", p.type)
    names[#names + 1] = p.name
  end
  for _, r in ipairs(it.returns) do out[#out + 1] = "---@return " .. r end
  for _, o in ipairs(it.overloads) do out[#out + 1] = "---@overload " .. o end
  local name = owner and owner .. (it.method and ":" or ".") .. it.segs[#it.segs] or it.segs[1]
  out[#out + 1] = ("function %s(%s) end"):format(name, table.concat(names, ", "))
  out[#out + 1] = ""
end

-- Sub-tables of a module ("registry" of process.registry.register), in first-seen order.
local function subtables(items)
  local order, seen = {}, {}
  for _, it in ipairs(items) do
    for i = 1, it.method and 0 or #it.segs - 1 do    -- a module's own method: no sub-table
      local key = table.concat(it.segs, ".", 1, i)
      if not seen[key] then seen[key] = true; order[#order + 1] = key end
    end
  end
  return order
end

local function fields_of(items, prefix)
  local out = {}
  for _, it in ipairs(items) do
    if it.kind == "field" and table.concat(it.segs, ".", 1, #it.segs - 1) == prefix then
      for _, n in ipairs(expand(it.segs[#it.segs])) do
        out[#out + 1] = ("---@field %s%s %s %s"):format(n, it.opt and "?" or "", it.type, it.doc)
      end
    end
  end
  return out
end

local function parsed(list)
  local out = {}
  for i, item in ipairs(list or {}) do out[i] = parse_item(item) end
  return out
end

local function emit_class(out, c)
  local items = parsed(c.items)
  doc_lines(out, c.doc)
  out[#out + 1] = "---@class " .. c.name
  for _, l in ipairs(fields_of(items, "")) do out[#out + 1] = l end
  local var = lua_name(c.name)
  out[#out + 1] = ("local %s = {}"):format(var)
  out[#out + 1] = ""
  for _, it in ipairs(items) do
    if it.kind == "func" then
      if not it.method then bad(c.name, "class items are methods (:name) or fields") end
      emit_func(out, var, it)
    end
  end
end

local HEADER = "-- Generated by `taskhost stubs` from host/lua/modules.lua; do not edit."

local function module_file(m)
  local items = parsed(m.items)
  local out = {m.extends and "---@meta" or "---@meta " .. m.name, HEADER, ""}
  for _, a in ipairs(m.aliases or {}) do
    out[#out + 1] = "---" .. a.doc
    out[#out + 1] = ("---@alias %s %s"):format(a.name, a.type)
    out[#out + 1] = ""
  end
  local var = m.name
  if not m.extends then
    doc_lines(out, m.doc)
    out[#out + 1] = "---@class " .. m.name
    for _, l in ipairs(fields_of(items, "")) do out[#out + 1] = l end
    out[#out + 1] = (m.global and "%s = {}" or "local %s = {}"):format(var)
    out[#out + 1] = ""
  end
  for _, sub in ipairs(subtables(items)) do
    local cls = m.name .. "." .. sub
    out[#out + 1] = "---@class " .. cls
    for _, l in ipairs(fields_of(items, sub)) do out[#out + 1] = l end
    out[#out + 1] = ("%s.%s = {}"):format(var, sub)
    out[#out + 1] = ""
  end
  for _, it in ipairs(items) do
    if it.kind == "func" then
      local owner = var
      local n = #it.segs
      if it.bare then bad(m.name, "a module's method needs its name: name:method") end
      if it.method then
        if it.segs[1] ~= m.name or n ~= 2 then bad(m.name, "a method of the module is written " .. m.name .. ":name") end
      elseif n > 1 then
        owner = var .. "." .. table.concat(it.segs, ".", 1, n - 1)
      end
      emit_func(out, owner, it)
    end
  end
  for _, c in ipairs(m.classes or {}) do emit_class(out, c) end
  if not m.extends then out[#out + 1] = "return " .. var end
  return table.concat(out, "\n") .. "\n"
end

local function globals_file()
  local out = {"---@meta", HEADER, ""}
  for _, it in ipairs(parsed(desc.globals)) do
    if it.kind ~= "func" or #it.segs ~= 1 then bad(it.doc, "a global is a function name(...)") end
    emit_func(out, nil, it)               -- owner nil: a global function
  end
  return table.concat(out, "\n")
end

-- ---- the three outputs ----------------------------------------------------------------

local api = {}

function api.files()
  local out = {}
  for _, m in ipairs(desc.modules) do out[#out + 1] = {m.name .. ".lua", module_file(m)} end
  out[#out + 1] = {"globals.lua", globals_file()}
  return out
end

function api.readme()
  local out = {"| module | what works |", "|---|---|"}
  for _, m in ipairs(desc.modules) do
    if m.readme then out[#out + 1] = ("| `%s` | %s |"):format(m.name, m.readme) end
  end
  return table.concat(out, "\n") .. "\n"
end

local function list_items(out, kind, owner, items, class)
  for _, it in ipairs(parsed(items)) do
    local segs = it.segs
    if it.method and not class then segs = {table.unpack(segs, 2)} end
    local head = table.concat(segs, ".", 1, #segs - 1)
    for _, n in ipairs(it.kind == "field" and expand(segs[#segs]) or {segs[#segs]}) do
      local member
      if it.method then member = ":" .. n
      elseif class then member = "." .. n
      else member = head == "" and n or head .. "." .. n end
      out[#out + 1] = ("%s\t%s\t%s"):format(kind, owner, member)
    end
  end
end

function api.list()
  local out = {}
  for _, m in ipairs(desc.modules) do
    list_items(out, m.global and "global" or "module", m.name, m.items, false)
    for _, c in ipairs(m.classes or {}) do list_items(out, "class", c.name, c.items, true) end
  end
  for _, it in ipairs(parsed(desc.globals)) do out[#out + 1] = "function\t_G\t" .. it.segs[1] end
  return table.concat(out, "\n") .. "\n"
end

return api
