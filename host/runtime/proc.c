/*
** proc.c — processes: spawn, boot, one scheduling step, mailbox delivery, monitors and
** links, exit. See proc.h for the threading contract. Messages live in msg.c, tasks in
** task.c, channels in chan.c, the Lua environment in luaenv.c.
*/
#include "proc.h"
#include "call.h"
#include "msg.h"
#include "task.h"
#include "worker.h"
#include "value/json.h"
#include "registry/registry.h"
#include "chan.h"
#include "registry/code.h"
#include "value/errors.h"
#include "base/log.h"
#include "luaenv.h"
#include "rt.h"
#include "scheduler.h"
#include "value/seri.h"

#include <fnmatch.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STEP_BUDGET 256   /* task resumes per step before the process yields its worker */

/* ---- references and posting ---------------------------------------------------- */

void proc_ref(struct proc *p) { atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); }

static void proc_destroy(struct proc *p) {
  msgq_clear(&p->mailbox);
  free(p->watchers);
  free(p->links);
  free(p->args);
  free(p->exit_error);
  free(p->exit_text);
  buf_free(&p->exit_result);
  buf_free(&p->scratch);
  pthread_mutex_destroy(&p->lock);
  if (p->is_function) pthread_cond_destroy(&p->cv);
  free(p);
}

void proc_unref(struct proc *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) proc_destroy(p);
}

size_t proc_queued(struct proc *p) {
  pthread_mutex_lock(&p->lock);
  size_t n = p->mailbox.n;
  pthread_mutex_unlock(&p->lock);
  return n + atomic_load_explicit(&p->fed, memory_order_relaxed);
}

/* Appends m under the lock; returns 1 if the process must be handed to its scheduler. */
static int mailbox_put(struct proc *p, struct msg *m) {
  pthread_mutex_lock(&p->lock);
  if (p->state == PS_DONE) {
    pthread_mutex_unlock(&p->lock);
    msg_free(m);
    return -1;
  }
  msgq_push(&p->mailbox, m);
  int wake = p->state == PS_IDLE;
  if (wake) p->state = PS_QUEUED;
  else if (p->state == PS_INLINE) pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->lock);
  return wake;
}

int proc_deliver(struct proc *p, struct msg *m, struct proc *waker) {
  if (m->kind == MK_KILL) atomic_store(&p->kill, 1);   /* reaches a busy loop via the hook */
  int rc = mailbox_put(p, m);
  if (rc == 1) sched_push(p->sched, p, waker);
  return rc < 0 ? -1 : 0;
}

int proc_post(struct rt *rt, uint64_t pid, struct msg *m, struct proc *waker) {
  struct proc *p = rt_pid_get(rt, pid);
  if (!p) { msg_free(m); return -1; }
  int rc = proc_deliver(p, m, waker);
  proc_unref(p);
  return rc;
}

/* ---- monitors and links ----------------------------------------------------------- */

static void add_watcher_locked(struct proc *p, const struct watcher *w) {
  if (p->nwatchers == p->capwatchers) {
    p->capwatchers = p->capwatchers ? p->capwatchers * 2 : 4;
    p->watchers = xrealloc(p->watchers, p->capwatchers * sizeof *p->watchers);
  }
  p->watchers[p->nwatchers++] = *w;
}

static void add_link_locked(struct proc *p, uint64_t other) {
  for (size_t i = 0; i < p->nlinks; i++)
    if (p->links[i] == other) return;
  if (p->nlinks == p->caplinks) {
    p->caplinks = p->caplinks ? p->caplinks * 2 : 4;
    p->links = xrealloc(p->links, p->caplinks * sizeof *p->links);
  }
  p->links[p->nlinks++] = other;
}

/* Runs fn on the live process pid under its lock. -1 if it is gone. */
static int with_locked(struct rt *rt, uint64_t pid, void (*fn)(struct proc *, const void *),
                       const void *arg) {
  struct proc *p = rt_pid_get(rt, pid);
  if (!p) return -1;
  pthread_mutex_lock(&p->lock);
  int alive = p->state != PS_DONE;
  if (alive) fn(p, arg);
  pthread_mutex_unlock(&p->lock);
  proc_unref(p);
  return alive ? 0 : -1;
}

