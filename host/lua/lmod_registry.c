/*
** lmod_registry.c — the `registry` module (wippy-compat.md §3.21, §6): get, find, parse_id,
** snapshot (entries/get/find/namespace/version/changes), change sets (create/update/delete/
** ops/apply), current_version, versions; Version objects (id/string/previous/next, and
** source/time/count). Entries are copies, as tables {id, kind, meta, data}.
** Reads take a reference to the runtime's current generation (rt_code); a snapshot keeps
** its generation for its life. changes:apply() hands a copy of its ops to the registry
** service (runtime/regsvc.h), which applies them on the main thread as a hot reload, and
** parks the calling task on a PEND_IO session until the MK_IO completion comes back.
** Owner: the thread running the calling state; done() runs on the main thread.
*/
#include "lmod.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "runtime/regsvc.h"
#include "runtime/rt.h"
#include "runtime/task.h"
#include "value/errors.h"
#include "value/val.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNAP_MT "taskhost.registry.snapshot"
#define CHANGES_MT "taskhost.registry.changes"
#define VERSION_MT "taskhost.registry.version"

static struct rt *rt_of(lua_State *L) { return proc_of(L)->rt; }

/* The current generation, with a reference (never NULL while the host runs). */
static struct registry *current(lua_State *L) {
  struct codeset *cs = rt_code(rt_of(L));
  if (!cs) luaL_error(L, "registry: no generation loaded");
  struct registry *r = registry_ref(codeset_registry(cs));
  codeset_unref(cs);
  return r;
}

static const struct reg_service *service(lua_State *L) { return rt_find_service(rt_of(L), "registry"); }

/* ---- entries ---------------------------------------------------------------------- */

static void push_entry(lua_State *L, const struct reg_entry *e) {
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
    push_entry(L, e);
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
  push_entry(L, e);
  lua_pushnil(L);
  return 2;
}

/* get/find/current_version hold the current generation in a snapshot userdata on the
** stack, so its reference is released by the collector even when they raise. */
static struct registry **push_snapshot(lua_State *L, struct registry *r);

static int l_get(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  struct registry *r = *push_snapshot(L, current(L));
  return get_in(L, r, id);
}

static int l_find(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  struct registry *r = *push_snapshot(L, current(L));
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
  const struct reg_service *s = service(L);
  return s ? s->versions(s->ud, out, REG_KEEP_VERSIONS) : 0;
}

static void push_version(lua_State *L, const struct reg_version *v) {
  struct reg_version *u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = *v;
  luaL_setmetatable(L, VERSION_MT);
}

/* The kept version of generation r (or one made from r when it is no longer kept). */
static void push_version_of(lua_State *L, const struct registry *r) {
  struct reg_version vs[REG_KEEP_VERSIONS];
  size_t n = kept(L, vs);
  for (size_t i = 0; i < n; i++)
    if (vs[i].id == registry_version(r)) { push_version(L, &vs[i]); return; }
  push_version(L, &(struct reg_version){registry_version(r), 0, "unknown", registry_count(r)});
}

static int l_current_version(lua_State *L) {
  struct registry *r = *push_snapshot(L, current(L));
  push_version_of(L, r);
  lua_pushnil(L);
  return 2;
}

static int l_versions(lua_State *L) {
  struct reg_version vs[REG_KEEP_VERSIONS];
  size_t n = kept(L, vs);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    push_version(L, &vs[i]);
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
    push_version(L, &vs[(long)i + dir]);
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

static struct registry **push_snapshot(lua_State *L, struct registry *r) {
  struct registry **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = r;
  luaL_setmetatable(L, SNAP_MT);
  return u;
}

static struct registry *check_snap(lua_State *L) {
  struct registry **r = luaL_checkudata(L, 1, SNAP_MT);
  if (!*r) luaL_error(L, "registry: the snapshot is closed");
  return *r;
}

static int l_snapshot(lua_State *L) {
  push_snapshot(L, current(L));
  lua_pushnil(L);
  return 2;
}

static int s_entries(lua_State *L) { push_list(L, check_snap(L), 0, NULL); lua_pushnil(L); return 2; }
static int s_get(lua_State *L) { return get_in(L, check_snap(L), luaL_checkstring(L, 2)); }
static int s_find(lua_State *L) { return find_in(L, check_snap(L), 2); }
static int s_namespace(lua_State *L) { push_list(L, check_snap(L), 0, luaL_checkstring(L, 2)); return 1; }
static int s_version(lua_State *L) { push_version_of(L, check_snap(L)); return 1; }

/* ---- change sets ------------------------------------------------------------------- */

struct changes {
  struct reg_op *ops;
  size_t n, cap;
  struct val_limits lim;   /* what its entries may still take, all told */
};

static void ops_free(struct reg_op *ops, size_t n) {
  for (size_t i = 0; i < n; i++) reg_op_free(&ops[i]);
  free(ops);
}

static int ch_gc(lua_State *L) {
  struct changes *c = luaL_checkudata(L, 1, CHANGES_MT);
  ops_free(c->ops, c->n);
  *c = (struct changes){0};
  return 0;
}

static int s_changes(lua_State *L) {
  check_snap(L);
  struct changes *c = lua_newuserdatauv(L, sizeof *c, 0);
  *c = (struct changes){0};
  registry_change_limits(&c->lim);
  luaL_setmetatable(L, CHANGES_MT);
  return 1;
}

/* The id at idx: "ns:name" or {ns=, name=}; malloc'd, or NULL with err. */
static char *op_id(lua_State *L, int idx, char *err, size_t errlen) {
  char *id = NULL;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    id = xstrdup(lua_tostring(L, idx));
  } else if (lua_type(L, idx) == LUA_TTABLE) {
    lua_getfield(L, idx, "ns");
    lua_getfield(L, idx, "name");
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
      struct buf b;
      buf_init(&b);
      buf_printf(&b, "%s:%s", lua_tostring(L, -2), lua_tostring(L, -1));
      id = buf_steal(&b);
    }
    lua_pop(L, 2);
  }
  if (!id) snprintf(err, errlen, "an entry id is a string \"ns:name\" or a table {ns=, name=}");
  else if (reg_id_check(id, err, errlen) != 0) { free(id); id = NULL; }
  return id;
}

