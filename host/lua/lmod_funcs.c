/*
** lmod_funcs.c — the `funcs` and `ctx` modules (wippy-compat.md §3.11, §4.12, issue 13).
** funcs.call(id, ...) packs the arguments (value/seri.h), hands a request to the funcs engine
** (runtime/fcall.h, rt service "funcs") and parks the task on a PEND_IO session; the engine's
** call thread runs the function on a function state and posts the outcome back (MK_IO), which
** fc_push turns into the callee's return values or nil, err. funcs.async does the same with
** a Future (lua/lfuture.h, LF_PAYLOAD). funcs.new() → an Executor: immutable, each with_*
** returns a new one (user value 1: its context table; `timeout`).
** ctx.get/ctx.all read the context values the running call was given (struct call ctx_vals).
** Owner: the thread running the calling state; fcall's call threads touch only the request.
*/
#include "lfuture.h"
#include "lmod.h"
#include "runtime/call.h"
#include "runtime/fcall.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "runtime/task.h"
#include "value/errors.h"
#include "value/seri.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#define EXECUTOR_MT "taskhost.funcs.executor"

struct executor { int64_t timeout; };       /* ns, 0 = none (the caller's deadline only) */

/* ---- outcomes -------------------------------------------------------------------- */

/* The callee's results, or nil, err. The request is freed by the caller of this. */
static int push_ran(lua_State *co, struct fcall_req *r) {
  struct call *c = &r->call;
  if (c->interrupted)
    return atomic_load(&r->cancel)
      ? errors_fail(co, EK_CANCELED, "funcs: %s was cancelled", r->id)
      : errors_fail(co, EK_TIMEOUT, "funcs: %s did not finish in time", r->id);
  if (c->raised) {
    int top = lua_gettop(co);
    if (r->results.len && seri_unpack(co, r->results.data, r->results.len) == 1) {
      lua_pushnil(co);
      errors_from_value(co, top + 1);       /* an error object stays itself, its kind kept */
      lua_remove(co, top + 1);
      return 2;
    }
    lua_settop(co, top);
    return errors_fail(co, EK_INTERNAL, "%s", c->error ? c->error : "failed");
  }
  if (c->failed && !r->results.len)         /* results that cannot cross (a function...) */
    return errors_fail(co, EK_INTERNAL, "funcs: %s: %s", r->id, c->error ? c->error : "failed");
  int base = lua_gettop(co);
  int n = seri_unpack(co, r->results.data, r->results.len);
  if (n < 0) return errors_fail(co, EK_INTERNAL, "funcs: %s: corrupt results", r->id);
  if (n >= 2 && lua_isnil(co, base + 1) && lua_type(co, base + 2) == LUA_TSTRING) {
    errors_from_value(co, base + 2);        /* nil, "text" → nil, error object */
    lua_replace(co, base + 2);
  }
  return n;
}

static int push_outcome(lua_State *co, struct fcall_req *r) {
  luaL_checkstack(co, 8, "funcs");
  switch (r->status) {
  case FC_RAN: return push_ran(co, r);
  case FC_NOT_FOUND: return errors_fail(co, EK_NOT_FOUND, "funcs: no function.lua entry %s", r->id);
  case FC_TIMEOUT: return errors_fail(co, EK_TIMEOUT, "funcs: %s did not start in time", r->id);
  case FC_CANCELED: return errors_fail(co, EK_CANCELED, "funcs: %s was cancelled", r->id);
  case FC_STOPPED: return errors_fail(co, EK_UNAVAILABLE, "funcs: the host is shutting down");
  default: return errors_fail(co, EK_INTERNAL, "funcs: %s: %s", r->id,
                              r->call.error ? r->call.error : "cannot make a state");
  }
}

static int fc_push(lua_State *co, void *req) {
  int n = push_outcome(co, req);
  fcall_req_free(req);
  return n;
}

static void fc_drop(void *req) { fcall_req_free(req); }
static void fc_cancel(void *req) { fcall_cancel(req); }

/* The waiter's own timer fired first (a call still waiting for a call thread at its deadline). */
static int fc_expire(lua_State *co) {
  return errors_fail(co, EK_TIMEOUT, "funcs: the call did not finish in time");
}

static const struct io_ops fc_ops = {fc_push, fc_drop, fc_cancel, lfuture_settle, fc_expire};

/* Slack after the deadline before the waiter gives up by itself: the callee, stopped at the
** deadline, normally answers first (with its own error). */
#define EXPIRE_SLACK (50 * NS_PER_MS)

/* ---- requests -------------------------------------------------------------------- */

