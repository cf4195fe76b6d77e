#!/usr/bin/lua -- shebang: x
return 1
