/*
** jobrun.c — see jobrun.h.
*/
#include "jobrun.h"
#include "runtime/funcpool.h"
#include "jobq.h"
#include "base/log.h"
#include "runtime/call.h"
#include "runtime/task.h"
#include "runtime/worker.h"
#include "base/retire.h"
#include "base/util.h"
#include "base/thstack.h"
#include "runtime/watchdog.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct runner {
  struct consumer *c;
  pthread_t thread;
  struct worker w;            /* watchdog slot */
  _Atomic(struct funcpool *) hazard;   /* the pool this runner's job uses, or NULL */
  int started;
};


struct consumer {
  char *id;
  struct jobq *q;
  _Atomic(struct funcpool *) fp;      /* read through a runner's hazard pointer */
  void (*release)(void *ud);           /* how to release the current pool (NULL: not ours) */
  void *release_ud;
  pthread_mutex_t lock;                /* guards the retired list */
  struct retire_list retired;          /* pools replaced by reloads */
  struct watchdog *watchdog;
  struct runner *runners;
  int n;
};

static void wake_call(void *arg) { proc_call_wake(arg); }

/* The outcome of a finished call. A cancel flag decides first: 1 (a client) → cancelled,
** 2 (shutdown) → back to the queue, whatever error the interruption produced. */
static enum job_outcome outcome_of(struct job *j, const struct call *c) {
  if (!c->failed) return JO_OK;
  int flag = atomic_load(job_cancel_flag(j));
  if (flag == 1) return JO_CANCELLED;
  if (flag == 2) return JO_REQUEUE;
  if (c->interrupted) return JO_TIMEOUT;
  return c->fatal ? JO_FATAL : JO_ERROR;
}

static void run_job(struct runner *r, struct job *j) {
  struct consumer *cs = r->c;
  struct jobctx jc = {cs->q, j};
  struct buf result;
  buf_init(&result);
  size_t len;
  const char *data = job_data(j, &len);
  struct call c = {.kind = CALL_JOB, .ctx = &jc, .deadline = job_deadline(j), .arg_json = data,
                   .arg_len = len, .result_json = &result, .cancel = job_cancel_flag(j)};
  job_on_cancel(cs->q, j, wake_call, &c);
  struct funcpool *fp;
  do {                        /* publish the pool we use before trusting it (consumer_reclaim) */
    fp = atomic_load(&cs->fp);
    atomic_store(&r->hazard, fp);
  } while (fp != atomic_load(&cs->fp));
  funcpool_call(fp, &r->w, &c);
  atomic_store(&r->hazard, NULL);
  enum job_outcome o = outcome_of(j, &c);
  if (o == JO_OK) {
    jobq_finish(cs->q, j, o, result.len ? result.data : NULL, result.len);
  } else {
    const char *msg = o == JO_TIMEOUT ? "timed out: the job ran longer than its queue's timeout"
                      : c.error ? c.error : "failed";
    log_debug("%s: job %s attempt %d: %s", cs->id, job_id(j), job_attempt(j), msg);
    jobq_finish(cs->q, j, o, msg, strlen(msg));
  }
  free(c.error);
  buf_free(&result);
}

#define CLAIM_BATCH 16

static void *runner_main(void *arg) {
  struct runner *r = arg;
  struct jobq *q = r->c->q;
  struct job *batch[CLAIM_BATCH];
  size_t n;
  while ((n = jobq_claim_batch(q, 0, batch, CLAIM_BATCH))) {
    for (size_t i = 0; i < n; i++) {
      int flag = job_begin(q, batch[i]);
      if (flag == 0) { run_job(r, batch[i]); continue; }
      static const char msg[] = "cancelled before it ran";
      jobq_finish(q, batch[i], flag == 1 ? JO_CANCELLED : JO_REQUEUE, msg, sizeof msg - 1);
    }
  }
  return NULL;
}

struct consumer *consumer_start(const char *id, struct jobq *q, struct funcpool *fp,
                                int concurrency, char *err, size_t errlen) {
  struct consumer *c = xcalloc(1, sizeof *c);
  c->id = xstrdup(id);
  c->q = q;
  atomic_store(&c->fp, fp);
  pthread_mutex_init(&c->lock, NULL);
  c->n = concurrency > 0 ? concurrency : 1;
  c->runners = xcalloc((size_t)c->n, sizeof *c->runners);
  c->watchdog = watchdog_new(task_interrupt_worker);
  int started = 0;
  for (int i = 0; i < c->n; i++) {
    struct runner *r = &c->runners[i];
    r->c = c;
    r->w.id = i;
    watchdog_add(c->watchdog, &r->w);
    r->started = thstack_create(&r->thread, runner_main, r) == 0;
    started += r->started;
  }
  if (!started) {
    snprintf(err, errlen, "%s: cannot start worker threads", id);
    consumer_join(c);
    return NULL;
  }
  return c;
}

void consumer_swap_pool(struct consumer *c, struct funcpool *fp, void (*release)(void *ud), void *ud) {
  pthread_mutex_lock(&c->lock);
  retire_push(&c->retired, atomic_load(&c->fp), c->release, c->release_ud);
  atomic_store(&c->fp, fp);
  c->release = release;
  c->release_ud = ud;
  pthread_mutex_unlock(&c->lock);
  consumer_reclaim(c);
}

static int pool_in_use(void *ctx, const void *fp) {
  const struct consumer *c = ctx;
  for (int i = 0; i < c->n; i++)
    if (atomic_load(&c->runners[i].hazard) == fp) return 1;
  return 0;
}

void consumer_reclaim(struct consumer *c) {
  pthread_mutex_lock(&c->lock);
  retire_sweep(&c->retired, pool_in_use, c);
  pthread_mutex_unlock(&c->lock);
}

const char *consumer_id(const struct consumer *c) { return c->id; }

void consumer_own_pool(struct consumer *c, void (*release)(void *ud), void *ud) {
  pthread_mutex_lock(&c->lock);
  c->release = release;
  c->release_ud = ud;
  pthread_mutex_unlock(&c->lock);
}

void consumer_join(struct consumer *c) {
  if (!c) return;
  for (int i = 0; i < c->n; i++)
    if (c->runners[i].started) pthread_join(c->runners[i].thread, NULL);
  consumer_reclaim(c);                            /* no job runs any more: frees all */
  if (c->release) c->release(c->release_ud);
  pthread_mutex_destroy(&c->lock);
  watchdog_free(c->watchdog);
  free(c->runners);
  free(c->id);
  free(c);
}
