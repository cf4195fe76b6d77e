/*
** stubs.h — editor support: the LuaLS annotation files (`---@meta`) of every host module and
** global, the README's module table and the list of declared names, all generated from one
** description, host/lua/modules.lua, which the build embeds (with its generator,
** host/lua/stubs_gen.lua). `taskhost stubs` and `taskhost init` use it (main.c).
** Threads: any thread; each call runs the generator in a Lua state of its own, closed
** before it returns. Nothing is kept between calls.
*/
#ifndef TASKHOST_STUBS_H
#define TASKHOST_STUBS_H

#include <stddef.h>
#include <stdio.h>

/* Writes one stub file per module (DIR/time.lua ...) and DIR/globals.lua, creating DIR and
** its parents; existing stub files are replaced. Returns the number of files written, or -1
** with the reason (the path and errno's text) in err. */
int stubs_write(const char *dir, char *err, size_t errlen);

/* What stubs_print prints. */
enum stubs_output {
  STUBS_README,   /* README's module table: header and one row per module */
  STUBS_LIST,     /* "module|global|class|function\tOWNER\tMEMBER" lines */
};

/* Prints that output to f. Returns 0, or -1 with the reason in err. */
int stubs_print(FILE *f, enum stubs_output what, char *err, size_t errlen);

/* Writes PATH (a .luarc.json) pointing lua-language-server at the stubs in `library`
** (a path as the file should name it): Lua 5.4, the library, Lua's own io, os, debug and
** utf8 off (the sandbox has none of them; the stubs declare `io` as the host module and
** `os` as its subset). Never replaces a file: returns 1 when PATH exists (kept), 0 when
** written, -1 with the reason in err. */
int stubs_write_luarc(const char *path, const char *library, char *err, size_t errlen);

#endif
