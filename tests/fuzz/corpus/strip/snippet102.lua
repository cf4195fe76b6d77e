x = a < b and c > d or e <= f and g >= h or i << 2 >> 1
