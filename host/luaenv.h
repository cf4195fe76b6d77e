/*
** luaenv.h — builds a process's lua_State: counting allocator with an optional limit,
** sandboxed globals (wippy-compat.md §3.0), standard libraries and host globals opened
** lazily on first use (process-cost.md: opening everything costs 3–4× the rest of a spawn),
** and a `require` that resolves only the entry's `modules:` and `imports:`.
** Owner: the worker running the process.
*/
#ifndef TASKHOST_LUAENV_H
#define TASKHOST_LUAENV_H

typedef struct lua_State lua_State;
struct proc;

lua_State *luaenv_new(struct proc *p);
/* Frees a function state's block cache; after lua_close. */
void luaenv_cache_free(struct proc *p);

/* Lua module openers implemented by the lmod_*.c files. */
int luaopen_process(lua_State *L);
int luaopen_channel(lua_State *L);
int luaopen_time(lua_State *L);
int luaopen_logger(lua_State *L);
int luaopen_tio(lua_State *L);
int luaopen_env(lua_State *L);
int luaopen_errors(lua_State *L);
int luaopen_tcoroutine(lua_State *L);
int luaopen_payload(lua_State *L);
int luaopen_http(lua_State *L);

#endif
