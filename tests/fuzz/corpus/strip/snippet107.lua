local x = f
(g)(1)
