# Turns a text file into a C string constant: cmake -DIN=f -DOUT=f.c -DSYM=name -P embed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "/* generated from ${IN}; do not edit */\n#include <stddef.h>\n"
  "const char ${SYM}[] = {${body}0x00};\nconst size_t ${SYM}_len = ${len};\n")
