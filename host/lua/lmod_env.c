/*
** lmod_env.c — the `env` module (wippy-compat.md §3.12). A name resolves to an
** `env.variable` entry (its `variable` public name, else its id); its value comes from its
** `storage` (none = the OS environment) under its storage key (`variable`, else the entry's
** name), else its `default`. A name no entry has reads the OS environment directly.
**   env.storage.os      getenv; read-only (setenv is not safe while other threads getenv)
**   env.storage.file    the .env file as read at load (data.values); read-only
**   env.storage.static  data.values; read-only
**   env.storage.memory  a host-wide map (below), then data.values; writable
**   env.storage.router  its `storages` in order: a read takes the first that has a value; a
**                       write goes to the first writable one (routers nest, ROUTER_DEPTH deep)
** Thread ownership: functions run on the calling process's worker and read its generation;
** the memory map is the host's rt->env_memory (a strmap with its own lock) keyed
** "storage id\x1fkey", kept for the host's life, so a hot reload keeps what env.set wrote for
** every storage and key that still exist (a removed variable's value stays, unreachable, and
** is seen again if an entry with that storage and key comes back).
*/
#include "base/strmap.h"
#include "base/util.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "value/errors.h"
#include "lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


struct var {
  const struct reg_entry *e;    /* the env.variable entry, NULL: a bare OS name */
  const struct reg_entry *st;   /* its storage entry, NULL: the OS environment */
  const char *key;              /* the name inside the storage */
  struct strmap *mem;           /* the host's memory storages (rt->env_memory) */
  const struct codeset *set;    /* the generation the entries are from (routers look theirs up) */
  int depth;                    /* routers passed through */
};

static const char *var_public(const struct reg_entry *e) {
  return val_str(val_get(e->data, "variable"), e->id);
}

static struct var var_of(const struct codeset *cs, const struct reg_entry *e) {
  const char *sid = val_str(val_get(e->data, "storage"), NULL);
  struct registry *r = codeset_registry(cs);
  return (struct var){e, sid ? registry_get(r, sid) : NULL, val_str(val_get(e->data, "variable"), e->name), NULL, cs, 0};
}

static int find_var(const struct codeset *cs, const char *name, struct var *v) {
  struct registry *r = codeset_registry(cs);
  for (size_t i = 0; i < registry_count(r); i++) {
    const struct reg_entry *e = registry_at(r, i);
    if (strcmp(e->kind, "env.variable") != 0) continue;
    const char *pub = val_str(val_get(e->data, "variable"), NULL);
    if (strcmp(e->id, name) != 0 && !(pub && strcmp(pub, name) == 0)) continue;
    *v = var_of(cs, e);
    return 1;
  }
  *v = (struct var){NULL, NULL, name, NULL, cs, 0};
  return 0;
}


static char *mem_key(const struct reg_entry *st, const char *key) {
  size_t n = strlen(st->id) + strlen(key) + 2;
  char *k = xmalloc(n);
  snprintf(k, n, "%s\x1f%s", st->id, key);
  return k;
}

static char *get_os(const struct var *v) {
  const char *s = getenv(v->key);
  return s ? xstrdup(s) : NULL;
}

static char *get_values(const struct var *v) {
  return val_scalar_text(val_get(val_get(v->st->data, "values"), v->key));
}

static char *get_memory(const struct var *v) {
  char *k = mem_key(v->st, v->key);
  char *s = strmap_get(v->mem, k);
  free(k);
  return s ? s : get_values(v);
}

static char *get_none(const struct var *v) { (void)v; return NULL; }
static char *get_router(const struct var *v);

static const struct backend {
  const char *kind;
  char *(*get)(const struct var *v);
  int writable;
} backends[] = {
  {"env.storage.os", get_os, 0},
  {"env.storage.file", get_values, 0},
  {"env.storage.static", get_values, 0},
  {"env.storage.memory", get_memory, 1},
  {"env.storage.router", get_router, 0},   /* writable through its members (write_target) */
  {NULL, get_none, 0},
};