/* Pushes the context a call made now gets: the caller's own values (if it runs in a call
** that has some), with the executor's table at xidx (0: none) over them; or nothing, 0. */
static int push_context(lua_State *L, struct proc *p, int xidx) {
  const struct call *c = p->call;
  int have = 0;
  if (c && c->ctx_vals && seri_unpack(L, c->ctx_vals, c->ctx_len) == 1) have = 1;
  if (!xidx) return have;
  if (!have) lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, xidx)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  return 1;
}

/* A request for id with the arguments from `first` to the top; raises on misuse. */
static struct fcall_req *build(lua_State *L, int xidx, int first) {
  const char *id = luaL_checkstring(L, first - 1);
  struct proc *p = proc_of(L);
  int top = lua_gettop(L);
  struct fcall_req *r = fcall_req_new(id);
  char err[256];
  if (seri_pack(L, first, top - first + 1, &r->args, err, sizeof err) != 0) {
    fcall_req_free(r);
    luaL_error(L, "funcs: %s", err);
  }
  lua_checkstack(L, 8);
  const struct executor *x = xidx ? lua_touserdata(L, xidx) : NULL;
  if (xidx) lua_getiuservalue(L, xidx, 1);
  int ctab = xidx && lua_istable(L, -1) ? lua_gettop(L) : 0;
  if (push_context(L, p, ctab) && seri_pack(L, -1, 1, &r->ctx, err, sizeof err) != 0) {
    fcall_req_free(r);
    luaL_error(L, "funcs: context: %s", err);
  }
  lua_settop(L, top);
  int64_t now = clock_mono_ns();
  if (x && x->timeout) r->deadline = now + x->timeout;
  if (p->call && p->call->deadline && (!r->deadline || p->call->deadline < r->deadline))
    r->deadline = p->call->deadline;        /* never past the caller's own deadline */
  r->depth = (p->call ? p->call->depth : 0) + 1;
  r->rt = p->rt;
  r->pid = p->pid;
  r->ops = &fc_ops;
  return r;
}

static struct fcall *engine(lua_State *L) { return rt_find_service(proc_of(L)->rt, "funcs"); }

enum { REFUSE_DEPTH = 1 };

static int refusal(lua_State *L, int rc) {
  if (rc == REFUSE_DEPTH)
    return errors_fail(L, EK_INVALID, "funcs: calls nested more than %d deep", FCALL_MAX_DEPTH);
  return rc == FCALL_BUSY
    ? errors_fail(L, EK_RATE_LIMITED, "funcs: too many calls waiting for a call thread")
    : errors_fail(L, EK_UNAVAILABLE, "funcs: the host is shutting down");
}

/* Hands r to the engine under session pe. On a refusal pe is freed without cancel. */
static int submit(struct fcall *e, struct proc *p, struct pending *pe, struct fcall_req *r) {
  r->session = pe->session;
  int rc = r->depth > FCALL_MAX_DEPTH ? REFUSE_DEPTH : fcall_submit(e, r);
  if (rc != FCALL_OK) {
    pe->io = NULL;                            /* never handed over: not the engine's to cancel */
    pending_free(p, pe);
  }
  return rc;
}

static int do_call(lua_State *L, int xidx, int first) {
  struct task *t = task_check_blocking(L, "funcs.call");
  struct fcall *e = engine(L);
  struct fcall_req *r = build(L, xidx, first);
  if (!e) { fcall_req_free(r); return errors_fail(L, EK_UNAVAILABLE, "funcs: not running"); }
  struct proc *p = t->p;
  struct pending *pe = pending_new_io(p, t, &fc_ops, r);
  int64_t deadline = r->deadline;
  int rc = submit(e, p, pe, r);
  if (rc != FCALL_OK) { fcall_req_free(r); return refusal(L, rc); }
  if (deadline) pending_arm_at(p, pe, deadline + EXPIRE_SLACK);
  t->pend = pe;
  task_park(t);
  return lua_yield(L, 0);
}

static int do_async(lua_State *L, int xidx, int first) {
  struct fcall *e = engine(L);
  struct fcall_req *r = build(L, xidx, first);
  struct proc *p = proc_of(L);
  lfuture_new(L, LF_PAYLOAD);
  int fidx = lua_gettop(L);
  if (!e) {
    fcall_req_free(r);
    lua_pushvalue(L, fidx);
    errors_fail(L, EK_UNAVAILABLE, "funcs: not running");
    lfuture_settle(L, 2);
    lua_settop(L, fidx);
    return 1;
  }
  struct pending *pe = pending_new_io(p, NULL, &fc_ops, r);
  lfuture_bind(L, fidx, pe);
  int rc = submit(e, p, pe, r);
  if (rc != FCALL_OK) {
    fcall_req_free(r);
    lua_pushvalue(L, fidx);
    lfuture_settle(L, refusal(L, rc));
    lua_settop(L, fidx);
  }
  return 1;
}

