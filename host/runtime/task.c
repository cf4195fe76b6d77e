/*
** task.c — scheduler-managed coroutines of a process (coroutine.spawn and main), the ready
** FIFO, park/wake, and the sessions that timers and stdin lines complete.
** Owner: the worker running the process. A waker never resumes a task: it pushes results
** onto the task's coroutine and appends the task to the ready FIFO.
*/
#include "task.h"
#include "call.h"
#include "msg.h"
#include "proc.h"
#include "worker.h"
#include "value/errors.h"
#include "value/json.h"
#include "base/log.h"
#include "rt.h"
#include "value/seri.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct task *task_current(lua_State *L) { return *(struct task **)lua_getextraspace(L); }

static void link_task(struct proc *p, struct task *t) {
  t->all_prev = NULL;
  t->all_next = p->tasks;
  if (p->tasks) p->tasks->all_prev = t;
  p->tasks = t;
}

static void unlink_task(struct proc *p, struct task *t) {
  if (t->all_prev) t->all_prev->all_next = t->all_next;
  else p->tasks = t->all_next;
  if (t->all_next) t->all_next->all_prev = t->all_prev;
  t->all_next = t->all_prev = NULL;
}

/* A finished task (its coroutine ended normally) kept for reuse, as skynet pools coroutines:
** pushing a function onto such a coroutine starts it afresh. */
#define MAX_FREE_TASKS 32

static struct task *reuse_free(struct proc *p, int fidx, lua_State *L) {
  struct task *t = p->free_tasks;
  p->free_tasks = t->next;
  p->nfree_tasks--;
  t->next = NULL;
  t->nargs = 0;
  t->is_main = 0;
  t->sel = NULL;
  t->pend = NULL;
  t->state = T_PARKED;
  lua_pushvalue(L, fidx);
  lua_xmove(L, t->co, 1);
  link_task(p, t);
  return t;
}

struct task *task_new(struct proc *p, int fidx, lua_State *L) {
  fidx = lua_absindex(L, fidx);
  if (p->free_tasks) return reuse_free(p, fidx, L);
  struct task *t = xcalloc(1, sizeof *t);
  lua_State *co = lua_newthread(L);
  *(struct task **)lua_getextraspace(co) = t;
  lua_pushvalue(L, fidx);
  lua_xmove(L, co, 1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);     /* pops the thread */
  t->co = co;
  t->p = p;
  t->state = T_PARKED;
  link_task(p, t);
  return t;
}

void task_ready(struct task *t) {
  struct proc *p = t->p;
  t->state = T_READY;
  t->next = NULL;
  if (p->ready_tail) p->ready_tail->next = t;
  else p->ready_head = t;
  p->ready_tail = t;
}

void task_ready_front(struct task *t) {
  struct proc *p = t->p;
  t->state = T_READY;
  t->next = p->ready_head;
  p->ready_head = t;
  if (!p->ready_tail) p->ready_tail = t;
}

void task_park(struct task *t) { t->state = T_PARKED; }

void task_wake(struct task *t, int n) {
  t->nargs = n;
  task_ready(t);
}

struct task *task_check_blocking(lua_State *L, const char *what) {
  struct task *t = task_current(L);
  if (t->state == T_ROOT)
    luaL_error(L, "%s would block outside a process task (at the top level of a chunk or "
                  "inside coroutine.create/wrap); block inside main or a coroutine.spawn'ed "
                  "function", what);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s cannot block here (inside a metamethod, iterator or C callback)", what);
  return t;
}

/* Unlinks a finished task and lets the GC take its coroutine. */
/* Drops a task whose coroutine cannot run again (it raised). */
static void task_discard(struct proc *p, struct task *t) {
  unlink_task(p, t);
  luaL_unref(p->L, LUA_REGISTRYINDEX, t->ref);
  free(t->sel_spare);
  free(t);
}

void task_drop(struct proc *p, struct task *t) { task_discard(p, t); }

/* A task that returned: its coroutine goes to the free list (or away when that is full). */
static void task_free(struct proc *p, struct task *t) {
  if (p->nfree_tasks >= MAX_FREE_TASKS) { task_discard(p, t); return; }
  unlink_task(p, t);
  lua_settop(t->co, 0);
  t->state = T_DEAD;
  t->next = p->free_tasks;
  p->free_tasks = t;
  p->nfree_tasks++;
}

