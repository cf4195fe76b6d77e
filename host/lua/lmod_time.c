/*
** lmod_time.c — the `time` module (wippy-compat.md §3.6): sleep, after, now, Duration and
** Time objects. Durations are Go-style strings, integer nanoseconds or Duration objects.
** Owner: the worker running the calling process.
*/
#include "runtime/chan.h"
#include "value/errors.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <time.h>

#define DURATION_MT "taskhost.duration"
#define TIME_MT "taskhost.time"

/* Reads a duration argument. Returns 0, or -1 with a message pushed (not raised). */
static int to_duration(lua_State *L, int idx, int64_t *ns) {
  int64_t *d = luaL_testudata(L, idx, DURATION_MT);
  if (d) { *ns = *d; return 0; }
  if (lua_type(L, idx) == LUA_TNUMBER) {
    *ns = lua_isinteger(L, idx) ? (int64_t)lua_tointeger(L, idx) : (int64_t)lua_tonumber(L, idx);
    return 0;
  }
  if (lua_type(L, idx) == LUA_TSTRING && duration_parse(lua_tostring(L, idx), ns) == 0) return 0;
  lua_pushfstring(L, "invalid duration: %s", luaL_tolstring(L, idx, NULL));
  lua_remove(L, -2);
  return -1;
}

static int64_t check_duration(lua_State *L, int idx) {
  int64_t ns;
  if (to_duration(L, idx, &ns) != 0) luaL_argerror(L, idx, lua_tostring(L, -1));
  return ns;
}

static void push_duration(lua_State *L, int64_t ns) {
  *(int64_t *)lua_newuserdatauv(L, sizeof(int64_t), 0) = ns;
  luaL_setmetatable(L, DURATION_MT);
}

static void push_time(lua_State *L, int64_t wall_ns) {
  *(int64_t *)lua_newuserdatauv(L, sizeof(int64_t), 0) = wall_ns;
  luaL_setmetatable(L, TIME_MT);
}

/* ---- sleep / after ------------------------------------------------------------------ */

static int l_sleep(lua_State *L) {
  int64_t ns = check_duration(L, 1);
  struct task *t = task_check_blocking(L, "time.sleep");
  if (ns <= 0) {                       /* yield to the other ready tasks, then go on */
    task_ready(t);
    return lua_yield(L, 0);
  }
  struct pending *pe = pending_new(t->p, PEND_SLEEP);
  pe->t = t;
  t->pend = pe;
  pending_arm_timer(t->p, pe, ns);
  task_park(t);
  return lua_yield(L, 0);
}

static int l_after(lua_State *L) {
  int64_t ns;
  if (to_duration(L, 1, &ns) != 0) return errors_fail(L, EK_INVALID, "%s", lua_tostring(L, -1));
  if (ns <= 0) return errors_fail(L, EK_INVALID, "time.after needs a positive duration");
  struct proc *p = proc_of(L);
  chan_new(L, 1);
  struct pending *pe = pending_new(p, PEND_AFTER);
  lua_pushvalue(L, -1);
  pe->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  pending_arm_timer(p, pe, ns);
  return 1;
}

/* ---- ticker ---------------------------------------------------------------------- */

#define TICKER_MT "taskhost.ticker"

struct uticker { uint64_t session; };

static int l_ticker(lua_State *L) {
  int64_t ns;
  if (to_duration(L, 1, &ns) != 0) return errors_fail(L, EK_INVALID, "%s", lua_tostring(L, -1));
  if (ns <= 0) return errors_fail(L, EK_INVALID, "time.ticker needs a positive duration");
  struct proc *p = proc_of(L);
  struct uticker *u = lua_newuserdatauv(L, sizeof *u, 1);
  luaL_setmetatable(L, TICKER_MT);
  chan_new(L, 1);
  struct pending *pe = pending_new(p, PEND_TICKER);
  pe->period = ns;
  lua_pushvalue(L, -1);
  pe->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setiuservalue(L, -2, 1);
  u->session = pe->session;
  pending_arm_timer(p, pe, ns);
  return 1;
}

