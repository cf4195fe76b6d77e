/*
** luaenv.c — see luaenv.h.
*/
#include "luaenv.h"
#include "registry/code.h"
#include "base/log.h"
#include "proc.h"
#include "task.h"
#include "worker.h"
#include "registry/registry.h"
#include "rt.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

/* Freed small blocks are kept in LIFO lists by size class (glibc's usable chunk sizes: 24,
** 40, 56 … BC_MAX, so rounding a request up to its class wastes nothing) and
** handed out again without malloc: per function state (they move between HTTP threads, and
** glibc frees that cross thread arenas take locks) and per process-host worker (spawn and
** exit build and close a whole state; messages come and go). Every small block is allocated
** at its class's full size, cache or not, so any block of a class fits any request of that
** class wherever it is freed. A cache belongs to one thread at a time: its state's, or its
** worker's. */
#define BC_MIN 24
#define BC_STEP 16
#define BC_MAX 248
#define BC_CLASSES ((BC_MAX - BC_MIN) / BC_STEP + 1)
#define BC_KEEP 128                 /* blocks kept per class at most */

struct blockcache {
  void *head[BC_CLASSES];
  unsigned count[BC_CLASSES];
};

static int bc_class(size_t n) {
  if (!n || n > BC_MAX) return -1;
  return n <= BC_MIN ? 0 : (int)((n - BC_MIN + BC_STEP - 1) / BC_STEP);
}

static size_t bc_size(int k) { return BC_MIN + (size_t)k * BC_STEP; }

static void *bc_alloc(struct blockcache *bc, size_t n) {
  int k = bc_class(n);
  if (k < 0) return malloc(n);
  void *b = bc ? bc->head[k] : NULL;
  if (!b) return malloc(bc_size(k));
  bc->head[k] = *(void **)b;
  bc->count[k]--;
  return b;
}

static void bc_free(struct blockcache *bc, void *b, size_t n) {
  int k = bc_class(n);
  if (!bc || k < 0 || bc->count[k] >= BC_KEEP) { free(b); return; }
  *(void **)b = bc->head[k];
  bc->head[k] = b;
  bc->count[k]++;
}

static void *bc_realloc(struct blockcache *bc, void *b, size_t o, size_t n) {
  int ko = bc_class(o), kn = bc_class(n);
  if (ko < 0 && kn < 0) return realloc(b, n);       /* both large: plain realloc */
  if (ko >= 0 && ko == kn) return b;                /* same class: the block already fits */
  void *q = bc_alloc(bc, n);
  if (!q) return NULL;
  memcpy(q, b, o < n ? o : n);
  bc_free(bc, b, o);
  return q;
}

struct blockcache *luaenv_cache_new(void) {
#ifdef TASKHOST_SANITIZE
  return NULL;                      /* under ASan every block goes back to malloc */
#else
  return xcalloc(1, sizeof(struct blockcache));
#endif
}

void luaenv_cache_destroy(struct blockcache *bc) {
  if (!bc) return;
  for (int k = 0; k < BC_CLASSES; k++)
    for (void *b = bc->head[k], *next; b; b = next) { next = *(void **)b; free(b); }
  free(bc);
}

void luaenv_cache_free(struct proc *p) {
  luaenv_cache_destroy(p->cache);
  p->cache = NULL;
}

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct proc *p = ud;
  struct blockcache *bc = p->cache ? p->cache : p->worker ? p->worker->cache : NULL;
  size_t old = ptr ? osize : 0;
  size_t mem = atomic_load_explicit(&p->mem, memory_order_relaxed);   /* one writer: us */
  if (nsize == 0) {
    if (ptr) bc_free(bc, ptr, osize);
    atomic_store_explicit(&p->mem, mem - old, memory_order_relaxed);
    return NULL;
  }
  if (p->mem_limit && nsize > old && mem + nsize - old > p->mem_limit) return NULL;
  void *q = ptr ? bc_realloc(bc, ptr, osize, nsize) : bc_alloc(bc, nsize);
  if (q) atomic_store_explicit(&p->mem, mem + nsize - old, memory_order_relaxed);
  return q;
}

void luaenv_newtype(lua_State *L, const char *mt, const luaL_Reg *methods,
                    int (*tostring)(lua_State *)) {
  if (luaL_newmetatable(L, mt)) {
    lua_newtable(L);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    if (tostring) {
      lua_pushcfunction(L, tostring);
      lua_setfield(L, -2, "__tostring");
    }
  }
  lua_pop(L, 1);
}

void *luaenv_toself(lua_State *L, const char *mt) {
  void *u = lua_touserdata(L, 1);
  if (!u || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, mt);
  lua_pop(L, 1);
  return u;
}

void luaenv_setstrings(lua_State *L, const char *const *kv) {
  for (; kv[0]; kv += 2) {
    lua_pushstring(L, kv[1]);
    lua_setfield(L, -2, kv[0]);
  }
}

/* The built-in module `name` of the process's rt->libs, or NULL. */
static const struct luaenv_lib *find_lib(lua_State *L, const char *name) {
  const struct rt *rt = proc_of(L)->rt;
  for (const struct luaenv_lib *l = rt ? rt->libs : NULL; l && l->name; l++)
    if (strcmp(l->name, name) == 0) return l;
  return NULL;
}

