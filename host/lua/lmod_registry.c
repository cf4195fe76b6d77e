/*
** lmod_registry.c — the `registry` module (wippy-compat.md §3.21, §6), its reads: get, find,
** parse_id, snapshot (entries/get/find/namespace/version/changes), snapshot_at,
** current_version, versions, history; Version objects (id/string/previous/next, and
** source/time/count). Entries are copies, as tables {id, kind, meta, data}. Change sets,
** apply_version and build_delta are in lmod_regchange.c.
** Reads take a reference to the runtime's current generation (rt_code); a snapshot keeps
** its generation for its life; versions and older generations come from the app's registry
** service (runtime/regsvc.h). Owner: the thread running the calling state.
*/
#include "lmod.h"
#include "lmod_registry.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "runtime/proc.h"
#include "runtime/regsvc.h"
#include "runtime/rt.h"
#include "value/errors.h"
#include "value/val.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct rt *rt_of(lua_State *L) { return proc_of(L)->rt; }

/* The current generation, with a reference (never NULL while the host runs). */
struct registry *lreg_current(lua_State *L) {
  struct codeset *cs = rt_code(rt_of(L));
  if (!cs) luaL_error(L, "registry: no generation loaded");
  struct registry *r = registry_ref(codeset_registry(cs));
  codeset_unref(cs);
  return r;
}

const struct reg_service *lreg_service(lua_State *L) { return rt_find_service(rt_of(L), "registry"); }

/* ---- entries ---------------------------------------------------------------------- */

void lreg_push_entry(lua_State *L, const struct reg_entry *e) {
  luaL_checkstack(L, 4, "registry");
  lua_createtable(L, 0, 4);
  lua_pushstring(L, e->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, e->kind);
  lua_setfield(L, -2, "kind");
  val_push_lua(L, e->meta);
  lua_setfield(L, -2, "meta");
  val_push_lua(L, e->data);
  lua_setfield(L, -2, "data");
}

/* ---- find filters (Wippy's finder): ".kind" ".name" ".ns" ".id" exact; "meta.f" (or bare
** "f") equal; "*f" contains (a string, or any string of a list), "^f" prefix, "$f" suffix,
** each with or without "meta."; f may be a dotted path into meta. ---------------------- */

enum fop { F_EQ, F_CONTAINS, F_PREFIX, F_SUFFIX };

static const char *strip_meta(const char *k) { return strncmp(k, "meta.", 5) == 0 ? k + 5 : k; }

static enum fop filter_op(const char **field) {
  static const char ops[] = {'*', '^', '$'};
  for (size_t i = 0; i < sizeof ops; i++)
    if ((*field)[0] == ops[i]) { *field = strip_meta(*field + 1); return (enum fop)(i + 1); }
  return F_EQ;
}

static const char *structural(const struct reg_entry *e, const char *f) {
  static const char *const names[] = {"kind", "name", "ns", "id"};
  const char *vals[] = {e->kind, e->name, e->ns, e->id};
  for (size_t i = 0; i < countof(names); i++)
    if (strcmp(f, names[i]) == 0) return vals[i];
  return NULL;
}

static int structural_known(const char *f) {
  static const struct reg_entry probe = {"", "", "", ""};
  return structural(&probe, f) != NULL;
}

/* Checks the filter at idx; NULL when usable, else why not. */
static const char *filter_problem(lua_State *L, int idx) {
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) { lua_pop(L, 2); return "filter keys must be strings"; }
    const char *k = lua_tostring(L, -2);
    int t = lua_type(L, -1);
    const char *why = NULL;
    if (k[0] == '.' && !structural_known(k + 1)) why = "unknown structural filter (.kind, .name, .ns or .id)";
    else if (k[0] == '.' && t != LUA_TSTRING) why = "a structural filter needs a string";
    else if (strip_meta(k)[0] == '~') why = "regular expression filters (~) are not supported";
    else if (strchr("*^$", strip_meta(k)[0]) && t != LUA_TSTRING) why = "a *, ^ or $ filter needs a string";
    else if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN && t != LUA_TTABLE) why = "filter values are strings, numbers, booleans or lists";
    if (why) { lua_pop(L, 2); return why; }
  }
  return NULL;
}

