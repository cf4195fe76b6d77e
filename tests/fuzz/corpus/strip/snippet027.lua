local f: (number) -> string = tostring
