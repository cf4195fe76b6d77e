/*
** lmod_env.c — the `env` module (wippy-compat.md §3.12): env.get(name) reads an
** `env.variable` entry (by public name or id: OS variable, then its default) or, when no
** such entry exists, the OS environment. Read-only. Owner: the calling process's worker.
*/
#include "registry/code.h"
#include "value/errors.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "registry/registry.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

static const struct reg_entry *find_variable(struct registry *r, const char *name) {
  for (size_t i = 0; i < registry_count(r); i++) {
    const struct reg_entry *e = registry_at(r, i);
    if (strcmp(e->kind, "env.variable") != 0) continue;
    const char *var = val_str(val_get(e->data, "variable"), NULL);
    if (strcmp(e->id, name) == 0 || (var && strcmp(var, name) == 0)) return e;
  }
  return NULL;
}

static int l_get(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct registry *r = codeset_registry(proc_of(L)->code->set);
  const struct reg_entry *e = find_variable(r, name);
  const char *var = e ? val_str(val_get(e->data, "variable"), name) : name;
  const char *v = getenv(var);
  if (!v && e) v = val_str(val_get(e->data, "default"), NULL);
  if (!v) return errors_fail(L, EK_NOT_FOUND, "environment variable '%s' is not set", name);
  lua_pushstring(L, v);
  return 1;
}

static int l_set(lua_State *L) {
  return errors_fail(L, EK_PERMISSION_DENIED, "the environment is read-only");
}

int luaopen_env(lua_State *L) {
  static const luaL_Reg funcs[] = {{"get", l_get}, {"set", l_set}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