static void do_watch(struct proc *p, const void *w) { add_watcher_locked(p, w); }
static void do_link(struct proc *p, const void *other) { add_link_locked(p, *(const uint64_t *)other); }

static void do_unwatch(struct proc *p, const void *arg) {
  uint64_t pid = *(const uint64_t *)arg;
  for (size_t i = 0; i < p->nwatchers; i++)
    if (p->watchers[i].pid == pid && !p->watchers[i].fn) {
      p->watchers[i] = p->watchers[--p->nwatchers];
      return;
    }
}

static void do_unlink(struct proc *p, const void *arg) {
  uint64_t other = *(const uint64_t *)arg;
  for (size_t i = 0; i < p->nlinks; i++)
    if (p->links[i] == other) { p->links[i] = p->links[--p->nlinks]; return; }
}

int proc_watch(struct rt *rt, uint64_t pid, const struct watcher *w) {
  return with_locked(rt, pid, do_watch, w);
}

int proc_unwatch(struct rt *rt, uint64_t pid, uint64_t watcher_pid) {
  return with_locked(rt, pid, do_unwatch, &watcher_pid);
}

int proc_link(struct rt *rt, uint64_t pid, uint64_t other) {
  if (with_locked(rt, pid, do_link, &other) != 0) return -1;
  if (with_locked(rt, other, do_link, &pid) != 0) {
    with_locked(rt, pid, do_unlink, &other);
    return -1;
  }
  return 0;
}

int proc_unlink(struct rt *rt, uint64_t pid, uint64_t other) {
  with_locked(rt, pid, do_unlink, &other);
  with_locked(rt, other, do_unlink, &pid);
  return 0;
}

/* ---- spawn ------------------------------------------------------------------------ */

uint64_t proc_spawn(struct rt *rt, struct sched *s, const struct code *code,
                    const struct spawn_opts *o) {
  if (sched_closed(s)) return 0;
  struct proc *p = xcalloc(1, sizeof *p);
  p->pid = rt_next_pid(rt);
  rt_pid_format(p->pidstr, sizeof p->pidstr, sched_name(s), p->pid);
  p->rt = rt;
  p->sched = s;
  p->host_name = sched_name(s);
  p->code = code;
  codeset_ref(code->set);
  atomic_store(&p->refs, 1);                 /* the pid table's reference */
  pthread_mutex_init(&p->lock, NULL);
  p->state = PS_QUEUED;
  p->terminal = o->terminal;
  p->mem_limit = rt->proc_mem_limit;
  if (o->args_len) {
    p->args = xmalloc(o->args_len);
    memcpy(p->args, o->args, o->args_len);
    p->args_len = o->args_len;
  }
  if (o->monitor_by) add_watcher_locked(p, &(struct watcher){.pid = o->monitor_by});
  if (o->on_exit) add_watcher_locked(p, &(struct watcher){.fn = o->on_exit, .ud = o->on_exit_ud});
  if (o->link_with) add_link_locked(p, o->link_with);
  hmap_init(&p->sessions);
  buf_init(&p->exit_result);
  sched_proc_added(s);
  rt_pid_add(rt, p);
  if (o->link_with) with_locked(rt, o->link_with, do_link, &p->pid);
  uint64_t pid = p->pid;
  sched_push(s, p, o->spawner);              /* p may run (and end) from here on */
  return pid;
}

/* ---- boot: build the state, run the chunk, start main ---------------------------------- */

static int push_entry_function(struct proc *p) {
  lua_State *L = p->L;
  if (code_load(L, p->code) != 0) return -1;
  task_watch_begin(p->worker, L);
  int rc = lua_pcall(L, 0, 1, 0);
  task_watch_end(p->worker);
  if (rc != LUA_OK) return -1;
  if (lua_isfunction(L, -1)) return 0;
  const char *method = p->code->method ? p->code->method : "main";
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, method);
    lua_remove(L, -2);
    if (lua_isfunction(L, -1)) return 0;
  }
  lua_pop(L, 1);
  lua_pushfstring(L, "%s: the chunk must return a function or a table with a function '%s'",
                  p->code->e->id, method);
  return -1;
}

