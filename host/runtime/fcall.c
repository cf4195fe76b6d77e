/*
** fcall.c — see fcall.h. Owner of everything here: the engine's lock (`lock`) guards the
** queue, the thread table and `stopping`; `plock` guards `cur` and `nsets` (the sets
** themselves are poolset.h's, with their own lock). A request is the
** caller's until fcall_submit, then the engine's (one call thread at a time) until its
** completion is posted, then the message's.
*/
#include "fcall.h"
#include "funcpool.h"
#include "msg.h"
#include "poolset.h"
#include "proc.h"
#include "rt.h"
#include "task.h"
#include "watchdog.h"
#include "worker.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "value/val.h"
#include "base/log.h"
#include "base/thstack.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

enum { CLAIM_WAITING, CLAIM_POSTED, CLAIM_GONE };
#define DEFAULT_THREADS 64
#define DEFAULT_QUEUE 1024

struct cthread {
  struct fcall *e;
  pthread_t th;
  struct worker w;            /* its watchdog slot */
  struct fcall_req *cur;      /* the request it runs (guarded by e->lock) */
  int used;                   /* a live thread owns the slot (e->lock) */
  int watched;                /* the slot was added to the watchdog (once: slots are reused) */
};

struct fcall {
  struct rt *rt;
  pthread_mutex_t lock;
  pthread_cond_t cv;          /* a request was queued, or stopping */
  struct fcall_req *head, *tail;
  size_t nqueued, max_queue;
  struct cthread *th;         /* nslots slots: max_threads, and room for nested overflow */
  int nslots, nthreads, max_threads, idle;
  int core;                   /* threads started at once; more only for starving requests */
  pthread_cond_t mon_cv;      /* the monitor: a request waits and no thread is idle */
  pthread_t monitor;
  int monitor_started;
  pthread_cond_t gone;        /* a thread ended (fcall_free waits for all of them) */
  int stopping;
  uint64_t calls;
  struct watchdog *wd;
  pthread_mutex_t plock;
  struct poolset *cur;        /* the current generation's pools (one reference for being
                                 current, one per call), or NULL before the first call */
  size_t nsets;               /* sets alive (the current one and replaced ones still in use) */
};

/* ---- requests -------------------------------------------------------------------- */

struct fcall_req *fcall_req_new(const char *id) {
  struct fcall_req *r = xcalloc(1, sizeof *r);
  r->id = xstrdup(id);
  buf_init(&r->args);
  buf_init(&r->ctx);
  buf_init(&r->results);
  return r;
}

void fcall_req_free(struct fcall_req *r) {
  if (!r) return;
  free(r->id);
  buf_free(&r->args);
  buf_free(&r->ctx);
  buf_free(&r->results);
  free(r->call.error);
  free(r);
}

void fcall_cancel(struct fcall_req *r) {
  atomic_store(&r->cancel, 1);
  proc_call_wake(&r->call);                 /* r lives until the claim below is settled */
  int want = CLAIM_WAITING;
  atomic_compare_exchange_strong(&r->claim, &want, CLAIM_GONE);   /* lost: the message owns r */
}

/* The call ended: post it to the waiter, or free it when the waiter left. */
static void complete(struct fcall_req *r) {
  int want = CLAIM_WAITING;
  if (atomic_compare_exchange_strong(&r->claim, &want, CLAIM_POSTED))
    proc_post(r->rt, r->pid, msg_new_io(r->session, r->ops, r), NULL);
  else
    fcall_req_free(r);
}

/* ---- pools per generation ---------------------------------------------------------- */

static void pset_unref(struct fcall *e, struct poolset *ps) {   /* plock held */
  if (poolset_unref(ps)) e->nsets--;
}

/* The pool for id in the current generation, with a reference on its set (*out), or NULL
** when no function.lua entry has that id. */
static struct funcpool *acquire(struct fcall *e, const char *id, struct poolset **out) {
  struct codeset *cs = rt_code(e->rt);
  pthread_mutex_lock(&e->plock);
  if (!e->cur || poolset_code(e->cur) != cs) {   /* a reload happened: new calls use new pools */
    struct poolset *ps = poolset_new(e->rt, cs);
    e->nsets++;
    if (e->cur) pset_unref(e, e->cur);
    e->cur = ps;
  }
  codeset_unref(cs);                          /* the set holds its own reference */
  struct poolset *ps = e->cur;
  struct funcpool *fp = poolset_get(ps, id);
  if (fp) poolset_ref(ps);
  pthread_mutex_unlock(&e->plock);
  *out = ps;
  return fp;
}

