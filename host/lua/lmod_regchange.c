/*
** lmod_regchange.c — the `registry` module's change sets (wippy-compat.md §3.21, §6):
** snapshot:changes() → create/update/delete/ops/apply, registry.apply_version(version) and
** registry.build_delta(from, to). changes:apply() and apply_version hand a copy of their ops
** to the registry service (runtime/regsvc.h), which applies them on the main thread as a hot
** reload, and park the calling task on a PEND_IO session until the MK_IO completion comes
** back (the claim protocol of regsvc.h). Owner: the thread running the calling state;
** req_done runs on the main thread.
*/
#include "lmod.h"
#include "lmod_registry.h"
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

int lreg_changes_new(lua_State *L) {
  lreg_check_snap(L, 1);
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

/* A request as this module makes it: apply_version answers true / false, err. */
struct lreq {
  struct reg_change_req q;   /* first: a struct reg_change_req * is a struct lreq * */
  int as_bool;
};

static void req_free(struct reg_change_req *q) {
  ops_free(q->ops, q->nops);
  free(q->error);
  free((struct lreq *)q);
}

static int req_push(lua_State *co, void *req) {
  struct reg_change_req *q = req;
  luaL_checkstack(co, 4, "registry");
  int n = 2, as_bool = ((struct lreq *)q)->as_bool;
  if (q->ok && as_bool) lua_pushboolean(co, 1);
  else if (q->ok) lreg_push_version(co, &q->version);
  else n = errors_fail(co, q->kind ? q->kind : EK_INTERNAL, "%s", q->error ? q->error : "refused");
  if (!q->ok && as_bool) { lua_pushboolean(co, 0); lua_replace(co, -3); }   /* false, err */
  if (q->ok) lua_pushnil(co);
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

/* Hands ops (taken: freed here on every path) to the service and parks the calling task. */
static int submit(lua_State *L, struct reg_op *ops, size_t n, int as_bool) {
  const struct reg_service *svc = lreg_service(L);
  if (!svc) { ops_free(ops, n); return errors_fail(L, EK_UNAVAILABLE, "registry: the host is not running change sets"); }
  struct task *t = task_check_blocking(L, "registry: applying changes");
  struct proc *p = t->p;
  struct lreq *lq = xcalloc(1, sizeof *lq);
  struct reg_change_req *q = &lq->q;
  lq->as_bool = as_bool;
  q->ops = ops;
  q->nops = n;
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

static int c_apply(lua_State *L) {
  struct changes *c = luaL_checkudata(L, 1, CHANGES_MT);
  if (c->n == 0) return errors_fail(L, EK_INVALID, "changes:apply: no changes to apply");
  struct reg_op *ops = xcalloc(c->n, sizeof *ops);
  for (size_t i = 0; i < c->n; i++) reg_op_copy(&ops[i], &c->ops[i]);
  return submit(L, ops, c->n, 0);
}

/* ---- apply_version: the delta from the current generation to a kept one ---- */

int lreg_apply_version(lua_State *L) {
  uint64_t id = ((struct reg_version *)luaL_checkudata(L, 1, VERSION_MT))->id;
  const struct reg_service *svc = lreg_service(L);
  struct registry *target = svc ? svc->generation(svc->ud, id) : NULL;
  if (!target) {
    lua_pushboolean(L, 0);
    errors_push(L, EK_NOT_FOUND, "registry: version %llu is not kept (the last %d generations are)",
                (unsigned long long)id, REG_KEEP_GENERATIONS);
    return 2;
  }
  struct registry *cur = lreg_current(L);
  struct reg_op *ops;
  size_t n = registry_delta(cur, target, &ops);
  registry_unref(cur);
  registry_unref(target);
  if (n == 0) { free(ops); lua_pushboolean(L, 1); lua_pushnil(L); return 2; }   /* already there */
  if (n > REG_MAX_OPS) {
    ops_free(ops, n);
    lua_pushboolean(L, 0);
    errors_push(L, EK_INVALID, "registry: going to version %llu takes %zu operations (at most %d)",
                (unsigned long long)id, n, REG_MAX_OPS);
    return 2;
  }
  return submit(L, ops, n, 1);
}

/* ---- build_delta: ops between two arrays of entry tables ---- */

/* The entries of the array at idx as {id → index} in a table pushed on the stack; raises on
** an entry without a string id. */
static void index_entries(lua_State *L, int idx) {
  lua_newtable(L);
  for (lua_Integer i = 1; lua_rawgeti(L, idx, i) == LUA_TTABLE; i++) {
    if (lua_getfield(L, -1, "id") != LUA_TSTRING) luaL_error(L, "build_delta: entry %d has no string id", (int)i);
    lua_pushinteger(L, i);
    lua_rawset(L, -4);   /* index[id] = i */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* 1 when the entry tables at a and b have the same kind, meta and data (deep), 0 when not,
** -1 (err) when one cannot be read as data or the call's budget ran out. */
static int same_entry(lua_State *L, int a, int b, struct val_limits *lim, char *err, size_t errlen) {
  static const char *const parts[] = {"kind", "meta", "data"};
  int same = 1;
  for (int i = 0; i < 3 && same == 1; i++) {
    lua_getfield(L, a, parts[i]);
    lua_getfield(L, b, parts[i]);
    struct val *x = val_from_lua_limited(L, -2, NULL, lim, err, errlen);
    struct val *y = x ? val_from_lua_limited(L, -1, NULL, lim, err, errlen) : NULL;
    if (!x || !y) same = -1;
    else same = val_equal(x, y) || (val_len(x) == 0 && val_len(y) == 0 && x->type >= V_LIST && y->type >= V_LIST);
    val_free(x);
    val_free(y);
    lua_pop(L, 2);
  }
  return same;
}

/* Appends {kind, entry = the table at `entry`} to the ops table at index 5. */
static void push_delta_op(lua_State *L, const char *kind, int entry, lua_Integer *n) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvalue(L, entry);
  lua_setfield(L, -2, "entry");
  lua_rawseti(L, 5, ++*n);
}

int lreg_build_delta(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  luaL_checkstack(L, 12, "build_delta");
  index_entries(L, 1);   /* 3: from ids */
  index_entries(L, 2);   /* 4: to ids */
  struct val_limits lim;   /* both arrays' entries all told */
  registry_change_limits(&lim);
  char err[256];
  lua_newtable(L);       /* 5: the ops */
  lua_Integer n = 0;
  for (lua_Integer i = 1; lua_rawgeti(L, 1, i) == LUA_TTABLE; i++) {   /* 6: a from entry */
    lua_getfield(L, 6, "id");
    int t = lua_rawget(L, 4) == LUA_TNUMBER ? lua_rawgeti(L, 2, lua_tointeger(L, -1)) : LUA_TNIL;  /* 8 */
    int same = t == LUA_TNIL ? 0 : same_entry(L, 6, 8, &lim, err, sizeof err);
    if (same < 0) return errors_fail(L, EK_INVALID, "build_delta: %s", err);
    if (t == LUA_TNIL) push_delta_op(L, "entry.delete", 6, &n);
    else if (!same) push_delta_op(L, "entry.update", 8, &n);
    lua_settop(L, 5);
  }
  lua_settop(L, 5);
  for (lua_Integer i = 1; lua_rawgeti(L, 2, i) == LUA_TTABLE; i++) {   /* 6: a to entry */
    lua_getfield(L, 6, "id");
    if (lua_rawget(L, 3) == LUA_TNIL) push_delta_op(L, "entry.create", 6, &n);
    lua_settop(L, 5);
  }
  lua_settop(L, 5);
  lua_pushnil(L);
  return 2;
}

void lreg_open_changes(lua_State *L) {
  static const luaL_Reg changes[] = {
    {"create", c_create}, {"update", c_update}, {"delete", c_delete}, {"ops", c_ops},
    {"apply", c_apply}, {NULL, NULL},
  };
  lreg_new_mt(L, CHANGES_MT, changes, ch_gc);
}