static int boot(struct proc *p) {
  p->L = luaenv_new(p);
  if (!p->L) { proc_fail(p, "cannot create a Lua state"); return -1; }
  if (push_entry_function(p) != 0) {
    proc_fail(p, "%s", lua_tostring(p->L, -1));
    lua_settop(p->L, 0);
    return -1;
  }
  struct task *t = task_new(p, lua_gettop(p->L), p->L);
  lua_pop(p->L, 1);
  t->is_main = 1;
  p->main_task = t;
  int n = p->args_len ? seri_unpack(t->co, p->args, p->args_len) : 0;
  free(p->args);
  p->args = NULL;
  if (n < 0) { proc_fail(p, "corrupt spawn arguments"); return -1; }
  t->nargs = n;
  task_ready(t);
  return 0;
}

/* ---- delivery ------------------------------------------------------------------------ */

static void feed_deliver(struct proc *p, struct feed *f, struct msg *m) {
  msgq_push(&f->q, m);
  proc_fed(p, 1);
  if (f->ch) chan_pump(p->L, f->ch);
}

static void deliver_timer(struct proc *p, struct msg *m) {
  struct pending *pe = hmap_get(&p->sessions, m->token);
  free(m);
  if (!pe) return;                            /* stale: cancelled or its task died */
  if (pe->kind == PEND_IO) {                  /* an engine's wait timed out (io_ops.expire) */
    struct task *t = pe->t;
    const struct io_ops *ops = pe->io;
    if (!t || !ops || !ops->expire) return;
    t->pend = NULL;
    pending_free(p, pe);                      /* cancels the request */
    task_wake(t, ops->expire(t->co));
    return;
  }
  if (pe->kind == PEND_SLEEP) {
    struct task *t = pe->t;
    t->pend = NULL;
    pending_free(p, pe);
    task_wake(t, 0);
  } else {                                   /* PEND_AFTER, PEND_TICKER */
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, pe->ref);
    lua_pushinteger(p->L, (lua_Integer)clock_wall_ns());
    chan_offer(p->L, -2);                     /* a tick nobody took yet is dropped, as in Go */
    lua_pop(p->L, 1);
    if (pe->kind == PEND_TICKER) pending_arm_at(p, pe, pe->tm.deadline + pe->period);
    else pending_free(p, pe);
  }
}

/* An engine's completion: the waiting task gets the results (push), or nobody waits any
** more (its session was freed, which already cancelled it) and the request is dropped. */
static void deliver_io(struct proc *p, struct msg *m) {
  struct pending *pe = hmap_get(&p->sessions, m->token);
  if (!pe || pe->kind != PEND_IO) { msg_free(m); return; }
  struct io_done d;
  memcpy(&d, msg_body(m), sizeof d);
  free(m);                                    /* req is now ours, not the message's */
  struct task *t = pe->t;
  pe->io = NULL;                              /* delivered: pending_free must not cancel */
  if (!t) {                                   /* nobody parked: the anchored object records it */
    int top = lua_gettop(p->L);
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, pe->ref);
    d.ops->settle(p->L, d.ops->push(p->L, d.req));
    lua_settop(p->L, top);
    pending_free(p, pe);
    return;
  }
  t->pend = NULL;
  pending_free(p, pe);
  task_wake(t, d.ops->push(t->co, d.req));
}

static void deliver_line(struct proc *p, struct msg *m) {
  if (m->kind == MK_EOF) { p->stdin_eof = 1; free(m); }
  else msgq_push(&p->lines, m);
  struct task *t = p->line_waiter;
  if (!t) return;
  p->line_waiter = NULL;
  struct msg *line = msgq_pop(&p->lines);
  if (line) {
    lua_pushlstring(t->co, msg_topic(line), line->topic_len);
    free(line);
    task_wake(t, 1);
  } else {
    lua_pushnil(t->co);
    errors_push(t->co, EK_UNAVAILABLE, "end of input");
    task_wake(t, 2);
  }
}