static void release(struct fcall *e, struct poolset *ps) {
  pthread_mutex_lock(&e->plock);
  pset_unref(e, ps);
  pthread_mutex_unlock(&e->plock);
}

/* ---- call threads ------------------------------------------------------------------ */

static void run(struct fcall *e, struct cthread *t, struct fcall_req *r) {
  if (atomic_load(&r->cancel)) { r->status = FC_CANCELED; return; }
  if (r->deadline && clock_mono_ns() >= r->deadline) { r->status = FC_TIMEOUT; return; }
  struct poolset *ps;
  struct funcpool *fp = acquire(e, r->id, &ps);
  if (!fp) { r->status = FC_NOT_FOUND; return; }
  struct call *c = &r->call;                   /* fields one by one: a cancel may be waking it */
  c->kind = CALL_PLAIN;
  c->deadline = r->deadline;
  c->args = r->args.len ? r->args.data : NULL;
  c->args_len = r->args.len;
  c->results = &r->results;
  c->ctx_vals = r->ctx.len ? r->ctx.data : NULL;
  c->ctx_len = r->ctx.len;
  c->cancel = &r->cancel;
  c->depth = r->depth;
  r->status = funcpool_call(fp, &t->w, c) == 0 ? FC_RAN : FC_NO_STATE;
  release(e, ps);
}

/* A thread ends when it finds nothing queued and more threads than max_threads live (it
** was started for nested calls), or when stopping. */
static void *thread_main(void *arg) {
  struct cthread *t = arg;
  struct fcall *e = t->e;
  pthread_mutex_lock(&e->lock);
  for (;;) {
    while (!e->head && !e->stopping && e->nthreads <= e->max_threads) {
      e->idle++;
      pthread_cond_wait(&e->cv, &e->lock);
      e->idle--;
    }
    if (!e->head) break;
    struct fcall_req *r = e->head;
    e->head = r->next;
    if (!e->head) e->tail = NULL;
    e->nqueued--;
    e->calls++;
    t->cur = r;
    pthread_mutex_unlock(&e->lock);
    if (e->stopping) r->status = FC_STOPPED;
    else run(e, t, r);
    pthread_mutex_lock(&e->lock);
    t->cur = NULL;                             /* fcall_free no longer wakes it */
    pthread_mutex_unlock(&e->lock);
    complete(r);
    pthread_mutex_lock(&e->lock);
  }
  t->used = 0;
  e->nthreads--;
  pthread_cond_broadcast(&e->gone);
  pthread_mutex_unlock(&e->lock);              /* touches nothing of e after this */
  return NULL;
}

/* A thread more when none is idle for the requests queued (lock held): up to core at once;
** up to max_threads when `starving` (the monitor saw the oldest request wait), or beyond for
** a nested request. 0 / -1. */
static int grow(struct fcall *e, int nested, int starving) {
  if ((size_t)e->idle >= e->nqueued) return 0;
  if (e->nthreads >= (nested ? e->nslots : starving ? e->max_threads : e->core)) {
    if (!nested && e->nthreads < e->max_threads) pthread_cond_signal(&e->mon_cv);
    return 0;
  }
  struct cthread *t = NULL;
  for (int i = 0; i < e->nslots && !t; i++)
    if (!e->th[i].used) t = &e->th[i];
  if (!t) return 0;
  t->e = e;
  t->w.id = (int)(t - e->th);
  if (!t->watched) watchdog_add(e->wd, &t->w);
  t->watched = 1;
  if (thstack_create(&t->th, thread_main, t) != 0) return -1;
  pthread_detach(t->th);
  t->used = 1;
  e->nthreads++;
  return 0;
}

int fcall_submit(struct fcall *e, struct fcall_req *r) {
  pthread_mutex_lock(&e->lock);
  int rc = FCALL_OK;
  if (e->stopping) rc = FCALL_STOPPED;
  else if (e->nqueued >= e->max_queue) rc = FCALL_BUSY;
  if (rc != FCALL_OK) { pthread_mutex_unlock(&e->lock); return rc; }
  r->next = NULL;
  if (e->tail) e->tail->next = r;
  else e->head = r;
  e->tail = r;
  e->nqueued++;
  r->queued_at = clock_mono_ns();
  if (grow(e, r->depth > 1, 0) != 0 && e->nthreads == 0) {   /* nobody would ever run it */
    e->head = e->tail = NULL;
    e->nqueued = 0;
    pthread_mutex_unlock(&e->lock);
    log_warn("funcs: cannot start a call thread");
    return FCALL_BUSY;
  }
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->lock);
  return FCALL_OK;
}

