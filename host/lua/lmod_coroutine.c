/*
** lmod_coroutine.c — the `coroutine` global: Lua's library with `resume` and `wrap`
** replaced so the watchdog reaches code running inside plain coroutines, and
** `coroutine.spawn` (a scheduler-managed task, task.c).
**
** Hooks are per lua_State thread, and the watchdog arms the count hook on its worker slot's
** `running_co` (worker.h). While a plain coroutine runs, running_co names it (the
** previous value comes back when it yields, returns or raises), so a deadline, a cancel, a
** kill or a preemption reaches the innermost coroutine running, however deep:
**  - stop (task_stop_reason): the hook raises in the coroutine; when lua_resume returns
**    with that coroutine's hook still set and a stop reason, resume raises the same reason
**    in its caller with the hook armed there too, so no pcall or resume in between keeps the
**    code running;
**  - preemption: the hook yields the coroutine with p->preempted set; resume then yields
**    its own caller (its continuation resumes the coroutine again), up to the task, which
**    goes to the back of the ready list. A caller that cannot yield (inside a metamethod, at
**    the top of a chunk) resumes the coroutine again at once.
** Cost per resume: a plain and a seq_cst store of running_co, a load of `hooking` and
** lua_gethook (~10-30 ns on a resume/yield round trip of ~170 ns).
** Owner: the worker running the process.
*/
#include "lmod.h"
#include "runtime/luaenv.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "runtime/worker.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

enum { FROM_RESUME, FROM_WRAP };        /* which function resumes: where the coroutine is */

static lua_State *co_of(lua_State *L, int from) {
  return lua_tothread(L, from == FROM_WRAP ? lua_upvalueindex(1) : 1);
}

/* lua_resume(co) with the narg values on top of L, co published to the watchdog meanwhile. */
static int run(lua_State *L, struct worker *w, lua_State *co, int narg, int *nres) {
  lua_xmove(L, co, narg);
  lua_State *prev = NULL;
  if (w) {                  /* only this thread writes running_co: publishing needs no lock */
    prev = atomic_load_explicit(&w->running_co, memory_order_relaxed);
    atomic_store_explicit(&w->running_co, co, memory_order_release);
  }
  int st = lua_resume(co, L, narg, nres);
  if (w) {                  /* seq_cst store, then the hooking load (worker.h protocol) */
    atomic_store(&w->running_co, prev);
    while (atomic_load(&w->hooking)) {}  /* the watchdog may be arming co's hook right now */
  }
  return st;
}

/* Lua's auxwrap for an error: close a failed coroutine and raise its error in L, with the
** position prepended to a string message. */
static int wrap_error(lua_State *L, lua_State *co) {
  int stat = lua_status(co);
  if (stat != LUA_OK && stat != LUA_YIELD) {
    stat = lua_resetthread(co);
    lua_xmove(co, L, 1);
  }
  if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* The coroutine's results (or error) as resume or wrap return them. */
static int finish(lua_State *L, lua_State *co, int st, int nres, int from) {
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      if (from == FROM_WRAP) return lua_error(L);
      lua_pushboolean(L, 0);
      lua_insert(L, -2);
      return 2;
    }
    lua_xmove(co, L, nres);
    if (from == FROM_WRAP) return nres;
    lua_pushboolean(L, 1);
    lua_insert(L, -(nres + 1));
    return nres + 1;
  }
  lua_xmove(co, L, 1);
  if (from == FROM_WRAP) return wrap_error(L, co);
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

static int resume_k(lua_State *L, int status, lua_KContext ctx);

static int go(lua_State *L, lua_State *co, int narg, int from) {
  struct proc *p = proc_of(L);
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    if (from == FROM_WRAP) return lua_error(L);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  for (;;) {
    int nres, st = run(L, p->worker, co, narg, &nres);
    if (st == LUA_YIELD && nres == 0 && p->preempted) {
      if (lua_isyieldable(L)) return lua_yieldk(L, 0, from, resume_k);
      p->preempted = 0;
      narg = 0;
      continue;
    }
    const char *why = lua_gethook(co) ? task_stop_reason(p) : NULL;
    if (why) {
      lua_pop(co, st == LUA_OK || st == LUA_YIELD ? nres : 1);
      return task_stop(L, why);
    }
    return finish(L, co, st, nres, from);
  }
}

/* Resumed after passing a preemption up: run the coroutine on. */
static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  return go(L, co_of(L, (int)ctx), 0, (int)ctx);
}

static int l_resume(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  return go(L, lua_tothread(L, 1), lua_gettop(L) - 1, FROM_RESUME);
}

static int l_wrapped(lua_State *L) {
  return go(L, co_of(L, FROM_WRAP), lua_gettop(L), FROM_WRAP);
}

static int l_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, l_wrapped, 1);
  return 1;
}

/* ---- coroutine.spawn --------------------------------------------------------------- */

static int spawn_k(lua_State *L, int status, lua_KContext ctx) { return 1; }  /* the thread */

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  struct task *self = task_current(L);
  struct task *child = task_new(self->p, 1, L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, child->ref);
  if (self->state == T_ROOT || !lua_isyieldable(L)) {
    task_ready(child);
    return 1;
  }
  task_ready_front(self);       /* FIFO becomes: child, caller, … */
  task_ready_front(child);
  return lua_yieldk(L, 0, 0, spawn_k);
}

int luaopen_tcoroutine(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"resume", l_resume}, {"wrap", l_wrap}, {"spawn", l_spawn}, {NULL, NULL},
  };
  luaopen_coroutine(L);
  luaL_setfuncs(L, funcs, 0);
  return 1;
}