/* main returned nres values on co: record the result (wippy-compat.md §4.5, §4.11). */
static void finish_main(struct proc *p, lua_State *co, int nres) {
  p->mem_limit = 0;
  int base = lua_gettop(co) - nres + 1;
  int failed = nres >= 2 && (lua_type(co, base + 1) == LUA_TSTRING || errors_is(co, base + 1));
  p->done = 1;
  if (failed) {
    p->exit_failed = 1;
    p->exit_code = 1;
    p->exit_error = xstrdup(luaL_tolstring(co, base + 1, NULL));
    lua_pop(co, 1);
    lua_pushnil(co);
    errors_from_value(co, base + 1);
  } else {
    int t = nres ? lua_type(co, base) : LUA_TNIL;
    if (t == LUA_TNUMBER) {
      lua_Number n = lua_tonumber(co, base);
      p->exit_code = isfinite(n) ? (int)n : 1;
    } else if (t == LUA_TBOOLEAN) {
      p->exit_code = !lua_toboolean(co, base);
    } else if (t == LUA_TSTRING) {
      p->exit_text = xstrdup(lua_tostring(co, base));
    }
    if (nres) lua_pushvalue(co, base);
    else lua_pushnil(co);
    lua_pushnil(co);
  }
  char err[200];
  if (seri_pack(co, lua_gettop(co) - 1, 2, &p->exit_result, err, sizeof err) != 0) {
    log_warn("process %s: its result cannot be sent to monitors: %s", p->pidstr, err);
    buf_reset(&p->exit_result);
    lua_pushnil(co);
    lua_pushnil(co);
    seri_pack(co, lua_gettop(co) - 1, 2, &p->exit_result, err, sizeof err);
  }
}

static int tostring_f(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Makes the error value on top of co (a coroutine that raised) safe to report: anything but
** an error object, a string or a number becomes its tostring text, computed protected on
** the state's main thread (no Lua runs there between resumes), so a __tostring that raises
** or recurses cannot panic the host. The heap limit is lifted meanwhile. */
static void error_to_text(struct proc *p, lua_State *co) {
  int type = lua_type(co, -1);
  if (type == LUA_TSTRING || type == LUA_TNUMBER || errors_is(co, -1)) return;
  size_t limit = p->mem_limit;
  p->mem_limit = 0;
  lua_State *L = p->L;
  lua_pushcfunction(L, tostring_f);
  lua_xmove(co, L, 1);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
    lua_xmove(L, co, 1);
  } else {
    const char *why = lua_tostring(L, -1);
    lua_pushfstring(co, "(error object is a %s value; its __tostring failed: %s)",
                    lua_typename(co, type), why ? why : "not a string");
    lua_pop(L, 1);
  }
  p->mem_limit = limit;
}

/* A task raised: the process fails with the error (and a traceback in the log). */
static void task_failed(struct proc *p, struct task *t) {
  lua_State *co = t->co;
  p->mem_limit = 0;             /* the process is ending: reporting must not hit the limit */
  error_to_text(p, co);
  char *text;
  if (errors_is(co, -1)) {
    text = xstrdup(errors_message(co, -1));
  } else {
    text = xstrdup(luaL_tolstring(co, -1, NULL));
    lua_pop(co, 1);
  }
  if (log_enabled(LOG_DEBUG)) {
    luaL_traceback(p->L, co, NULL, 0);
    log_debug("process %s: %s\n%s", p->pidstr, text, lua_tostring(p->L, -1));
    lua_pop(p->L, 1);
  }
  if (atomic_load(&p->kill)) {          /* the interrupt hook's error: report it plainly */
    free(text);
    text = xstrdup("terminated");
    lua_pushstring(co, text);
  }
  int top = lua_gettop(co);
  lua_pushnil(co);
  errors_from_value(co, top);
  char err[128];
  buf_reset(&p->exit_result);
  seri_pack(co, top + 1, 2, &p->exit_result, err, sizeof err);
  lua_settop(co, top);
  proc_fail(p, "%s", text);
  free(text);
}

