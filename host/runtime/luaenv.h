/*
** luaenv.h — builds a process's lua_State: counting allocator with an optional limit,
** sandboxed globals (wippy-compat.md §3.0), the built-in modules of rt->libs opened lazily
** on first use (process-cost.md: opening everything costs 3–4× the rest of a spawn), and a
** `require` that resolves only those, the entry's `modules:` and `imports:`.
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

/* One built-in module: `name` opened by `open` (luaL_requiref, cached in package.loaded) on
** first use. A `global` one is also a global of that name, opened when first touched, and may
** be required without appearing in the entry's `modules:`; the others need `modules:`.
** The runtime holds a list of them in rt->libs, ended by an entry whose name is NULL, set by
** whoever makes the rt (linit_libs(), linit.h); luaenv.c itself opens only Lua's base
** library. The `string` entry is also what strings index before the string library is open.
** Without a list (rt->libs NULL, or a state whose process has no rt) only the base library
** and the host's print/require/unpack exist: other globals are nil, require finds no
** built-in module, and indexing a string raises. */
struct luaenv_lib {
  const char *name;
  lua_CFunction open;
  int global;
};

#endif
