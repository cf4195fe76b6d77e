/*
** funcpool.c — see funcpool.h.
*/
#include "funcpool.h"
#include "registry/code.h"
#include "base/log.h"
#include "call.h"
#include "proc.h"
#include "registry/registry.h"
#include "base/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct funcpool {
  struct rt *rt;
  const struct code *code;
  struct sched *bg;
  pthread_mutex_t lock;
  pthread_cond_t cv;          /* a state came back (or a slot freed) */
  struct proc **idle;         /* states ready for a call (a stack: the warmest first) */
  size_t nidle, cap;
  size_t live, max;           /* states owned by the pool (idle + in calls), limit */
  size_t peak;                /* most states ever live at once */
  uint64_t waits;             /* calls that found the pool at its limit */
  int quiet;                  /* no summary when freed (pools a reload replaced) */
  int warned_no_bg;
};

struct funcpool *funcpool_new(struct rt *rt, const struct code *code, struct sched *bg, size_t max) {
  struct funcpool *fp = xcalloc(1, sizeof *fp);
  fp->rt = rt;
  fp->code = code;
  fp->bg = bg;
  fp->max = max ? max : 100;
  fp->cap = 16;
  fp->idle = xcalloc(fp->cap, sizeof *fp->idle);
  pthread_mutex_init(&fp->lock, NULL);
  cond_init_monotonic(&fp->cv);          /* timed waits use the monotonic clock */
  return fp;
}

static int cancelled(const struct call *c) { return c->cancel && atomic_load(c->cancel); }

/* Takes an idle state or a slot to make one: 0 with the state in *out (NULL: a slot is held
** to make one), or -1 when the call's deadline passed or it was cancelled while it waited at
** the limit. Nobody signals the pool when a call is cancelled, so a call with a cancel flag
** looks at it every 50 ms while it waits. */
static int take(struct funcpool *fp, const struct call *c, struct proc **out) {
  int rc = 0;
  pthread_mutex_lock(&fp->lock);
  if (!fp->nidle && fp->live >= fp->max) fp->waits++;
  while (!fp->nidle && fp->live >= fp->max) {
    int64_t now = clock_mono_ns();
    if (cancelled(c) || (c->deadline && now >= c->deadline)) { rc = -1; break; }
    if (!c->deadline && !c->cancel) { pthread_cond_wait(&fp->cv, &fp->lock); continue; }
    int64_t until = c->cancel ? now + 50 * NS_PER_MS : c->deadline;
    if (c->deadline && c->deadline < until) until = c->deadline;
    struct timespec ts = ns_timespec(until);
    pthread_cond_timedwait(&fp->cv, &fp->lock, &ts);
  }
  struct proc *p = rc || !fp->nidle ? NULL : fp->idle[--fp->nidle];
  if (!rc && !p && ++fp->live > fp->peak) fp->peak = fp->live;
  pthread_mutex_unlock(&fp->lock);
  *out = p;
  return rc;
}

static void give_back(struct funcpool *fp, struct proc *p) {
  pthread_mutex_lock(&fp->lock);
  if (p) {
    if (fp->nidle == fp->cap) fp->idle = xrealloc(fp->idle, (fp->cap *= 2) * sizeof *fp->idle);
    fp->idle[fp->nidle++] = p;
  } else {
    fp->live--;                               /* the state left the pool */
  }
  pthread_cond_signal(&fp->cv);
  pthread_mutex_unlock(&fp->lock);
}

/* After a call: back to the pool, off to the process host, or closed. */
static void settle(struct funcpool *fp, struct proc *p) {
  if (!p->done && !proc_live_tasks(p)) { give_back(fp, p); return; }
  if (!p->done && fp->bg) {
    proc_detach(p, fp->bg);
    give_back(fp, NULL);
    return;
  }
  if (!p->done && !fp->warned_no_bg) {
    fp->warned_no_bg = 1;
    log_warn("%s: coroutines left running by a call are cancelled: no process.host to run them "
             "(start one, or set pool.host)", fp->code->e->id);
  }
  proc_free_function(p);
  give_back(fp, NULL);
}

int funcpool_call(struct funcpool *fp, struct worker *w, struct call *c) {
  struct proc *p;
  if (take(fp, c, &p) != 0) {                /* ended like a call stopped by its limits */
    c->failed = c->done = c->interrupted = 1;
    c->error = xstrdup(cancelled(c) ? "cancelled" : "no state of the function's pool came free in time");
    return 0;
  }
  if (!p) {
    char err[512];
    p = proc_new_function(fp->rt, fp->code, w, c, err, sizeof err);
    if (!p) {
      give_back(fp, NULL);
      c->failed = c->done = 1;
      c->error = xstrdup(err);
      return -1;
    }
  }
  proc_call_inline(p, w, c);
  settle(fp, p);
  return 0;
}

void funcpool_quiet(struct funcpool *fp) { fp->quiet = 1; }

size_t funcpool_states(struct funcpool *fp) {
  pthread_mutex_lock(&fp->lock);
  size_t n = fp->live;
  pthread_mutex_unlock(&fp->lock);
  return n;
}

void funcpool_free(struct funcpool *fp) {
  if (!fp) return;
  if (fp->peak && !fp->quiet)
    log_summary("%s: at most %zu states at once (limit %zu); %llu calls waited for one",
                fp->code->e->id, fp->peak, fp->max, (unsigned long long)fp->waits);
  for (size_t i = 0; i < fp->nidle; i++) proc_free_function(fp->idle[i]);
  free(fp->idle);
  pthread_mutex_destroy(&fp->lock);
  pthread_cond_destroy(&fp->cv);
  free(fp);
}
