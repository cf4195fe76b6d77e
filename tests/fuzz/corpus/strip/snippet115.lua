local s = "a\z
  local x: T = 1"