static int l_call(lua_State *L) { return do_call(L, 0, 2); }
static int l_async(lua_State *L) { return do_async(L, 0, 2); }

/* ---- executors ------------------------------------------------------------------- */

/* Pushes a new executor with x's settings and context table ctab (0: none). */
static struct executor *push_executor(lua_State *L, const struct executor *x, int ctab) {
  if (ctab) ctab = lua_absindex(L, ctab);
  struct executor *n = lua_newuserdatauv(L, sizeof *n, 1);
  *n = x ? *x : (struct executor){0};
  if (ctab) {
    lua_pushvalue(L, ctab);
    lua_setiuservalue(L, -2, 1);
  }
  luaL_setmetatable(L, EXECUTOR_MT);
  return n;
}

static struct executor *check_executor(lua_State *L) { return luaL_checkudata(L, 1, EXECUTOR_MT); }

static int l_new(lua_State *L) {
  push_executor(L, NULL, 0);
  return 1;
}

/* A new executor whose context is this one's with t's values over it. String keys; values
** must be able to cross states (checked now). */
static int ex_with_context(lua_State *L) {
  struct executor *x = check_executor(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_newtable(L);                                    /* 3: the merged table */
  lua_getiuservalue(L, 1, 1);                         /* 4: the current one, or nil */
  for (int src = 4; src >= 2; src -= 2) {
    if (!lua_istable(L, src)) continue;
    lua_pushnil(L);
    while (lua_next(L, src)) {
      if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "funcs: context keys must be strings");
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 3);
    }
  }
  struct buf b;
  buf_init(&b);
  char err[256];
  int bad = seri_pack(L, 3, 1, &b, err, sizeof err);
  buf_free(&b);
  if (bad) return luaL_error(L, "funcs: context: %s", err);
  push_executor(L, x, 3);
  return 1;
}

/* Wippy's options: timeout in milliseconds (a number) or a duration string; 0 = none. */
static int ex_with_options(lua_State *L) {
  struct executor *x = check_executor(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  struct executor n = *x;
  lua_getfield(L, 2, "timeout");
  int64_t ns = 0;
  if (lua_type(L, -1) == LUA_TNUMBER) {
    double ms = lua_tonumber(L, -1);
    if (!(ms >= 0 && ms < 9e12)) return luaL_error(L, "funcs: timeout must be 0 or more milliseconds");
    ns = (int64_t)(ms * 1e6);
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    if (duration_parse(lua_tostring(L, -1), &ns) != 0 || ns < 0)
      return luaL_error(L, "funcs: invalid timeout %s", lua_tostring(L, -1));
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "funcs: timeout must be milliseconds or a duration string");
  }
  if (!lua_isnil(L, -1)) n.timeout = ns;
  lua_pop(L, 1);
  lua_getiuservalue(L, 1, 1);
  push_executor(L, &n, lua_istable(L, -1) ? -1 : 0);
  return 1;
}

static int ex_call(lua_State *L) { check_executor(L); return do_call(L, 1, 3); }
static int ex_async(lua_State *L) { check_executor(L); return do_async(L, 1, 3); }

int luaopen_funcs(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"with_context", ex_with_context}, {"with_options", ex_with_options},
    {"call", ex_call}, {"async", ex_async}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"call", l_call}, {"async", l_async}, {"new", l_new}, {NULL, NULL}};
  lfuture_open(L);
  if (luaL_newmetatable(L, EXECUTOR_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}

/* ---- ctx ------------------------------------------------------------------------- */

/* Pushes the running call's context table (a fresh copy), or an empty table. */
static void push_all(lua_State *L) {
  const struct call *c = proc_of(L)->call;
  if (c && c->ctx_vals && seri_unpack(L, c->ctx_vals, c->ctx_len) == 1 && lua_istable(L, -1)) return;
  lua_newtable(L);
}

static int l_ctx_get(lua_State *L) {
  const char *key = luaL_checkstring(L, 1);
  push_all(L);
  lua_getfield(L, -1, key);
  if (!lua_isnil(L, -1)) return 1;
  return errors_fail(L, EK_NOT_FOUND, "ctx: no value %s", key);
}

static int l_ctx_all(lua_State *L) {
  push_all(L);
  return 1;
}

int luaopen_ctx(lua_State *L) {
  static const luaL_Reg funcs[] = {{"get", l_ctx_get}, {"all", l_ctx_all}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