/* Why the running code must stop now, or NULL: a kill, the call's cancel flag (a cancelled
** job) or its deadline. */
const char *task_stop_reason(struct proc *p) {
  struct call *c = p->call;
  if (atomic_load(&p->kill)) return "terminated";
  if (!c) return NULL;
  if (c->cancel && atomic_load(c->cancel)) return "cancelled";
  if (c->deadline && clock_mono_ns() > c->deadline) return "the handler did not finish in time";
  return NULL;
}

static void interrupt_hook(lua_State *L, lua_Debug *ar);

int task_stop(lua_State *L, const char *why) {
  struct proc *p = task_current(L)->p;
  /* fire at every instruction from now on: a pcall that catches this error gets one
  ** instruction before the next one, so every level unwinds */
  lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, 1);
  if (p->call) p->call->interrupted = 1;
  return luaL_error(L, "%s", why);
}

/* The count hook the watchdog arms on a coroutine that runs too long (runs on the worker).
** A kill request raises "terminated", a call past its deadline "the handler did not finish
** in time", a cancelled call "cancelled" (the hook stays armed, so pcall cannot swallow
** either); otherwise the coroutine yields: a task goes to the back of the ready list, a
** plain coroutine.create/wrap coroutine yields to its resume (lmod_coroutine.c), which
** passes the preemption up to the task. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  struct task *t = task_current(L);
  struct proc *p = t->p;
  const char *why = task_stop_reason(p);
  if (why) {
    task_stop(L, why);
    return;
  }
  lua_sethook(L, NULL, 0, 0);
  int plain = t->state == T_ROOT && L != p->L;      /* a coroutine.create/wrap coroutine */
  if ((t->state == T_RUNNING || plain) && lua_isyieldable(L)) {
    p->preempted = 1;
    lua_yield(L, 0);
  }
}

void task_interrupt_worker(struct worker *w) {
  atomic_store(&w->hooking, 1);
  lua_State *co = atomic_load(&w->running_co);
  if (co) lua_sethook(co, interrupt_hook, LUA_MASKCOUNT, 1000);
  atomic_store(&w->hooking, 0);
}

void task_watch_begin(struct worker *w, lua_State *co) {
  if (!w) return;                    /* no watchdog (booting a function state) */
  atomic_store(&w->running_co, co);
  atomic_fetch_add(&w->resumes, 1);
}

void task_watch_end(struct worker *w) {
  if (!w) return;
  atomic_fetch_add(&w->resumes, 1);
  atomic_store(&w->running_co, NULL);
  while (atomic_load(&w->hooking)) {}
}

static int resume(struct proc *p, struct task *t, int *nres) {
  task_watch_begin(p->worker, t->co);
  int st = lua_resume(t->co, NULL, t->nargs, nres);
  task_watch_end(p->worker);
  return st;
}

/* 1 when the value at idx is an error object whose retryable is false. */
static int not_retryable(lua_State *co, int idx) {
  if (!errors_is(co, idx) || !lua_checkstack(co, 5)) return 0;
  errors_push_fields(co, idx);
  int r = lua_isboolean(co, -3) && !lua_toboolean(co, -3);
  lua_pop(co, 5);
  return r;
}

/* The main task of an inline function call returned: record the outcome, keep the state. */
static void call_returned(struct proc *p, struct task *t, int nres) {
  lua_State *co = t->co;
  struct call *c = p->call;
  int base = lua_gettop(co) - nres + 1;
  c->returned = nres >= 1 && !lua_isnil(co, base);
  if (nres >= 2 && (lua_type(co, base + 1) == LUA_TSTRING || errors_is(co, base + 1))) {
    c->failed = 1;
    c->fatal = not_retryable(co, base + 1);
    c->error = xstrdup(errors_is(co, base + 1) ? errors_message(co, base + 1) : lua_tostring(co, base + 1));
  }
  if (c->results) {                  /* every value, nil, err included: the caller decides */
    char err[256];
    if (seri_pack(co, base, nres, c->results, err, sizeof err) != 0) {
      c->results->len = 0;
      free(c->error);
      c->failed = c->fatal = 1;
      c->error = xstrdup(err);
    }
  } else if (!c->failed && c->result_json) {
    char err[256];
    if (nres < 1) lua_pushnil(co);
    if (json_encode(co, base, c->result_json, err, sizeof err) != 0) {
      c->failed = c->fatal = 1;
      c->error = xstrdup(err);
    }
  }
  c->done = 1;
  p->main_task = NULL;
  task_free(p, t);
}

