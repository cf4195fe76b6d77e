/*
** linit.h — the one list of the Lua modules scripts see (as Lua's own linit.c lists its
** libraries): whoever makes an rt sets rt->libs = linit_libs() before any Lua runs, and the
** runtime (luaenv.c) finds every built-in module, `string` included, through that list.
** Threads: the list is constant; any thread may read it.
*/
#ifndef TASKHOST_LINIT_H
#define TASKHOST_LINIT_H

struct luaenv_lib;

/* The built-in modules, ended by an entry whose name is NULL (struct luaenv_lib, luaenv.h). */
const struct luaenv_lib *linit_libs(void);

#endif
