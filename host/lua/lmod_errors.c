/*
** lmod_errors.c — the `errors` Lua module (wippy-compat.md §3.4): errors.new, errors.wrap,
** errors.is, errors.call_stack and the kind constants (errors.NOT_FOUND == "NOT_FOUND").
** The error objects themselves are errors.c's; this file builds them only through
** errors_push_fields and errors_build, so it knows nothing of their layout. Errors made here
** record a traceback of the calling Lua code.
**
** Threads: everything is state-local and reentrant; no globals.
*/
#include "lmod.h"
#include "value/errors.h"

#include <lauxlib.h>
#include <lua.h>

static const char *const kinds[] = {
  EK_UNKNOWN, EK_INVALID, EK_NOT_FOUND, EK_ALREADY_EXISTS, EK_PERMISSION_DENIED, EK_TIMEOUT,
  EK_CANCELED, EK_UNAVAILABLE, EK_INTERNAL, EK_CONFLICT, EK_RATE_LIMITED,
};

/* Pushes the traceback of the Lua code that called the running errors.* function. */
static void push_stack(lua_State *L) { luaL_traceback(L, L, NULL, 1); }

/* errors.new({message=, kind=, retryable=, details=}): raises on malformed fields. Pushes
** the five fields errors_build takes, then builds. */
static void new_from_table(lua_State *L) {
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) luaL_error(L, "errors.new: field 'message' must be a string");
  lua_tostring(L, -1);
  if (lua_getfield(L, 1, "kind") == LUA_TNIL) { lua_pop(L, 1); lua_pushliteral(L, EK_UNKNOWN); }
  else if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "errors.new: field 'kind' must be a string");
  int rt = lua_getfield(L, 1, "retryable");
  if (rt != LUA_TNIL && rt != LUA_TBOOLEAN)
    luaL_error(L, "errors.new: field 'retryable' must be a boolean");
  int dt = lua_getfield(L, 1, "details");
  if (dt != LUA_TNIL && dt != LUA_TTABLE) luaL_error(L, "errors.new: field 'details' must be a table");
  push_stack(L);
  errors_build(L);
}

static int l_new(lua_State *L) {
  if (!lua_isnoneornil(L, 2))
    return luaL_error(L, "errors.new takes one argument (a message or a table); "
                         "errors.new(kind, message) is not supported, "
                         "use errors.new({kind = ..., message = ...})");
  if (errors_is(L, 1)) { lua_settop(L, 1); return 1; }
  if (lua_type(L, 1) == LUA_TTABLE) { new_from_table(L); return 1; }
  if (!lua_isstring(L, 1)) return luaL_typeerror(L, 1, "string or table");
  lua_settop(L, 1);
  lua_tostring(L, 1);
  lua_pushliteral(L, EK_UNKNOWN);
  lua_pushnil(L);                   /* retryable */
  lua_pushnil(L);                   /* details */
  push_stack(L);
  errors_build(L);
  return 1;
}

/* errors.wrap(err, msg): "msg: <inner message>", keeping kind, retryable, details and the
** inner stack (or recording one here when the inner error has none). wrap(nil, msg) → nil,
** like Go's errors.Wrap. A non-error `err` is first converted as by errors_from_value. */
static int l_wrap(lua_State *L) {
  const char *msg = luaL_checkstring(L, 2);
  if (lua_isnoneornil(L, 1)) { lua_pushnil(L); return 1; }
  errors_from_value(L, 1);
  int inner = lua_gettop(L);
  errors_push_fields(L, inner);
  lua_pushfstring(L, "%s: %s", msg, errors_message(L, inner));
  lua_replace(L, inner + 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    push_stack(L);
  }
  errors_build(L);
  return 1;
}

static int l_is(lua_State *L) {
  luaL_checkstring(L, 2);
  int yes = 0;
  if (errors_is(L, 1)) {
    errors_push_fields(L, 1);
    yes = lua_rawequal(L, -4, 2);   /* the kind */
  }
  lua_pushboolean(L, yes);
  return 1;
}

static int l_call_stack(lua_State *L) {
  if (!errors_is(L, 1)) { lua_pushnil(L); return 1; }
  errors_push_fields(L, 1);         /* the stack is the last of the five */
  return 1;
}

static const luaL_Reg funcs[] = {
  {"new", l_new}, {"wrap", l_wrap}, {"is", l_is}, {"call_stack", l_call_stack}, {NULL, NULL},
};

void errors_open(lua_State *L) {
  luaL_newlib(L, funcs);
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    lua_pushstring(L, kinds[i]);
    lua_setfield(L, -2, kinds[i]);
  }
  lua_setglobal(L, "errors");
}

int luaopen_errors(lua_State *L) {
  errors_open(L);
  lua_getglobal(L, "errors");
  return 1;
}
