/*
** errors.c — error objects (wippy-compat.md §3.4); the `errors` Lua table that makes them from
** scripts is lmod_errors.c, built on errors_build and errors_push_fields.
**
** An error object is a full userdata (metatable ERROR_MT) whose C part holds only the
** retryable flag; the other fields live in its four user values:
**   1 message (string)   2 kind (string)   3 details (table or nil)   4 stack (string or nil)
** Creating one costs one userdata and no tables. Errors created from Lua (errors.new,
** errors.wrap) record a traceback; errors created from C (errors_push) do not.
** The metatable is registered on demand, so any state (one without the `errors` table, e.g.
** a seri_unpack target) can hold error objects.
**
** Threads: everything is state-local and reentrant; no globals.
*/
#include "errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

enum { UV_MESSAGE = 1, UV_KIND, UV_DETAILS, UV_STACK, UV_COUNT = UV_STACK };

struct errobj {
  signed char retryable;   /* 1 true, 0 false, -1 unset (nil) */
};

static void push_mt(lua_State *L);

/* ---- construction ------------------------------------------------------ */

/* Pops message, kind, details, stack (pushed in that order) and pushes the new error. */
static void make(lua_State *L, int retryable) {
  struct errobj *e = lua_newuserdatauv(L, sizeof *e, UV_COUNT);
  e->retryable = (signed char)retryable;
  push_mt(L);
  lua_setmetatable(L, -2);
  lua_insert(L, -1 - UV_COUNT);
  for (int n = UV_COUNT; n >= 1; n--) lua_setiuservalue(L, -1 - n, n);
}

/* Pushes the formatted message. Full printf rules (lua_pushvfstring knows only a few). */
static void push_vfmt(lua_State *L, const char *fmt, va_list ap) {
  char small[256];
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(small, sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0) { lua_pushliteral(L, "(bad error format)"); return; }
  if ((size_t)n < sizeof small) { lua_pushlstring(L, small, (size_t)n); return; }
  char *big = malloc((size_t)n + 1);
  if (!big) { lua_pushlstring(L, small, sizeof small - 1); return; }
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  lua_pushlstring(L, big, (size_t)n);
  free(big);
}

static void push_verr(lua_State *L, const char *kind, const char *fmt, va_list ap) {
  push_vfmt(L, fmt, ap);
  lua_pushstring(L, kind);
  lua_pushnil(L);
  lua_pushnil(L);
  make(L, -1);
}

int errors_push(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_verr(L, kind, fmt, ap);
  va_end(ap);
  return 1;
}

int errors_fail(lua_State *L, const char *kind, const char *fmt, ...) {
  lua_pushnil(L);
  va_list ap;
  va_start(ap, fmt);
  push_verr(L, kind, fmt, ap);
  va_end(ap);
  return 2;
}

void errors_from_value(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (errors_is(L, idx)) { lua_pushvalue(L, idx); return; }
  luaL_tolstring(L, idx, NULL);
  lua_pushliteral(L, EK_UNKNOWN);
  lua_pushnil(L);
  lua_pushnil(L);
  make(L, -1);
}

/* ---- C accessors ------------------------------------------------------- */

int errors_is(lua_State *L, int idx) { return luaL_testudata(L, idx, ERROR_MT) != NULL; }

/* The returned string is owned by the error object (a user value), so it stays valid as
** long as the object does. */
static const char *field_str(lua_State *L, int idx, int uv) {
  if (!errors_is(L, idx)) return NULL;
  lua_getiuservalue(L, idx, uv);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

const char *errors_message(lua_State *L, int idx) { return field_str(L, idx, UV_MESSAGE); }
const char *errors_kind(lua_State *L, int idx) { return field_str(L, idx, UV_KIND); }

static void push_retryable(lua_State *L, const struct errobj *e) {
  if (e->retryable < 0) lua_pushnil(L);
  else lua_pushboolean(L, e->retryable);
}

void errors_push_fields(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  const struct errobj *e = lua_touserdata(L, idx);
  lua_getiuservalue(L, idx, UV_MESSAGE);
  lua_getiuservalue(L, idx, UV_KIND);
  push_retryable(L, e);
  lua_getiuservalue(L, idx, UV_DETAILS);
  lua_getiuservalue(L, idx, UV_STACK);
}

static int is_opt(lua_State *L, int idx, int type) {
  int t = lua_type(L, idx);
  return t == LUA_TNIL || t == type;
}

int errors_build(lua_State *L) {
  int ok = lua_type(L, -5) == LUA_TSTRING && lua_type(L, -4) == LUA_TSTRING &&
           is_opt(L, -3, LUA_TBOOLEAN) && is_opt(L, -2, LUA_TTABLE) && is_opt(L, -1, LUA_TSTRING);
  if (!ok) { lua_pop(L, 5); return -1; }
  int retryable = lua_isnil(L, -3) ? -1 : lua_toboolean(L, -3);
  lua_remove(L, -3);
  make(L, retryable);
  return 0;
}

/* ---- methods ----------------------------------------------------------- */

static struct errobj *check(lua_State *L) { return luaL_checkudata(L, 1, ERROR_MT); }

static int get_uv(lua_State *L, int uv) {
  check(L);
  lua_getiuservalue(L, 1, uv);
  return 1;
}

static int l_message(lua_State *L) { return get_uv(L, UV_MESSAGE); }
static int l_kind(lua_State *L) { return get_uv(L, UV_KIND); }
static int l_details(lua_State *L) { return get_uv(L, UV_DETAILS); }
static int l_stack(lua_State *L) { return get_uv(L, UV_STACK); }

static int l_retryable(lua_State *L) {
  push_retryable(L, check(L));
  return 1;
}

static const luaL_Reg methods[] = {
  {"message", l_message}, {"kind", l_kind}, {"retryable", l_retryable},
  {"details", l_details}, {"stack", l_stack}, {NULL, NULL},
};

static void push_mt(lua_State *L) {
  if (luaL_getmetatable(L, ERROR_MT) == LUA_TTABLE) return;
  lua_pop(L, 1);
  luaL_newmetatable(L, ERROR_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_message);
  lua_setfield(L, -2, "__tostring");
}
