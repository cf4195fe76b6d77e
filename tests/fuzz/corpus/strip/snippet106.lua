repeat local x = 1 until x
while true do break end
