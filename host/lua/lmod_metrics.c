/*
** lmod_metrics.c — the `metrics` module (wippy-compat.md §3.21): counter_inc, counter_add,
** gauge_set, gauge_inc, gauge_dec, histogram. Series go to the host's registry
** (base/metrics.h), found through the runtime as the "metrics" service, and are shown on the
** admin listener's GET /metrics. Each call returns true, or nil, err: INVALID for a bad name,
** label or value or a name used with another type, RATE_LIMITED for a new series over a
** cardinality budget. Wrong argument types raise.
** Owner: the thread running the calling state; the registry has its own lock.
*/
#include "base/metrics.h"
#include "lmod.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "runtime/task.h"
#include "value/errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <string.h>

typedef int (*update_fn)(struct metrics *, const char *, const struct mlabel *, size_t, double, char *, size_t);

/* Reads the labels table at idx (nil/none: no labels) into l. Strings point into the table
** (which the caller's stack keeps alive); numbers and booleans are written into nums. Raises
** on a non-string key or a value that is not a string, number or boolean; more than
** METRICS_MAX_LABELS entries returns -1 (counted while the table is walked). */
static int read_labels(lua_State *L, int idx, struct mlabel *l, char nums[][48], size_t *n) {
  *n = 0;
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "metrics: label names must be strings");
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
      luaL_error(L, "metrics: label %s: the value must be a string, number or boolean", lua_tostring(L, -2));
    if (*n == METRICS_MAX_LABELS) { lua_pop(L, 2); return -1; }
    size_t vlen;
    const char *v;
    if (t == LUA_TSTRING) v = lua_tolstring(L, -1, &vlen);
    else {
      lua_pushvalue(L, -1);                   /* converting a copy leaves the table alone */
      const char *s = t == LUA_TBOOLEAN ? (lua_toboolean(L, -1) ? "true" : "false") : lua_tolstring(L, -1, NULL);
      vlen = strlen(s) < 47 ? strlen(s) : 47;
      memcpy(nums[*n], s, vlen);
      nums[*n][vlen] = '\0';
      v = nums[*n];
      lua_pop(L, 1);
    }
    l[*n] = (struct mlabel){lua_tostring(L, -2), v, vlen};
    (*n)++;
    lua_pop(L, 1);
  }
  return 0;
}

/* name, value (number at vidx, or `dflt` when vidx is 0), labels at lidx. */
static int update(lua_State *L, update_fn fn, int vidx, double dflt, int lidx) {
  const char *name = luaL_checkstring(L, 1);
  double v = vidx ? luaL_checknumber(L, vidx) : dflt;
  struct metrics *m = rt_find_service(proc_of(L)->rt, "metrics");
  if (!m) return errors_fail(L, EK_UNAVAILABLE, "metrics: not available in this host");
  struct mlabel l[METRICS_MAX_LABELS];
  char nums[METRICS_MAX_LABELS][48];
  size_t n;
  if (read_labels(L, lidx, l, nums, &n) != 0)
    return errors_fail(L, EK_INVALID, "metrics %s: more than %d labels", name, METRICS_MAX_LABELS);
  char err[256];
  int rc = fn(m, name, l, n, v, err, sizeof err);
  if (rc == M_OK) { lua_pushboolean(L, 1); return 1; }
  return errors_fail(L, rc == M_LIMIT ? EK_RATE_LIMITED : EK_INVALID, "%s", err);
}

/* counter_inc(name [, labels]) */
static int l_counter_inc(lua_State *L) { return update(L, metrics_counter_add, 0, 1, 2); }
/* counter_add(name, value [, labels]) */
static int l_counter_add(lua_State *L) { return update(L, metrics_counter_add, 2, 0, 3); }
/* gauge_set(name, value [, labels]) */
static int l_gauge_set(lua_State *L) { return update(L, metrics_gauge_set, 2, 0, 3); }
/* gauge_inc/gauge_dec(name [, labels]): ±1 */
static int l_gauge_inc(lua_State *L) { return update(L, metrics_gauge_add, 0, 1, 2); }
static int l_gauge_dec(lua_State *L) { return update(L, metrics_gauge_add, 0, -1, 2); }
/* histogram(name, value [, labels]) */
static int l_histogram(lua_State *L) { return update(L, metrics_observe, 2, 0, 3); }

int luaopen_metrics(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"counter_inc", l_counter_inc}, {"counter_add", l_counter_add}, {"gauge_set", l_gauge_set},
    {"gauge_inc", l_gauge_inc},     {"gauge_dec", l_gauge_dec},     {"histogram", l_histogram},
    {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