/* Where the Lua code that called us is. */
static void caller(lua_State *L, struct reg_op *o) {
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
    o->file = xstrdup(ar.short_src);
    o->line = ar.currentline;
  }
}

/* Fills o's kind, meta and data from the entry table at 2. 0, or -1 with err. */
static int op_body(lua_State *L, struct changes *c, struct reg_op *o, char *err, size_t errlen) {
  static const char *const parts[] = {"meta", "data"};
  lua_getfield(L, 2, "kind");
  if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0) o->kind = xstrdup(lua_tostring(L, -1));
  lua_pop(L, 1);
  if (!o->kind) { snprintf(err, errlen, "the entry needs a kind (a non-empty string)"); return -1; }
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, 2, parts[i]);
    int t = lua_type(L, -1);
    struct val *v = t == LUA_TNIL ? NULL : t != LUA_TTABLE ? NULL
                  : val_from_lua_limited(L, -1, NULL, &c->lim, err, errlen);
    lua_pop(L, 1);
    if (t != LUA_TNIL && t != LUA_TTABLE) { snprintf(err, errlen, "the entry's %s must be a table", parts[i]); return -1; }
    if (t == LUA_TTABLE && !v) return -1;
    if (v && v->type == V_LIST && val_len(v) == 0) v->type = V_MAP;   /* {} reads as a list */
    if (v && v->type != V_MAP) { val_free(v); snprintf(err, errlen, "the entry's %s must be a map", parts[i]); return -1; }
    if (i == 0) o->meta = v;
    else o->data = v;
  }
  return 0;
}

static int add_op(lua_State *L, enum reg_op_kind k) {
  struct changes *c = luaL_checkudata(L, 1, CHANGES_MT);
  if (k != REG_OP_DELETE) luaL_checktype(L, 2, LUA_TTABLE);
  else luaL_checkany(L, 2);
  char err[256];
  if (c->n >= REG_MAX_OPS)
    return errors_fail(L, EK_INVALID, "registry: a change set holds at most %d operations", REG_MAX_OPS);
  struct reg_op o = {k};
  if (k != REG_OP_DELETE) lua_getfield(L, 2, "id");
  else lua_pushvalue(L, 2);
  o.id = op_id(L, -1, err, sizeof err);
  lua_pop(L, 1);
  if (!o.id || (k != REG_OP_DELETE && op_body(L, c, &o, err, sizeof err) != 0)) {
    reg_op_free(&o);
    return errors_fail(L, EK_INVALID, "changes:%s: %s", reg_op_name(k), err);
  }
  caller(L, &o);
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 8;
    c->ops = xrealloc(c->ops, c->cap * sizeof *c->ops);
  }
  c->ops[c->n++] = o;
  lua_settop(L, 1);
  return 1;
}

static int c_create(lua_State *L) { return add_op(L, REG_OP_CREATE); }
static int c_update(lua_State *L) { return add_op(L, REG_OP_UPDATE); }
static int c_delete(lua_State *L) { return add_op(L, REG_OP_DELETE); }