static void deliver(struct proc *p, struct msg *m) {
  switch (m->kind) {
  case MK_USER: feed_deliver(p, proc_route(p, msg_topic(m)), m); break;
  case MK_EXIT:
  case MK_CANCEL: feed_deliver(p, &p->events, m); break;
  case MK_LINK_DOWN:
    if (p->trap_links) feed_deliver(p, &p->events, m);
    else {
      char pid[128];
      proc_fail(p, "linked process %s failed", rt_pid_format(pid, sizeof pid, m->from_host, m->from));
      free(m);
    }
    break;
  case MK_TIMER: deliver_timer(p, m); break;
  case MK_LINE:
  case MK_EOF: deliver_line(p, m); break;
  case MK_KILL:
    proc_fail(p, "%s", msg_topic(m));
    free(m);
    break;
  case MK_IO: deliver_io(p, m); break;
  default: msg_free(m);
  }
}

/* Takes the whole mailbox; `running` also marks the process RUNNING (step start). */
struct feed *proc_route(struct proc *p, const char *topic) {
  for (size_t i = 0; i < p->nlisteners; i++) {
    struct listener *l = p->listeners[i];
    if (l->glob ? topic[0] != '@' && fnmatch(l->pattern, topic, 0) == 0 : strcmp(l->pattern, topic) == 0)
      return &l->feed;
  }
  return &p->inbox;
}

/* A message for a process that is ending: dropped. A completion whose session is still
** pending first detaches it (pe->io = NULL), because the message owns the request now:
** dropping frees it, so release_waits must not call cancel on it afterwards. */
static void drop_late(struct proc *p, struct msg *m) {
  struct pending *pe = m->kind == MK_IO ? hmap_get(&p->sessions, m->token) : NULL;
  if (pe && pe->kind == PEND_IO) pe->io = NULL;
  msg_free(m);
}

static void drain_mailbox(struct proc *p, int running) {
  pthread_mutex_lock(&p->lock);
  if (running) p->state = PS_RUNNING;
  struct msgq q = p->mailbox;
  p->mailbox = (struct msgq){0};
  pthread_mutex_unlock(&p->lock);
  struct msg *m;
  while ((m = msgq_pop(&q))) {
    if (p->done) { drop_late(p, m); continue; }
    deliver(p, m);
  }
}

/* ---- failure and exit --------------------------------------------------------------- */

void proc_fail(struct proc *p, const char *fmt, ...) {
  if (p->done) return;
  va_list ap;
  va_start(ap, fmt);
  p->exit_error = xvasprintf(fmt, ap);
  va_end(ap);
  p->done = 1;
  p->exit_failed = 1;
  p->exit_code = 1;
}

/* Packs (nil, error) for the EXIT event when the process failed. Uses p->L if it exists. */
static void pack_failure(struct proc *p) {
  buf_reset(&p->exit_result);
  lua_State *L = p->L ? p->L : luaL_newstate();
  int top = lua_gettop(L);
  lua_pushnil(L);
  errors_push(L, EK_UNKNOWN, "%s", p->exit_error ? p->exit_error : "failed");
  char err[128];
  seri_pack(L, top + 1, 2, &p->exit_result, err, sizeof err);
  lua_settop(L, top);
  if (L != p->L) lua_close(L);
}

