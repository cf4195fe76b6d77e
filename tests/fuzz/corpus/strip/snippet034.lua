for k: string, v: any in pairs(t) do end
