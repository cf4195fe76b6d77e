local function h(msg: Message, n: number?): (boolean, string?)
  return true, nil
end
