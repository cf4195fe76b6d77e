local t = { namespace = "app" }
local function boom()
  error("something broke")
end
boom()
return t