static int str_has(const struct val *v, const char *s, enum fop op) {
  if (!v || v->type != V_STR) return 0;
  size_t n = strlen(s);
  if (op == F_CONTAINS) return strstr(v->u.str.s, s) != NULL;
  if (n > v->u.str.len) return 0;
  return memcmp(v->u.str.s + (op == F_PREFIX ? 0 : v->u.str.len - n), s, n) == 0;
}

static int list_contains(const struct val *list, const char *s, int exact) {
  for (size_t i = 0; i < val_len(list); i++) {
    const struct val *it = val_at(list, i);
    if (it->type == V_STR && (exact ? strcmp(it->u.str.s, s) == 0 : strstr(it->u.str.s, s) != NULL)) return 1;
  }
  return 0;
}

/* Equality of the Lua value on top with a meta value; a list of strings asks that each of
** them is in the meta list (tags). */
static int equal(lua_State *L, const struct val *v) {
  if (!v) return 0;
  switch (lua_type(L, -1)) {
  case LUA_TSTRING: return v->type == V_STR && strcmp(v->u.str.s, lua_tostring(L, -1)) == 0;
  case LUA_TBOOLEAN: return v->type == V_BOOL && v->u.b == lua_toboolean(L, -1);
  case LUA_TNUMBER:
    if (v->type == V_INT && lua_isinteger(L, -1)) return v->u.i == lua_tointeger(L, -1);
    return (v->type == V_INT || v->type == V_NUM) && val_num(v, 0) == lua_tonumber(L, -1);
  default: break;
  }
  if (v->type != V_LIST) return 0;
  int ok = 1;
  for (lua_Integer i = 1; ok; i++) {
    int t = lua_rawgeti(L, -1, i);
    if (t == LUA_TSTRING) ok = list_contains(v, lua_tostring(L, -1), 1);
    lua_pop(L, 1);
    if (t != LUA_TSTRING) break;
  }
  return ok;
}

static int matches(lua_State *L, int idx, const struct reg_entry *e) {
  int ok = 1;
  for (lua_pushnil(L); ok && lua_next(L, idx); lua_pop(L, 1)) {
    const char *k = lua_tostring(L, -2);
    if (k[0] == '.') { ok = strcmp(structural(e, k + 1), lua_tostring(L, -1)) == 0; continue; }
    const char *field = strip_meta(k);
    enum fop op = filter_op(&field);
    const struct val *v = val_path(e->meta, field);
    if (op == F_EQ) ok = equal(L, v);
    else if (op == F_CONTAINS && v && v->type == V_LIST) ok = list_contains(v, lua_tostring(L, -1), 0);
    else ok = str_has(v, lua_tostring(L, -1), op);
  }
  if (!ok) lua_pop(L, 1);   /* the key lua_next left */
  return ok;
}

/* Pushes the entries of r that match the filter at fidx (0: all) or lie in namespace ns. */
static void push_list(lua_State *L, const struct registry *r, int fidx, const char *ns) {
  lua_newtable(L);
  lua_Integer k = 0;
  for (size_t i = 0; i < registry_count(r); i++) {
    const struct reg_entry *e = registry_at(r, i);
    if ((ns && strcmp(e->ns, ns) != 0) || (fidx && !matches(L, fidx, e))) continue;
    lreg_push_entry(L, e);
    lua_rawseti(L, -2, ++k);
  }
}

static int find_in(lua_State *L, const struct registry *r, int fidx) {
  luaL_checktype(L, fidx, LUA_TTABLE);
  const char *why = filter_problem(L, fidx);
  if (why) return errors_fail(L, EK_INVALID, "registry.find: %s", why);
  push_list(L, r, fidx, NULL);
  lua_pushnil(L);
  return 2;
}

static int get_in(lua_State *L, const struct registry *r, const char *id) {
  const struct reg_entry *e = registry_get(r, id);
  if (!e) return errors_fail(L, EK_NOT_FOUND, "registry: no entry %s", id);
  lreg_push_entry(L, e);
  lua_pushnil(L);
  return 2;
}

/* get/find/current_version hold the current generation in a snapshot userdata on the
** stack, so its reference is released by the collector even when they raise. */
static int l_get(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  struct registry *r = *lreg_push_snapshot(L, lreg_current(L));
  return get_in(L, r, id);
}

