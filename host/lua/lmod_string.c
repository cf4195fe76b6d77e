/*
** lmod_string.c — the `string` library with a fast path for string.format.
**
** Lua's str_format formats every %d through snprintf, which costs more than the rest of a
** small HTTP handler's string work (callgrind: ~2.5k instructions for one
** "...%d..." call). The common formats — only %d/%i with integer arguments, %s with string
** arguments and %% — are assembled here directly; any other spec (flags, width,
** precision, other conversions), a non-integer number for %d, a non-string for %s, or a
** missing argument sends the whole call to the original string.format, so results are
** exactly Lua's. Its argument errors name the function as luaL_argerror would have named
** this one ('format', or the method form with the self argument not counted).
**
** find, match, gmatch and gsub are lpattern.c's (Lua's matcher, stoppable): every few
** thousand steps they ask task_stop_reason whether the code of this state's process must
** stop (a kill, a cancelled call, a passed deadline) and raise it as the watchdog's hook
** would (task_stop). Every state opened with luaenv_new has a process (HTTP threads,
** process-host workers, consumers, the terminal host all run such states).
**
** Threads: none of its own; runs on whichever thread owns the lua_State.
*/
#include "lmod.h"
#include "value/lpattern.h"
#include "runtime/task.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

/* 1 when fmt (with the arguments from index 2) takes the fast path. */
static int fast_ok(lua_State *L, const char *fmt, size_t len) {
  int arg = 1, top = lua_gettop(L);
  for (const char *p = fmt, *end = fmt + len; (p = memchr(p, '%', (size_t)(end - p))); p += 2) {
    if (p + 1 == end) return 0;
    switch (p[1]) {
    case '%': continue;
    case 'd': case 'i':
      if (++arg > top || !lua_isinteger(L, arg)) return 0;
      continue;
    case 's':
      if (++arg > top || lua_type(L, arg) != LUA_TSTRING) return 0;
      continue;
    default: return 0;
    }
  }
  return 1;
}

static void add_integer(luaL_Buffer *b, lua_Integer v) {
  char tmp[24];
  size_t n;
  const char *p = i64_dec((long long)v, tmp, &n);
  luaL_addlstring(b, p, n);
}

/* Raises the original's error as if the original had been called where this function was.
** Called from C, the original's own messages carry no position (its caller is this C
** function) and its argument errors cannot name the function ("to '?'", or a name found in
** package.loaded). So its messages are rebuilt the way luaL_argerror/luaL_error would
** have built them for this frame; errors from elsewhere (a __tostring that raised) pass
** through untouched. */
static int reraise(lua_State *L) {
  static const char *const own[] = {          /* lstrlib.c's str_format and luaL_tolstring */
      "invalid conversion ", "invalid format ", "specifier '%q' cannot have modifiers",
      "modifiers for format '%a'", "'__tostring' must return a string"};
  const char *msg = lua_tostring(L, -1);
  lua_Debug ar;
  int argn = 0, off = 0;
  if (!msg || !lua_getstack(L, 0, &ar) || !lua_getinfo(L, "n", &ar)) return lua_error(L);
  if (sscanf(msg, "bad argument #%d to '%*[^']'%n", &argn, &off) == 1 && off > 0) {
    if (ar.namewhat && strcmp(ar.namewhat, "method") == 0 && --argn == 0)
      return luaL_error(L, "calling '%s' on bad self%s", ar.name, msg + off);
    return luaL_error(L, "bad argument #%d to '%s'%s", argn, ar.name ? ar.name : "string.format", msg + off);
  }
  for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
    if (strncmp(msg, own[i], strlen(own[i])) == 0) return luaL_error(L, "%s", msg);
  return lua_error(L);
}

/* string.format; upvalue 1 is Lua's own. */
static int fast_format(lua_State *L) {
  size_t len;
  const char *fmt = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
  if (!fmt || !fast_ok(L, fmt, len)) {
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    if (lua_pcall(L, n, 1, 0) != LUA_OK) return reraise(L);
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int arg = 1;
  const char *p = fmt, *end = fmt + len, *pct;
  while ((pct = memchr(p, '%', (size_t)(end - p)))) {
    luaL_addlstring(&b, p, (size_t)(pct - p));
    switch (pct[1]) {
    case '%': luaL_addchar(&b, '%'); break;
    case 's': {
      size_t n;
      const char *s = lua_tolstring(L, ++arg, &n);
      luaL_addlstring(&b, s, n);
      break;
    }
    default: add_integer(&b, lua_tointeger(L, ++arg)); break;
    }
    p = pct + 2;
  }
  luaL_addlstring(&b, p, (size_t)(end - p));
  luaL_pushresult(&b);
  return 1;
}

/* The matcher's poll: a stop that the interrupt hook would raise is raised here. */
static void stop_if_due(lua_State *L) {
  const char *why = task_stop_reason(proc_of(L));
  if (why) task_stop(L, why);
}

static const struct lpattern_guard sandbox_guard = {stop_if_due, 0};

int luaopen_tstring(lua_State *L) {
  luaopen_string(L);
  lpattern_install(L, &sandbox_guard);
  lua_getfield(L, -1, "format");
  lua_pushcclosure(L, fast_format, 1);
  lua_setfield(L, -2, "format");
  return 1;
}
