local shared = {1, 2.5, "x", true}
local t = {namespace = "app", meta = {a = shared, b = shared}, [1] = "one", list = {{}, {k = {}}}}
t.entries = {{name = "e", kind = "http.endpoint", meta = {router = "r"}, method = "GET", path = "/x/{id}", func = "h"}}
return t
