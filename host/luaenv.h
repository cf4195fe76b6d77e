/*
** luaenv.h — builds a process's lua_State: counting allocator with an optional limit,
** sandboxed globals (wippy-compat.md §3.0), standard libraries and host globals opened
** lazily on first use (process-cost.md: opening everything costs 3–4× the rest of a spawn),
** and a `require` that resolves only the entry's `modules:` and `imports:`.
** Owner: the worker running the process.
*/
#ifndef TASKHOST_LUAENV_H
#define TASKHOST_LUAENV_H

#include <lauxlib.h>
struct proc;

lua_State *luaenv_new(struct proc *p);
/* Frees a function state's block cache; after lua_close. */
void luaenv_cache_free(struct proc *p);
/* A small-block cache for one thread's states (NULL under ASan); and its release. */
struct blockcache *luaenv_cache_new(void);
void luaenv_cache_destroy(struct blockcache *bc);

/* Glue helpers shared by the lmod_*.c files. */
/* Registers metatable `mt` once: __index = methods (each gets the metatable as upvalue 1, so
** it can check its self argument by pointer), and __tostring if given. */
void luaenv_newtype(lua_State *L, const char *mt, const luaL_Reg *methods,
                    int (*tostring)(lua_State *));
/* The userdata at index 1 when its metatable is the calling method's upvalue 1 (see
** luaenv_newtype); otherwise raises a type error naming `mt`. Only for methods. */
void *luaenv_toself(lua_State *L, const char *mt);
/* Sets t[kv[i]] = kv[i+1] (strings) on the table on top, up to a NULL name. */
void luaenv_setstrings(lua_State *L, const char *const *kv);

/* Lua module openers implemented by the lmod_*.c files. */
int luaopen_process(lua_State *L);
int luaopen_channel(lua_State *L);
int luaopen_time(lua_State *L);
int luaopen_logger(lua_State *L);
int luaopen_tio(lua_State *L);
int luaopen_env(lua_State *L);
int luaopen_tcoroutine(lua_State *L);
int luaopen_payload(lua_State *L);
int luaopen_http(lua_State *L);
int luaopen_queue(lua_State *L);
/* string, with a fast string.format and stoppable patterns (lmod_string.c, lpattern.c); only for
** states made by luaenv_new (the pattern functions ask the state's process whether to stop) */
int luaopen_tstring(lua_State *L);

#endif
