x = #t + -y - ~z ~= w == v
