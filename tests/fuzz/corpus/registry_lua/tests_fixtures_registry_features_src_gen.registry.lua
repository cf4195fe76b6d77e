-- a registry file written in Lua: it returns the same shape as a YAML file
local entries = {
  { name = "proc", kind = "process.lua", source = "file://lib/hello.lua", modules = { "time" } },
  { name = "host", kind = "process.host", lifecycle = { auto_start = true } },
  { name = "svc", kind = "process.service", process = "proc", host = "host", input = { "a", 1 } },
}
for i = 1, 3 do
  entries[#entries + 1] = { name = "item" .. i, kind = "registry.entry", index = i, tags = {} }
end
return { namespace = "gen", entries = entries }