/* The main task of an inline call raised: the call fails, the state stays usable. */
static void call_raised(struct proc *p, struct task *t) {
  lua_State *co = t->co;
  struct call *c = p->call;
  c->failed = c->done = c->raised = 1;
  c->fatal = not_retryable(co, -1);
  if (c->results) {                  /* the raised value as it is (an error object keeps its kind) */
    char err[8];
    if (seri_pack(co, lua_gettop(co), 1, c->results, err, sizeof err) != 0) c->results->len = 0;
  }
  error_to_text(p, co);
  if (errors_is(co, -1)) c->error = xstrdup(errors_message(co, -1));
  else c->error = xstrdup(luaL_tolstring(co, -1, NULL));
  if (log_enabled(LOG_DEBUG)) {
    luaL_traceback(p->L, co, NULL, 0);
    log_debug("%s: %s\n%s", p->pidstr, c->error, lua_tostring(p->L, -1));
    lua_pop(p->L, 1);
  }
  p->main_task = NULL;
  task_discard(p, t);
}

static void run_one(struct proc *p, struct task *t) {
  int nres = 0;
  t->state = T_RUNNING;
  int st = resume(p, t, &nres);
  t->nargs = 0;
  if (st == LUA_YIELD) {
    lua_pop(t->co, nres);
    if (t->state == T_RUNNING) task_ready(t);   /* a plain coroutine.yield: runs again later */
  } else if (st == LUA_OK) {
    if (t->is_main && p->call) call_returned(p, t, nres);
    else if (t->is_main) finish_main(p, t->co, nres);
    else task_free(p, t);
  } else if (t->is_main && p->call) {
    call_raised(p, t);
  } else {
    task_failed(p, t);
  }
}

int task_run_ready(struct proc *p, int budget) {
  int ran = 0;
  while (ran < budget && !p->done && !p->preempted && p->ready_head) {
    struct task *t = p->ready_head;
    p->ready_head = t->next;
    if (!p->ready_head) p->ready_tail = NULL;
    t->next = NULL;
    run_one(p, t);
    ran++;
  }
  return ran;
}

/* ---- sessions ------------------------------------------------------------------- */

struct pending *pending_new(struct proc *p, int kind) {
  struct pending *pe = xcalloc(1, sizeof *pe);
  pe->session = ++p->next_session;
  pe->kind = (uint8_t)kind;
  pe->ref = LUA_NOREF;
  timer_init(&pe->tm);
  hmap_put(&p->sessions, pe->session, pe);
  return pe;
}

struct pending *pending_new_io(struct proc *p, struct task *t, const struct io_ops *ops, void *req) {
  struct pending *pe = pending_new(p, PEND_IO);
  pe->t = t;
  pe->io = ops;
  pe->io_req = req;
  return pe;
}

void pending_free(struct proc *p, struct pending *pe) {
  hmap_del(&p->sessions, pe->session);
  if (pe->io) pe->io->cancel(pe->io_req);       /* the waiter left before the completion */
  timer_cancel(p->rt->timers, &pe->tm);
  if (pe->ref != LUA_NOREF && p->L) luaL_unref(p->L, LUA_REGISTRYINDEX, pe->ref);
  free(pe);
}

static void timer_fired(void *ud, uint64_t pid, uint64_t session) {
  struct msg *m = msg_new(MK_TIMER, 0, "", 0, NULL, 0);
  m->token = session;
  proc_post(ud, pid, m, NULL);
}

void pending_arm_at(struct proc *p, struct pending *pe, int64_t deadline_ns) {
  timer_add(p->rt->timers, &pe->tm, deadline_ns, timer_fired, p->rt, p->pid, pe->session);
}

void pending_arm_timer(struct proc *p, struct pending *pe, int64_t delay_ns) {
  pending_arm_at(p, pe, clock_mono_ns() + delay_ns);
}
