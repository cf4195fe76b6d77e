/*
** lmod_logger.c — the `logger` module (wippy-compat.md §3.9): a userdata with
** :debug/:info/:warn/:error(msg [, fields]), :with(fields) and :named(name). Records go to
** the host log (stderr) with the fields as JSON plus the caller's pid.
** Owner: the worker running the calling process.
*/
#include "value/errors.h"
#include "value/json.h"
#include "base/log.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "runtime/proc.h"
#include "runtime/task.h"

#include <lauxlib.h>
#include <lua.h>

#define LOGGER_MT "taskhost.logger"

/* A logger's user value holds {fields = table|nil, name = string|nil}. */

static void copy_fields(lua_State *L, int from, int to) {
  lua_pushnil(L);
  while (lua_next(L, from)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, to);
  }
}

/* Builds the record's field table: logger fields, call fields, pid, logger name. */
static int build_fields(lua_State *L) {
  lua_newtable(L);
  int t = lua_gettop(L);
  lua_getiuservalue(L, 1, 1);
  if (lua_getfield(L, -1, "fields") == LUA_TTABLE) copy_fields(L, lua_gettop(L), t);
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "name") == LUA_TSTRING) lua_setfield(L, t, "logger");
  else lua_pop(L, 1);
  lua_pop(L, 1);
  if (lua_istable(L, 3)) copy_fields(L, 3, t);
  lua_pushstring(L, proc_of(L)->pidstr);
  lua_setfield(L, t, "pid");
  return t;
}

static int emit(lua_State *L, enum log_level lv) {
  if (!lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    return luaL_error(L, "logger methods must be called with ':' (logger:info(msg, fields))");
  lua_pop(L, 1);
  if (!log_enabled(lv)) return 0;
  const char *msg = luaL_tolstring(L, 2, NULL);
  lua_replace(L, 2);
  lua_settop(L, 3);
  int t = build_fields(L);
  struct buf b;
  buf_init(&b);
  char err[128];
  if (json_encode(L, t, &b, err, sizeof err) != 0) {
    buf_reset(&b);
    buf_printf(&b, "{\"log_error\":\"fields not encodable\"}");
  }
  struct proc *p = proc_of(L);
  log_write_from(lv, msg, b.data, p->pidstr, p->code ? p->code->e->id : NULL);
  buf_free(&b);
  return 0;
}

static int l_debug(lua_State *L) { return emit(L, LOG_DEBUG); }
static int l_info(lua_State *L) { return emit(L, LOG_INFO); }
static int l_warn(lua_State *L) { return emit(L, LOG_WARN); }
static int l_error(lua_State *L) { return emit(L, LOG_ERROR); }

static void new_logger(lua_State *L, int fields_idx, int name_idx) {
  lua_newuserdatauv(L, 0, 1);
  lua_createtable(L, 0, 2);
  if (fields_idx) { lua_pushvalue(L, fields_idx); lua_setfield(L, -2, "fields"); }
  if (name_idx) { lua_pushvalue(L, name_idx); lua_setfield(L, -2, "name"); }
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, LOGGER_MT);
}

static int l_with(lua_State *L) {
  luaenv_toself(L, LOGGER_MT);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_newtable(L);
  int t = lua_gettop(L);
  lua_getiuservalue(L, 1, 1);
  if (lua_getfield(L, -1, "fields") == LUA_TTABLE) copy_fields(L, lua_gettop(L), t);
  lua_pop(L, 1);
  lua_getfield(L, -1, "name");
  copy_fields(L, 2, t);
  new_logger(L, t, lua_isnil(L, -1) ? 0 : lua_gettop(L));
  return 1;
}

static int l_named(lua_State *L) {
  luaenv_toself(L, LOGGER_MT);
  luaL_checkstring(L, 2);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "fields");
  new_logger(L, lua_isnil(L, -1) ? 0 : lua_gettop(L), 2);
  return 1;
}

int luaopen_logger(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"debug", l_debug}, {"info", l_info}, {"warn", l_warn}, {"error", l_error},
    {"with", l_with}, {"named", l_named}, {NULL, NULL},
  };
  luaenv_newtype(L, LOGGER_MT, methods, NULL);
  new_logger(L, 0, 0);
  return 1;
}