static int ticker_channel(lua_State *L) {
  luaL_checkudata(L, 1, TICKER_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int ticker_stop(lua_State *L) {
  struct uticker *u = luaL_checkudata(L, 1, TICKER_MT);
  struct proc *p = proc_of(L);
  struct pending *pe = hmap_get(&p->sessions, u->session);
  if (pe) pending_free(p, pe);
  return 0;
}

static int l_now(lua_State *L) { push_time(L, clock_wall_ns()); return 1; }

static int l_parse_duration(lua_State *L) {
  int64_t ns;
  if (to_duration(L, 1, &ns) != 0) return errors_fail(L, EK_INVALID, "%s", lua_tostring(L, -1));
  push_duration(L, ns);
  return 1;
}

static int l_unix(lua_State *L) {
  push_time(L, (int64_t)luaL_checkinteger(L, 1) * NS_PER_S + (int64_t)luaL_optinteger(L, 2, 0));
  return 1;
}

/* ---- Duration ----------------------------------------------------------------------- */

static int64_t dur(lua_State *L) { return *(int64_t *)luaL_checkudata(L, 1, DURATION_MT); }

static int d_nanoseconds(lua_State *L) { lua_pushinteger(L, dur(L)); return 1; }
static int d_microseconds(lua_State *L) { lua_pushinteger(L, dur(L) / 1000); return 1; }
static int d_milliseconds(lua_State *L) { lua_pushinteger(L, dur(L) / NS_PER_MS); return 1; }
static int d_seconds(lua_State *L) { lua_pushnumber(L, (double)dur(L) / 1e9); return 1; }
static int d_minutes(lua_State *L) { lua_pushnumber(L, (double)dur(L) / 6e10); return 1; }
static int d_hours(lua_State *L) { lua_pushnumber(L, (double)dur(L) / 3.6e12); return 1; }

static int d_tostring(lua_State *L) {
  int64_t ns = dur(L);
  if (ns % NS_PER_S == 0) lua_pushfstring(L, "%Is", (lua_Integer)(ns / NS_PER_S));
  else if (ns % NS_PER_MS == 0) lua_pushfstring(L, "%Ims", (lua_Integer)(ns / NS_PER_MS));
  else lua_pushfstring(L, "%Ins", (lua_Integer)ns);
  return 1;
}

/* ---- Time ------------------------------------------------------------------------ */

static int64_t tm(lua_State *L, int idx) { return *(int64_t *)luaL_checkudata(L, idx, TIME_MT); }

static int t_unix(lua_State *L) { lua_pushinteger(L, tm(L, 1) / NS_PER_S); return 1; }
static int t_unix_nano(lua_State *L) { lua_pushinteger(L, tm(L, 1)); return 1; }
static int t_unix_milli(lua_State *L) { lua_pushinteger(L, tm(L, 1) / NS_PER_MS); return 1; }
static int t_sub(lua_State *L) { push_duration(L, tm(L, 1) - tm(L, 2)); return 1; }
static int t_add(lua_State *L) { push_time(L, tm(L, 1) + check_duration(L, 2)); return 1; }
static int t_before(lua_State *L) { lua_pushboolean(L, tm(L, 1) < tm(L, 2)); return 1; }
static int t_after(lua_State *L) { lua_pushboolean(L, tm(L, 1) > tm(L, 2)); return 1; }
static int t_equal(lua_State *L) { lua_pushboolean(L, tm(L, 1) == tm(L, 2)); return 1; }

static int t_rfc3339(lua_State *L) {
  int64_t ns = tm(L, 1);
  time_t sec = (time_t)(ns / NS_PER_S);
  struct tm g;
  gmtime_r(&sec, &g);
  char s[64];
  strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%SZ", &g);
  lua_pushstring(L, s);
  return 1;
}


int luaopen_time(lua_State *L) {
  static const luaL_Reg dmethods[] = {
    {"nanoseconds", d_nanoseconds}, {"microseconds", d_microseconds},
    {"milliseconds", d_milliseconds}, {"seconds", d_seconds}, {"minutes", d_minutes},
    {"hours", d_hours}, {NULL, NULL},
  };
  static const luaL_Reg tmethods[] = {
    {"unix", t_unix}, {"unix_nano", t_unix_nano}, {"unix_milli", t_unix_milli}, {"sub", t_sub},
    {"add", t_add}, {"before", t_before}, {"after", t_after}, {"equal", t_equal},
    {"format_rfc3339", t_rfc3339}, {NULL, NULL},
  };
  static const luaL_Reg funcs[] = {
    {"sleep", l_sleep}, {"after", l_after}, {"now", l_now},
    {"parse_duration", l_parse_duration}, {"unix", l_unix}, {"ticker", l_ticker}, {NULL, NULL},
  };
  static const luaL_Reg tkmethods[] = {
    {"channel", ticker_channel}, {"response", ticker_channel}, {"stop", ticker_stop}, {NULL, NULL},
  };
  static const struct { const char *name; lua_Integer ns; } units[] = {
    {"NANOSECOND", 1}, {"MICROSECOND", 1000}, {"MILLISECOND", NS_PER_MS},
    {"SECOND", NS_PER_S}, {"MINUTE", 60 * NS_PER_S}, {"HOUR", 3600 * NS_PER_S},
  };
  luaenv_newtype(L, DURATION_MT, dmethods, d_tostring);
  luaenv_newtype(L, TIME_MT, tmethods, t_rfc3339);
  luaenv_newtype(L, TICKER_MT, tkmethods, NULL);
  chan_open_metatables(L);
  luaL_newlib(L, funcs);
  for (size_t i = 0; i < countof(units); i++) {
    lua_pushinteger(L, units[i].ns);
    lua_setfield(L, -2, units[i].name);
  }
  return 1;
}