static void notify_watchers(struct proc *p, struct watcher *ws, size_t n, uint64_t *links,
                            size_t nlinks) {
  struct exit_info info = {
    .pid = p->pid, .failed = p->exit_failed, .error = p->exit_error,
    .canceled = p->exit_failed && p->exit_error && strcmp(p->exit_error, "terminated") == 0,
    .exit_code = p->exit_code, .out_text = p->exit_text,
  };
  for (size_t i = 0; i < n; i++) {
    if (ws[i].fn) { ws[i].fn(ws[i].ud, &info); continue; }
    struct msg *m = msg_new(MK_EXIT, p->pid, "", 0, p->exit_result.data, p->exit_result.len);
    m->from_host = p->host_name;
    m->at = clock_wall_ns();
    proc_post(p->rt, ws[i].pid, m, p);
  }
  for (size_t i = 0; p->exit_failed && i < nlinks; i++) {
    struct msg *m = msg_new(MK_LINK_DOWN, p->pid, "", 0, p->exit_result.data, p->exit_result.len);
    m->from_host = p->host_name;
    m->at = clock_wall_ns();
    proc_post(p->rt, links[i], m, p);
  }
  if (p->rt->proc_exited) p->rt->proc_exited(p->rt, p, &info);
}

static void release_waits(struct proc *p) {
  for (size_t i = 0; i < p->sessions.cap; i++)
    if (p->sessions.keys[i]) {
      struct pending *pe = p->sessions.vals[i];
      if (p->rt->timers) timer_cancel(p->rt->timers, &pe->tm);
      if (pe->io) pe->io->cancel(pe->io_req);   /* the engine stops work nobody awaits */
      free(pe);
    }
  hmap_free(&p->sessions);
  for (struct task *t = p->tasks; t; t = t->all_next) {
    if (t->sel) chan_sel_free(NULL, t->sel);
    t->sel = NULL;
    t->pend = NULL;
  }
}

static void close_state(struct proc *p) {
  release_waits(p);
  msgq_clear(&p->inbox.q);
  msgq_clear(&p->events.q);
  msgq_clear(&p->lines);
  if (p->L) lua_close(p->L);
  p->L = NULL;
  luaenv_cache_free(p);
  struct task *t = p->tasks;
  while (t) { struct task *n = t->all_next; free(t->sel_spare); free(t); t = n; }
  p->tasks = NULL;
  while ((t = p->free_tasks)) { p->free_tasks = t->next; free(t->sel_spare); free(t); }
  p->nfree_tasks = 0;
  for (size_t i = 0; i < p->nlisteners; i++) {
    msgq_clear(&p->listeners[i]->feed.q);
    free(p->listeners[i]->pattern);
    free(p->listeners[i]);
  }
  free(p->listeners);
  p->listeners = NULL;
  atomic_store_explicit(&p->fed, 0, memory_order_relaxed);   /* every feed is cleared */
}

/* Frees the names the process registered and its Lua state. */
static void release(struct proc *p) {
  atomic_fetch_add_explicit(&p->rt->heap_closed, p->mem, memory_order_relaxed);
  for (size_t i = 0; i < p->nnames; i++) {
    rt_name_unregister(p->rt, p->names[i], p->pid);
    free(p->names[i]);
  }
  free(p->names);
  p->names = NULL;
  p->nnames = 0;
  close_state(p);
}

static void proc_exit(struct proc *p) {
  p->mem_limit = 0;
  log_debug("process %s (%s) exits holding %zu bytes of Lua heap", p->pidstr, p->code->e->id, p->mem);
  if (p->exit_failed) {
    log_warn("process %s (%s) failed: %s", p->pidstr, p->code->e->id, p->exit_error);
    if (p->exit_result.len == 0) pack_failure(p);
  }
  release(p);
  pthread_mutex_lock(&p->lock);
  p->state = PS_DONE;
  struct watcher *ws = p->watchers; size_t nw = p->nwatchers;
  uint64_t *links = p->links; size_t nl = p->nlinks;
  p->watchers = NULL; p->nwatchers = 0;
  p->links = NULL; p->nlinks = 0;
  msgq_clear(&p->mailbox);
  pthread_mutex_unlock(&p->lock);
  rt_pid_remove(p->rt, p->pid);
  notify_watchers(p, ws, nw, links, nl);
  free(ws);
  free(links);
  struct sched *s = p->sched;
  codeset_unref(p->code->set);
  p->worker = NULL;
  proc_unref(p);                              /* the pid table's reference */
  sched_proc_removed(s);
}

