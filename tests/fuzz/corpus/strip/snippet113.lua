local s = 'it\'s: "x"' .. "a\"b: c"