static int l_find(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  struct registry *r = *lreg_push_snapshot(L, lreg_current(L));
  return find_in(L, r, 1);
}

static int l_parse_id(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *colon = memchr(s, ':', n);
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, s, colon ? (size_t)(colon - s) : 0);
  lua_setfield(L, -2, "ns");
  lua_pushstring(L, colon ? colon + 1 : s);
  lua_setfield(L, -2, "name");
  return 1;
}

/* ---- versions ---------------------------------------------------------------------- */

static size_t kept(lua_State *L, struct reg_version *out) {
  const struct reg_service *s = lreg_service(L);
  return s ? s->versions(s->ud, out, REG_KEEP_VERSIONS) : 0;
}

void lreg_push_version(lua_State *L, const struct reg_version *v) {
  struct reg_version *u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = *v;
  luaL_setmetatable(L, VERSION_MT);
}

/* The kept version of generation r (or one made from r when it is no longer kept). */
static void push_version_of(lua_State *L, const struct registry *r) {
  struct reg_version vs[REG_KEEP_VERSIONS];
  size_t n = kept(L, vs);
  for (size_t i = 0; i < n; i++)
    if (vs[i].id == registry_version(r)) { lreg_push_version(L, &vs[i]); return; }
  lreg_push_version(L, &(struct reg_version){registry_version(r), 0, "unknown", registry_count(r)});
}

static int l_current_version(lua_State *L) {
  struct registry *r = *lreg_push_snapshot(L, lreg_current(L));
  push_version_of(L, r);
  lua_pushnil(L);
  return 2;
}