/* ---- the step ----------------------------------------------------------------------- */

int proc_step(struct proc *p, struct worker *w) {
  p->worker = w;
  if (!p->L) {
    pthread_mutex_lock(&p->lock);
    p->state = PS_RUNNING;
    pthread_mutex_unlock(&p->lock);
    if (!p->done) boot(p);
  }
  for (int budget = STEP_BUDGET, first = 1; !p->done && budget > 0; first = 0) {
    drain_mailbox(p, first);
    int ran = task_run_ready(p, budget);
    if (!ran || p->preempted) break;
    budget -= ran;
  }
  p->preempted = 0;
  if (p->detached && !p->tasks) p->done = 1;    /* a detached call's last coroutine ended */
  if (p->done) { proc_exit(p); return 0; }
  p->worker = NULL;
  pthread_mutex_lock(&p->lock);
  int again = p->mailbox.head != NULL || p->ready_head != NULL;
  p->state = again ? PS_QUEUED : PS_IDLE;
  pthread_mutex_unlock(&p->lock);
  return again;
}

/* ---- function states ------------------------------------------------------------ */

struct proc *proc_new_function(struct rt *rt, const struct code *code, struct worker *w,
                               struct call *c, char *err, size_t errlen) {
  struct proc *p = xcalloc(1, sizeof *p);
  p->pid = rt_next_pid(rt);
  rt_pid_format(p->pidstr, sizeof p->pidstr, code->e->id, p->pid);
  p->rt = rt;
  p->host_name = code->e->id;
  p->code = code;
  p->is_function = 1;
  p->mem_limit = rt->proc_mem_limit;
  codeset_ref(code->set);
  atomic_store(&p->refs, 1);
  pthread_mutex_init(&p->lock, NULL);
  cond_init_monotonic(&p->cv);
  p->state = PS_INLINE;
  hmap_init(&p->sessions);
  buf_init(&p->exit_result);
  p->L = luaenv_new(p);
  p->worker = w;                     /* the watchdog and the call's limits watch the chunk */
  p->call = c;
  int rc = p->L ? push_entry_function(p) : -1;
  p->worker = NULL;
  p->call = NULL;
  if (rc != 0) {
    snprintf(err, errlen, "%s", p->L ? lua_tostring(p->L, -1) : "cannot create a Lua state");
    close_state(p);
    codeset_unref(code->set);
    proc_unref(p);
    return NULL;
  }
  p->fn_ref = luaL_ref(p->L, LUA_REGISTRYINDEX);
  lua_sethook(p->L, NULL, 0, 0);     /* a preemption hook armed during the chunk */
  /* Generational GC: a request's garbage dies young, so minor collections free it in small
  ** batches that the block cache absorbs (incremental cycles freed it in bursts that
  ** overflowed the cache into malloc). callgrind: about 1.5k fewer instructions per request. */
  lua_gc(p->L, LUA_GCGEN, 0, 0);
  rt_pid_add(rt, p);
  return p;
}

static int call_cancelled(const struct call *c) { return c->cancel && atomic_load(c->cancel); }

/* Sleeps until a post arrives, the call's deadline passes (-1) or it is cancelled (-2).
** The deadline and the cancel flag win over a post already waiting: a completion that
** arrives as the deadline passes (an http_client timeout clamped to it, on a thread that
** woke late) must not let the call go on after its time. */
static int wait_post(struct proc *p, struct call *c) {
  int rc = 0;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    if (call_cancelled(c)) { rc = -2; break; }
    if (c->deadline && clock_mono_ns() >= c->deadline) { rc = -1; break; }
    if (p->mailbox.head) break;
    if (!c->deadline) { pthread_cond_wait(&p->cv, &p->lock); continue; }
    struct timespec ts = ns_timespec(c->deadline);
    pthread_cond_timedwait(&p->cv, &p->lock, &ts);
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

/* `waking` is raised before c->proc is read, and proc_call_inline waits for it to drop after
** clearing c->proc: so the state (which may be freed right after the call) outlives the wake. */
void proc_call_wake(struct call *c) {
  atomic_fetch_add(&c->waking, 1);
  struct proc *p = atomic_load(&c->proc);
  if (p) {                            /* else not started yet: it checks the flag before waiting */
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->lock);
  }
  atomic_fetch_sub(&c->waking, 1);
}