/* The monitor: while requests wait with no thread idle, it adds a thread each time the
** oldest one has waited FCALL_GROW_AFTER_NS (the busy threads are in long calls). */
static void wait_until(struct fcall *e, int64_t due) {   /* lock held */
  struct timespec ts = ns_timespec(due);
  pthread_cond_timedwait(&e->mon_cv, &e->lock, &ts);
}

static void *monitor_main(void *arg) {
  struct fcall *e = arg;
  pthread_mutex_lock(&e->lock);
  while (!e->stopping) {
    int starved = e->head && (size_t)e->idle < e->nqueued && e->nthreads < e->max_threads;
    if (!starved) { pthread_cond_wait(&e->mon_cv, &e->lock); continue; }
    int64_t due = e->head->queued_at + FCALL_GROW_AFTER_NS;
    if (clock_mono_ns() < due) { wait_until(e, due); continue; }
    if (grow(e, 0, 1) != 0) wait_until(e, clock_mono_ns() + FCALL_GROW_AFTER_NS);
    else e->head->queued_at = clock_mono_ns();   /* the next thread after one more wait */
  }
  pthread_mutex_unlock(&e->lock);
  return NULL;
}

/* ---- engine ------------------------------------------------------------------------ */

struct fcall *fcall_new(struct rt *rt, int max_threads, int max_queue) {
  struct fcall *e = xcalloc(1, sizeof *e);
  e->rt = rt;
  e->max_threads = max_threads > 0 ? max_threads : DEFAULT_THREADS;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  e->core = cpus < 2 ? 2 : (int)cpus;
  if (e->core > e->max_threads) e->core = e->max_threads;
  e->max_queue = max_queue > 0 ? (size_t)max_queue : DEFAULT_QUEUE;
  e->nslots = e->max_threads * (FCALL_MAX_DEPTH + 1);
  e->th = xcalloc((size_t)e->nslots, sizeof *e->th);
  pthread_mutex_init(&e->lock, NULL);
  pthread_cond_init(&e->gone, NULL);
  pthread_mutex_init(&e->plock, NULL);
  pthread_cond_init(&e->cv, NULL);
  cond_init_monotonic(&e->mon_cv);
  e->wd = watchdog_new(task_interrupt_worker);
  e->monitor_started = e->wd && pthread_create(&e->monitor, NULL, monitor_main, e) == 0;
  if (!e->monitor_started) {
    if (e->wd) watchdog_free(e->wd);
    free(e->th);
    free(e);
    return NULL;
  }
  return e;
}

void fcall_stats(struct fcall *e, struct fcall_stats *st) {
  pthread_mutex_lock(&e->lock);
  st->threads = e->nthreads;
  st->idle = e->idle;
  st->queued = e->nqueued;
  st->calls = e->calls;
  pthread_mutex_unlock(&e->lock);
  pthread_mutex_lock(&e->plock);
  st->pools = e->cur ? poolset_pools(e->cur) : 0;
  st->sets = e->nsets;
  pthread_mutex_unlock(&e->plock);
}

void fcall_free(struct fcall *e) {
  if (!e) return;
  pthread_mutex_lock(&e->lock);
  e->stopping = 1;
  struct fcall_req *q = e->head;
  e->head = e->tail = NULL;
  e->nqueued = 0;
  for (int i = 0; i < e->nslots; i++)
    if (e->th[i].used && e->th[i].cur) {
      atomic_store(&e->th[i].cur->cancel, 1);
      proc_call_wake(&e->th[i].cur->call);
    }
  pthread_cond_broadcast(&e->cv);
  pthread_cond_signal(&e->mon_cv);
  pthread_mutex_unlock(&e->lock);
  pthread_join(e->monitor, NULL);
  while (q) {
    struct fcall_req *next = q->next;
    q->status = FC_STOPPED;
    complete(q);
    q = next;
  }
  pthread_mutex_lock(&e->lock);
  while (e->nthreads) pthread_cond_wait(&e->gone, &e->lock);
  pthread_mutex_unlock(&e->lock);
  watchdog_free(e->wd);
  if (e->cur) pset_unref(e, e->cur);
  pthread_mutex_destroy(&e->lock);
  pthread_mutex_destroy(&e->plock);
  pthread_cond_destroy(&e->cv);
  pthread_cond_destroy(&e->gone);
  pthread_cond_destroy(&e->mon_cv);
  free(e->th);
  free(e);
}