static int l_versions(lua_State *L) {
  struct reg_version vs[REG_KEEP_VERSIONS];
  size_t n = kept(L, vs);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lreg_push_version(L, &vs[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushnil(L);
  return 2;
}

static struct reg_version *check_version(lua_State *L) { return luaL_checkudata(L, 1, VERSION_MT); }

static int v_id(lua_State *L) { lua_pushinteger(L, (lua_Integer)check_version(L)->id); return 1; }
static int v_source(lua_State *L) { lua_pushstring(L, check_version(L)->source); return 1; }
static int v_time(lua_State *L) { lua_pushinteger(L, check_version(L)->time_ns / 1000000000); return 1; }
static int v_count(lua_State *L) { lua_pushinteger(L, (lua_Integer)check_version(L)->entries); return 1; }

static int v_string(lua_State *L) {
  const struct reg_version *v = check_version(L);
  char when[32] = "?";
  time_t t = (time_t)(v->time_ns / 1000000000);
  struct tm tm;
  if (v->time_ns && gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  lua_pushfstring(L, "version %I (%s, %s, %I entries)", (lua_Integer)v->id, v->source, when,
                  (lua_Integer)v->entries);
  return 1;
}

/* The kept version before (dir -1) or after (+1) this one, or nil. */
static int v_step(lua_State *L, int dir) {
  uint64_t id = check_version(L)->id;
  struct reg_version vs[REG_KEEP_VERSIONS];
  size_t n = kept(L, vs);
  for (size_t i = 0; i < n; i++) {
    if (vs[i].id != id) continue;
    if ((dir < 0 && i == 0) || (dir > 0 && i + 1 == n)) break;
    lreg_push_version(L, &vs[(long)i + dir]);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int v_previous(lua_State *L) { return v_step(L, -1); }
static int v_next(lua_State *L) { return v_step(L, 1); }

static int v_eq(lua_State *L) {
  lua_pushboolean(L, check_version(L)->id == ((struct reg_version *)luaL_checkudata(L, 2, VERSION_MT))->id);
  return 1;
}

/* ---- snapshots --------------------------------------------------------------------- */

static int snap_gc(lua_State *L) {
  struct registry **r = luaL_checkudata(L, 1, SNAP_MT);
  registry_unref(*r);
  *r = NULL;
  return 0;
}

struct registry **lreg_push_snapshot(lua_State *L, struct registry *r) {
  struct registry **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = r;
  luaL_setmetatable(L, SNAP_MT);
  return u;
}

struct registry *lreg_check_snap(lua_State *L, int idx) {
  struct registry **r = luaL_checkudata(L, idx, SNAP_MT);
  if (!*r) luaL_error(L, "registry: the snapshot is closed");
  return *r;
}

static int l_snapshot(lua_State *L) {
  lreg_push_snapshot(L, lreg_current(L));
  lua_pushnil(L);
  return 2;
}

static int s_entries(lua_State *L) { push_list(L, lreg_check_snap(L, 1), 0, NULL); lua_pushnil(L); return 2; }
static int s_get(lua_State *L) { return get_in(L, lreg_check_snap(L, 1), luaL_checkstring(L, 2)); }
static int s_find(lua_State *L) { return find_in(L, lreg_check_snap(L, 1), 2); }
static int s_namespace(lua_State *L) { push_list(L, lreg_check_snap(L, 1), 0, luaL_checkstring(L, 2)); return 1; }
static int s_version(lua_State *L) { push_version_of(L, lreg_check_snap(L, 1)); return 1; }

/* A snapshot of a kept generation (the last REG_KEEP_GENERATIONS), or nil, err. */
static int snapshot_at(lua_State *L, lua_Integer id) {
  if (id <= 0) return errors_fail(L, EK_INVALID, "registry: a version id is > 0");
  const struct reg_service *svc = lreg_service(L);
  struct registry *r = svc ? svc->generation(svc->ud, (uint64_t)id) : NULL;
  if (!r) return errors_fail(L, EK_NOT_FOUND, "registry: version %lld is not kept (the last %d generations are)",
                             (long long)id, REG_KEEP_GENERATIONS);
  lreg_push_snapshot(L, r);
  lua_pushnil(L);
  return 2;
}

static int l_snapshot_at(lua_State *L) { return snapshot_at(L, luaL_checkinteger(L, 1)); }

/* History: the versions and generations kept, as Wippy's history object (self is ignored). */
static int h_versions(lua_State *L) { return l_versions(L); }
static int h_snapshot_at(lua_State *L) {
  return snapshot_at(L, (lua_Integer)((struct reg_version *)luaL_checkudata(L, 2, VERSION_MT))->id);
}

static int h_get_version(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 2);
  struct reg_version vs[REG_KEEP_VERSIONS];
  size_t n = kept(L, vs);
  for (size_t i = 0; i < n; i++)
    if (vs[i].id == (uint64_t)id) { lreg_push_version(L, &vs[i]); lua_pushnil(L); return 2; }
  return errors_fail(L, EK_NOT_FOUND, "registry: version %lld is not kept", (long long)id);
}

static int l_history(lua_State *L) {
  static const luaL_Reg hist[] = {
    {"versions", h_versions}, {"get_version", h_get_version}, {"snapshot_at", h_snapshot_at}, {NULL, NULL},
  };
  luaL_newlib(L, hist);
  lua_pushnil(L);
  return 2;
}

/* ---- the module -------------------------------------------------------------------- */

void lreg_new_mt(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

int luaopen_registry(lua_State *L) {
  static const luaL_Reg snap[] = {
    {"entries", s_entries}, {"get", s_get}, {"find", s_find}, {"namespace", s_namespace},
    {"version", s_version}, {"changes", lreg_changes_new}, {NULL, NULL},
  };
  static const luaL_Reg version[] = {
    {"id", v_id}, {"string", v_string}, {"previous", v_previous}, {"next", v_next},
    {"source", v_source}, {"time", v_time}, {"count", v_count}, {NULL, NULL},
  };
  static const luaL_Reg funcs[] = {
    {"get", l_get}, {"find", l_find}, {"parse_id", l_parse_id}, {"snapshot", l_snapshot},
    {"current_version", l_current_version}, {"versions", l_versions}, {"snapshot_at", l_snapshot_at},
    {"history", l_history}, {"apply_version", lreg_apply_version}, {"build_delta", lreg_build_delta},
    {NULL, NULL},
  };
  lreg_new_mt(L, SNAP_MT, snap, snap_gc);
  lreg_open_changes(L);
  lreg_new_mt(L, VERSION_MT, version, NULL);
  luaL_getmetatable(L, VERSION_MT);
  lua_pushcfunction(L, v_string);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, v_eq);
  lua_setfield(L, -2, "__eq");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
