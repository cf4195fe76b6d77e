/*
** strip.h — removes Luau-style type annotations from Lua source before it is compiled by
** stock Lua 5.4 (wippy-compat.md §10.3). Pure function of its input; reentrant.
*/
#ifndef TASKHOST_STRIP_H
#define TASKHOST_STRIP_H

#include <stddef.h>

/* Writes a malloc'd copy of `src` to *out in which every annotation is replaced by spaces:
** the output has exactly `len` bytes (+ NUL) and every newline stays where it was, so line
** and column numbers in Lua's error messages stay true. Plain Lua passes through unchanged.
** Returns 0, or -1 with "line N: message" in err when an annotation cannot be delimited. */
int strip_types(const char *src, size_t len, char **out, char *err, size_t errlen);

#endif