static const struct backend *backend_of(const struct var *v) {
  const char *kind = v->st ? v->st->kind : "env.storage.os";
  const struct backend *b = backends;
  while (b->kind && strcmp(b->kind, kind) != 0) b++;
  return b;
}

#define ROUTER_DEPTH 8      /* routers inside routers; deeper (or a cycle) reads nothing */

/* A router's i-th storage as the storage of a copy of v (NULL st: not an entry). */
static struct var member(const struct var *v, size_t i) {
  const char *id = val_str(val_at(val_get(v->st->data, "storages"), i), "");
  struct var m = *v;
  m.st = registry_get(codeset_registry(v->set), id);
  m.depth = v->depth + 1;
  return m;
}

static char *get_router(const struct var *v) {
  size_t n = val_len(val_get(v->st->data, "storages"));
  for (size_t i = 0; i < n && v->depth < ROUTER_DEPTH; i++) {
    struct var m = member(v, i);
    if (!m.st) continue;
    char *s = backend_of(&m)->get(&m);
    if (s) return s;
  }
  return NULL;
}

/* The storage a write of v goes to: its own when writable, a router's first writable
** member (depth first), else NULL. */
static const struct reg_entry *write_target(const struct var *v) {
  if (!v->st) return NULL;
  if (backend_of(v)->writable) return v->st;
  if (strcmp(v->st->kind, "env.storage.router") != 0 || v->depth >= ROUTER_DEPTH) return NULL;
  size_t n = val_len(val_get(v->st->data, "storages"));
  for (size_t i = 0; i < n; i++) {
    struct var m = member(v, i);
    const struct reg_entry *t = m.st ? write_target(&m) : NULL;
    if (t) return t;
  }
  return NULL;
}

/* The variable's value (malloc'd) or NULL: its storage, then its default. */
static char *var_value(const struct var *v) {
  char *s = backend_of(v)->get(v);
  if (!s && v->e) s = val_scalar_text(val_get(v->e->data, "default"));
  return s;
}

static const struct codeset *set_of(lua_State *L) { return proc_of(L)->code->set; }

static int push_owned(lua_State *L, char *s) {
  lua_pushstring(L, s);
  free(s);
  return 1;
}

static int l_get(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct var v;
  find_var(set_of(L), name, &v);
  v.mem = proc_of(L)->rt->env_memory;
  char *s = var_value(&v);
  if (!s) return errors_fail(L, EK_NOT_FOUND, "environment variable '%s' is not set", name);
  return push_owned(L, s);
}

static int l_set(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  size_t len;
  const char *value = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, strlen(value) == len, 2, "contains a NUL byte");
  struct var v;
  if (!find_var(set_of(L), name, &v))
    return errors_fail(L, EK_NOT_FOUND, "no env.variable entry is named '%s'", name);
  if (val_bool(val_get(v.e->data, "readonly"), 0) || val_bool(val_get(v.e->data, "read_only"), 0))
    return errors_fail(L, EK_PERMISSION_DENIED, "environment variable '%s' is read-only", name);
  const struct reg_entry *target = write_target(&v);
  if (!target)
    return errors_fail(L, EK_PERMISSION_DENIED, "environment variable '%s': its storage %s is read-only",
                       name, v.st ? v.st->kind : "env.storage.os");
  char *k = mem_key(target, v.key);
  strmap_set(proc_of(L)->rt->env_memory, k, value);
  free(k);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_get_all(lua_State *L) {
  const struct codeset *cs = set_of(L);
  struct registry *r = codeset_registry(cs);
  lua_newtable(L);
  for (size_t i = 0; i < registry_count(r); i++) {
    const struct reg_entry *e = registry_at(r, i);
    if (strcmp(e->kind, "env.variable") != 0) continue;
    struct var v = var_of(cs, e);
    v.mem = proc_of(L)->rt->env_memory;
    char *s = var_value(&v);
    if (!s) continue;
    lua_pushstring(L, s);
    free(s);
    lua_setfield(L, -2, var_public(e));
  }
  return 1;
}

int luaopen_env(lua_State *L) {
  static const luaL_Reg funcs[] = {{"get", l_get}, {"set", l_set}, {"get_all", l_get_all}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