/* Pushes the call's argument (decoded JSON) on the task's coroutine. 0, or -1 with c failed. */
static int push_arg(struct proc *p, struct task *t, struct call *c) {
  char err[256];
  if (json_decode(t->co, c->arg_json, c->arg_len, err, sizeof err) != 0) {
    c->failed = c->done = 1;
    c->error = xstrdup(err);
    return -1;
  }
  t->nargs = 1;
  return 0;
}

/* Pushes the call's packed arguments on the task's coroutine. 0, or -1 with c failed. */
static int push_args(struct task *t, struct call *c) {
  int n = lua_checkstack(t->co, 64) ? seri_unpack(t->co, c->args, c->args_len) : -1;
  if (n < 0) {
    c->failed = c->done = 1;
    c->error = xstrdup("corrupt call arguments");
    return -1;
  }
  t->nargs = n;
  return 0;
}

void proc_call_inline(struct proc *p, struct worker *w, struct call *c) {
  p->worker = w;
  p->call = c;
  atomic_store(&c->proc, p);
  lua_rawgeti(p->L, LUA_REGISTRYINDEX, p->fn_ref);
  struct task *t = task_new(p, -1, p->L);
  lua_pop(p->L, 1);
  t->is_main = 1;
  p->main_task = t;
  if ((c->arg_json ? push_arg(p, t, c) : c->args ? push_args(t, c) : 0) != 0) {
    p->main_task = NULL;
    task_drop(p, t);
  } else {
    task_ready(t);
  }
  while (!c->done && !p->done) {
    drain_mailbox(p, 0);
    if (task_run_ready(p, STEP_BUDGET)) { p->preempted = 0; continue; }
    if (c->done || p->done) break;
    int rc = wait_post(p, c);
    if (rc != 0) {
      c->failed = c->done = c->interrupted = 1;
      c->error = xstrdup(rc == -1 ? "the handler did not finish in time" : "cancelled");
      p->done = 1;                               /* its tasks are stuck: don't reuse the state */
    }
  }
  if (p->done && !c->done) {                     /* a spawned coroutine failed the state */
    c->failed = c->done = 1;
    c->error = xstrdup(p->exit_error ? p->exit_error : "failed");
  }
  for (struct call_hook *h; (h = p->call_hooks); ) {
    p->call_hooks = h->next;
    h->armed = 0;
    h->fn(p, h);
  }
  atomic_store(&c->proc, NULL);
  while (atomic_load(&c->waking)) {}           /* a wake that saw p is done with it */
  p->call = NULL;
  p->main_task = NULL;
  p->worker = NULL;
}

void proc_on_call_end(struct proc *p, struct call_hook *h) {
  if (h->armed || !p->call) return;
  h->armed = 1;
  h->next = p->call_hooks;
  p->call_hooks = h;
}

int proc_live_tasks(const struct proc *p) { return p->tasks != NULL; }

void proc_detach(struct proc *p, struct sched *s) {
  p->sched = s;
  p->detached = 1;
  sched_proc_added(s);
  pthread_mutex_lock(&p->lock);
  p->state = PS_QUEUED;
  pthread_mutex_unlock(&p->lock);
  sched_push(s, p, NULL);
}

void proc_free_function(struct proc *p) {
  p->mem_limit = 0;
  log_debug("function state %s closes holding %zu bytes of Lua heap", p->pidstr, p->mem);
  release(p);
  pthread_mutex_lock(&p->lock);
  p->state = PS_DONE;
  pthread_mutex_unlock(&p->lock);
  rt_pid_remove(p->rt, p->pid);
  codeset_unref(p->code->set);
  proc_unref(p);
}
