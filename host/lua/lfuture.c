/*
** lfuture.c — see lfuture.h. User values of a future: 1 the public channel (capacity 1, offered
** once), 2 the recorded results {n = count, ...}, 3 an internal channel closed on completion,
** which wakes every :result() waiter. Owner: the thread running the future's process.
*/
#include "lfuture.h"
#include "lmod.h"
#include "runtime/chan.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "value/errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#define FUTURE_MT "taskhost.future"
enum { F_PENDING, F_DONE };
struct future { uint64_t session; int state, mode, failed, canceled; };

static void close_chan(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, chan_l_close);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 0);
}

void lfuture_new(lua_State *L, int mode) {
  struct future *f = lua_newuserdatauv(L, sizeof *f, 3);
  *f = (struct future){0, F_PENDING, mode, 0, 0};
  luaL_setmetatable(L, FUTURE_MT);
  int fidx = lua_gettop(L);
  chan_new(L, 1);
  lua_setiuservalue(L, fidx, 1);
  chan_new(L, 0);
  lua_setiuservalue(L, fidx, 3);
}

void lfuture_bind(lua_State *L, int fidx, struct pending *pe) {
  struct future *f = lua_touserdata(L, fidx);
  lua_pushvalue(L, fidx);
  pe->ref = luaL_ref(L, LUA_REGISTRYINDEX);    /* the future lives until it completes */
  f->session = pe->session;
}

/* Stores the values fidx+1 .. fidx+n as the future's results (user value 2). */
static void record(lua_State *L, int fidx, int first, int n) {
  lua_createtable(L, n, 1);
  for (int i = 0; i < n; i++) {
    lua_pushvalue(L, first + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_setiuservalue(L, fidx, 2);
}

void lfuture_settle(lua_State *L, int n) {
  luaL_checkstack(L, 6, "future");
  int fidx = lua_gettop(L) - n;
  struct future *f = lua_touserdata(L, fidx);
  if (f->state == F_DONE) return;
  f->state = F_DONE;
  f->failed = n >= 2 && lua_isnil(L, fidx + 1) && !lua_isnil(L, fidx + 2);
  if (f->failed) {
    const char *kind = errors_kind(L, fidx + 2);
    f->canceled = f->canceled || (kind && strcmp(kind, EK_CANCELED) == 0);
  }
  lua_getiuservalue(L, fidx, 1);
  int ch = lua_gettop(L);
  if (f->mode == LF_VALUE) {
    record(L, fidx, fidx + 1, n);
    lua_pushvalue(L, fidx + (f->failed ? 2 : 1));   /* the response, or the error */
    chan_offer(L, ch);                              /* capacity 1, offered once: never full */
    lua_pop(L, 1);
  } else if (f->failed) {
    record(L, fidx, fidx + 1, 2);
    close_chan(L, ch);                              /* no value: :error() tells why */
  } else {
    if (n >= 1) lua_pushvalue(L, fidx + 1);
    else lua_pushnil(L);
    lmod_push_payload(L, -1);
    lua_remove(L, -2);
    record(L, fidx, lua_gettop(L), 1);
    chan_offer(L, ch);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getiuservalue(L, fidx, 3);
  close_chan(L, -1);
  lua_pop(L, 1);
}

static struct future *check_future(lua_State *L) { return luaL_checkudata(L, 1, FUTURE_MT); }

static int results(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  lua_getiuservalue(L, 1, 2);
  int t = lua_gettop(L);
  lua_getfield(L, t, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "future:result");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, t, i);
  return n;
}

/* Waits (parks the task) until the work completed. */
static int fut_result(lua_State *L) {
  struct future *f = check_future(L);
  if (f->state == F_DONE) return results(L, LUA_OK, 0);
  task_check_blocking(L, "future:result");
  lua_settop(L, 1);
  lua_pushcfunction(L, chan_l_receive);
  lua_getiuservalue(L, 1, 3);
  lua_callk(L, 1, 0, 0, results);              /* returns (or resumes) when it is closed */
  return results(L, LUA_OK, 0);
}

static int fut_channel(lua_State *L) {
  check_future(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int fut_is_complete(lua_State *L) {
  lua_pushboolean(L, check_future(L)->state == F_DONE);
  return 1;
}

static int fut_is_canceled(lua_State *L) {
  lua_pushboolean(L, check_future(L)->canceled);
  return 1;
}

/* err, true when it failed; nil, false while pending or after a success. */
static int fut_error(lua_State *L) {
  struct future *f = check_future(L);
  if (f->state != F_DONE || !f->failed) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  lua_getiuservalue(L, 1, 2);
  lua_rawgeti(L, -1, 2);
  lua_pushboolean(L, 1);
  return 2;
}

/* Stops pending work: the future completes at once with nil, CANCELED. true if it was pending. */
static int fut_cancel(lua_State *L) {
  struct future *f = check_future(L);
  if (f->state == F_DONE) { lua_pushboolean(L, 0); return 1; }
  struct proc *p = proc_of(L);
  struct pending *pe = hmap_get(&p->sessions, f->session);
  f->canceled = 1;
  lua_settop(L, 1);
  lua_pushvalue(L, 1);                          /* anchored on the stack: pe's ref goes below */
  if (pe) pending_free(p, pe);                  /* stops the work, unanchors the future */
  lua_pushnil(L);
  lua_pushstring(L, f->mode == LF_VALUE ? "request canceled" : "call canceled");
  lua_pushstring(L, EK_CANCELED);
  lua_pushboolean(L, 0);                        /* not retryable */
  lua_pushnil(L);
  lua_pushnil(L);
  errors_build(L);
  lfuture_settle(L, 2);
  lua_pushboolean(L, 1);
  return 1;
}

void lfuture_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"result", fut_result}, {"channel", fut_channel}, {"response", fut_channel},
    {"is_complete", fut_is_complete}, {"is_canceled", fut_is_canceled}, {"error", fut_error},
    {"cancel", fut_cancel}, {NULL, NULL}};
  if (luaL_newmetatable(L, FUTURE_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