static int c_ops(lua_State *L) {
  struct changes *c = luaL_checkudata(L, 1, CHANGES_MT);
  lua_createtable(L, (int)c->n, 0);
  for (size_t i = 0; i < c->n; i++) {
    const struct reg_op *o = &c->ops[i];
    luaL_checkstack(L, 6, "registry");
    lua_createtable(L, 0, 2);
    lua_pushfstring(L, "entry.%s", reg_op_name(o->op));
    lua_setfield(L, -2, "kind");
    lua_createtable(L, 0, 4);
    lua_pushstring(L, o->id);
    lua_setfield(L, -2, "id");
    if (o->op != REG_OP_DELETE) {
      lua_pushstring(L, o->kind);
      lua_setfield(L, -2, "kind");
      if (o->meta) val_push_lua(L, o->meta); else lua_newtable(L);
      lua_setfield(L, -2, "meta");
      if (o->data) val_push_lua(L, o->data); else lua_newtable(L);
      lua_setfield(L, -2, "data");
    }
    lua_setfield(L, -2, "entry");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* ---- apply: the hand-off to the main thread (runtime/regsvc.h) ---- */

static void req_free(struct reg_change_req *q) {
  ops_free(q->ops, q->nops);
  free(q->error);
  free(q);
}

static int req_push(lua_State *co, void *req) {
  struct reg_change_req *q = req;
  luaL_checkstack(co, 4, "registry");
  int n = 2;
  if (q->ok) {
    push_version(co, &q->version);
    lua_pushnil(co);
  } else {
    n = errors_fail(co, q->kind ? q->kind : EK_INTERNAL, "%s", q->error ? q->error : "refused");
  }
  req_free(q);
  return n;
}

static void req_drop(void *req) { req_free(req); }

static void req_cancel(void *req) {
  struct reg_change_req *q = req;
  int want = REQ_WAITING;
  atomic_compare_exchange_strong(&q->claim, &want, REQ_GONE);   /* lost: the message owns q */
}

static const struct io_ops apply_ops = {req_push, req_drop, req_cancel, NULL, NULL};

static void req_done(struct reg_change_req *q) {
  int want = REQ_WAITING;
  if (atomic_compare_exchange_strong(&q->claim, &want, REQ_POSTED))
    proc_post(q->ud, q->pid, msg_new_io(q->session, &apply_ops, q), NULL);
  else
    req_free(q);                              /* GONE: the waiter left */
}

static int c_apply(lua_State *L) {
  struct changes *c = luaL_checkudata(L, 1, CHANGES_MT);
  if (c->n == 0) return errors_fail(L, EK_INVALID, "changes:apply: no changes to apply");
  const struct reg_service *svc = service(L);
  if (!svc) return errors_fail(L, EK_UNAVAILABLE, "registry: the host is not running change sets");
  struct task *t = task_check_blocking(L, "changes:apply");
  struct proc *p = t->p;
  struct reg_change_req *q = xcalloc(1, sizeof *q);
  q->ops = xcalloc(c->n, sizeof *q->ops);
  for (size_t i = 0; i < c->n; i++) reg_op_copy(&q->ops[i], &c->ops[i]);
  q->nops = c->n;
  q->done = req_done;
  q->ud = p->rt;
  q->pid = p->pid;
  atomic_init(&q->claim, REQ_WAITING);
  struct pending *pe = pending_new_io(p, t, &apply_ops, q);
  q->session = pe->session;
  if (svc->submit(svc->ud, q) != 0) {
    pe->io = NULL;                            /* never handed over */
    pending_free(p, pe);
    req_free(q);
    return errors_fail(L, EK_UNAVAILABLE, "registry: the host is stopping; the change set was not applied");
  }
  t->pend = pe;
  task_park(t);
  return lua_yield(L, 0);
}

/* ---- the module -------------------------------------------------------------------- */

static void new_mt(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
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
    {"version", s_version}, {"changes", s_changes}, {NULL, NULL},
  };
  static const luaL_Reg changes[] = {
    {"create", c_create}, {"update", c_update}, {"delete", c_delete}, {"ops", c_ops},
    {"apply", c_apply}, {NULL, NULL},
  };
  static const luaL_Reg version[] = {
    {"id", v_id}, {"string", v_string}, {"previous", v_previous}, {"next", v_next},
    {"source", v_source}, {"time", v_time}, {"count", v_count}, {NULL, NULL},
  };
  static const luaL_Reg funcs[] = {
    {"get", l_get}, {"find", l_find}, {"parse_id", l_parse_id}, {"snapshot", l_snapshot},
    {"current_version", l_current_version}, {"versions", l_versions}, {NULL, NULL},
  };
  new_mt(L, SNAP_MT, snap, snap_gc);
  new_mt(L, CHANGES_MT, changes, ch_gc);
  new_mt(L, VERSION_MT, version, NULL);
  luaL_getmetatable(L, VERSION_MT);
  lua_pushcfunction(L, v_string);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, v_eq);
  lua_setfield(L, -2, "__eq");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
