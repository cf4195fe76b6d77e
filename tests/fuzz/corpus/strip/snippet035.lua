for k, v in pairs(t) do print(k:upper(), v) end
for i = 1, 3 do end