/* Opens a built-in module once per state (cached in LOADED); sets the global for global ones. */
static void open_lib(lua_State *L, const struct luaenv_lib *l) {
  luaL_requiref(L, l->name, l->open, l->global);
}

/* Names luaopen_base defines: the base library is opened on the first use of any of them. */
static const char *const base_names[] = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
  "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "xpcall",
  "_VERSION", "warn",
};

static void install_base(lua_State *L);

static int is_base_name(const char *name) {
  for (size_t i = 0; i < countof(base_names); i++)
    if (strcmp(base_names[i], name) == 0) return 1;
  return 0;
}

/* __index of _G: opens a lazy global on first access. */
static int lazy_global(lua_State *L) {
  const char *name = lua_tostring(L, 2);
  if (!name) return 0;
  if (is_base_name(name)) {
    install_base(L);
    lua_rawget(L, 1);
    return 1;
  }
  const struct luaenv_lib *l = find_lib(L, name);
  if (!l || !l->global) return 0;
  open_lib(L, l);
  return 1;
}

/* __index of the string metatable until the string library is opened: opens the `string`
** module of rt->libs (which replaces this metatable with the real one) and answers the
** lookup; raises when the list has none. */
static int lazy_string_index(lua_State *L) {
  const struct luaenv_lib *l = find_lib(L, LUA_STRLIBNAME);
  if (!l) return luaL_error(L, "attempt to index a string value (no string library in this state)");
  luaL_requiref(L, LUA_STRLIBNAME, l->open, 1);
  lua_pushvalue(L, 2);
  lua_gettable(L, -2);
  return 1;
}

/* Loads a library.lua (or other Lua entry) reached through `imports:`. */
static int require_import(lua_State *L, struct proc *p, const char *alias, const char *id) {
  const struct code *c = codeset_get(p->code->set, id);
  if (!c) return luaL_error(L, "module '%s': imported entry '%s' is not a Lua entry", alias, id);
  if (code_load(L, c) != 0) return lua_error(L);
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushboolean(L, 1); }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, alias);
  lua_pop(L, 1);
  return 1;
}

static int l_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 2);
  struct proc *p = proc_of(L);
  const struct luaenv_lib *b = find_lib(L, name);
  if (b && (b->global || code_allows_module(p->code, name))) {
    open_lib(L, b);
    return 1;
  }
  const char *id = code_import(p->code, name);
  if (id) return require_import(L, p, name, id);
  if (b) return luaL_error(L, "module '%s' is not listed in the `modules` of %s", name, p->code->e->id);
  return luaL_error(L, "module '%s' not found (not a built-in module, not in the `imports` of %s)",
                    name, p->code->e->id);
}

/* print → the log at INFO, arguments tab-separated (wippy-compat.md §9.12). */
static int l_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  log_write(LOG_INFO, lua_tostring(L, -1), NULL);
  return 0;
}

static int l_unpack(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer i = luaL_optinteger(L, 2, 1);
  lua_Integer e = luaL_opt(L, luaL_checkinteger, 3, (lua_Integer)lua_rawlen(L, 1));
  if (i > e) return 0;
  if (e - i >= 1000000 || !lua_checkstack(L, (int)(e - i + 1)))
    return luaL_error(L, "too many results to unpack");
  for (lua_Integer k = i; k <= e; k++) lua_rawgeti(L, 1, k);
  return (int)(e - i + 1);
}

/* setmetatable without __gc: Lua runs finalizers with hooks off (lgc.c GCTM), so the
** watchdog could never stop a finalizer that loops, and a finalizer runs wherever a GC
** step happens (or in lua_close, on a worker, after the process ended). Otherwise as
** lbaselib.c's. */
static int l_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (t == LUA_TTABLE && (lua_pushliteral(L, "__gc"), lua_rawget(L, 2)) != LUA_TNIL)
    return luaL_error(L, "setmetatable: __gc metamethods are not supported (a finalizer cannot "
                         "be interrupted); use a <close> variable");
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

/* Our own globals; they override the base library's versions. */
static void set_host_globals(lua_State *L) {
  static const char *const removed[] = {"dofile", "loadfile", "load", "collectgarbage"};
  static const luaL_Reg funcs[] = {
    {"print", l_print}, {"require", l_require}, {"unpack", l_unpack},
    {"setmetatable", l_setmetatable}, {NULL, NULL},
  };
  lua_pushglobaltable(L);
  for (size_t i = 0; i < countof(removed); i++) {
    lua_pushnil(L);
    lua_setfield(L, -2, removed[i]);
  }
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}

static void install_base(lua_State *L) {
  luaopen_base(L);
  lua_pop(L, 1);
  set_host_globals(L);
}

/* The globals table gets only our functions and _G now; everything else is opened lazily
** by lazy_global. Strings get a metatable that opens the string library on first method use. */
static void sandbox(lua_State *L) {
  set_host_globals(L);
  lua_pushglobaltable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, LUA_GNAME);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lazy_global);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  lua_pushliteral(L, "");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lazy_string_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}

lua_State *luaenv_new(struct proc *p) {
  if (p->is_function) p->cache = luaenv_cache_new();
  lua_State *L = lua_newstate(counting_alloc, p);
  if (!L) return NULL;
  p->root.p = p;
  p->root.co = L;
  p->root.state = T_ROOT;
  *(struct task **)lua_getextraspace(L) = &p->root;
  sandbox(L);
  return L;
}
