/*
** jobq_persist.c — how a queue's changes reach its store (jobq_impl.h): rows queued on the
** store's writer with q->lock held, the commit callback that makes a change visible
** (pub_state), waiters for callers that must see a commit, and the rewrite after an outage.
** Threads: callers hold q->lock, except jobq_waiter_wait (after unlocking); committed() and
** jobq_store_event run on the store's writer thread and take q->lock themselves.
*/
#include "jobq_impl.h"
#include "jobstore.h"

#include <stdlib.h>

/* ---- persistence ------------------------------------------------------------------ */

struct commit {
  struct jobq *q;
  struct job *j;
  int state;
  struct waiter *w;
  struct job **then;               /* begun jobs shown running once this commit is reported */
  size_t nthen, capthen;
};

static void committed(void *arg, int ok) {
  struct commit *c = arg;
  pthread_mutex_lock(&c->q->lock);
  if (ok) c->j->pub_state = c->state;
  c->j->unsaved = !ok;
  c->j->inflight--;
  for (size_t i = 0; i < c->nthen; i++) c->then[i]->pub_state = JS_RUNNING;
  if (c->q->last_commit == c) c->q->last_commit = NULL;
  pthread_mutex_unlock(&c->q->lock);
  free(c->then);
  if (c->w) jobq_waiter_signal(c->w, ok);
  free(c);
}

static void to_row(const struct jobq *q, const struct job *j, struct job_row *r) {
  *r = (struct job_row){
    .seq = j->seq, .id = j->id, .queue = q->name, .state = j->state, .priority = j->priority,
    .attempt = j->attempt, .max_retries = j->max_retries, .recoveries = j->recoveries,
    .run_at = j->run_at, .created_at = j->created_at, .started_at = j->started_at,
    .finished_at = j->finished_at, .data = j->data, .result = j->result,
    .errors = j->errors.len ? j->errors.data : NULL, .progress = j->progress,
    .idem_key = j->idem_key, .headers = j->headers};
}

/* Queues row r of job j (q->lock held); once committed the job shows its current state. */
static void put_row(struct jobq *q, struct job *j, const struct job_row *r, struct waiter *w) {
  struct commit *c = xmalloc(sizeof *c);
  *c = (struct commit){q, j, j->state, w, NULL, 0, 0};
  q->last_commit = c;
  j->inflight++;
  jobstore_put(q->store, r, committed, c);
}

/* Writes the job's current row (q->lock held). With w, the caller waits on it after
** unlocking. Without a store the change is visible at once. */
void jobq_persist(struct jobq *q, struct job *j, struct waiter *w) {
  struct job_row r;
  if (!q->store) {
    j->pub_state = j->state;
    if (w) w->done = w->ok = 1;
    return;
  }
  to_row(q, j, &r);
  put_row(q, j, &r, w);
}

/* A claim's reservation row (q->lock held): on disk the job is running with its next
** attempt, so a crash from here on counts that attempt; in memory and on screen it stays as
** it is until job_begin. Without a store there is nothing to write. */
void jobq_persist_reserved(struct jobq *q, struct job *j, int64_t now, struct waiter *w) {
  struct job_row r;
  if (!q->store) {
    if (w) w->done = w->ok = 1;
    return;
  }
  to_row(q, j, &r);
  r.state = JS_RUNNING;
  r.attempt = j->attempt + 1;
  r.started_at = now;
  put_row(q, j, &r, w);
}

/* The store's health events (writer thread, no store lock held): after a reopen every job,
** or every job whose last write failed, is written again (a job not yet visible has its own
** put pending, or is a failed publish about to be forgotten); once on disk, claimers waiting
** out the outage are woken. */
void jobq_store_event(void *arg, int event) {
  struct jobq *q = arg;
  pthread_mutex_lock(&q->lock);
  for (size_t i = 0; event != JOBSTORE_HEALTHY && i < q->nall; i++) {
    struct job *j = q->all[i];
    if (j->pub_state >= 0 && (event == JOBSTORE_REWRITE_ALL || j->unsaved)) jobq_persist(q, j, NULL);
  }
  if (event == JOBSTORE_HEALTHY) pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->lock);
}

/* jobq_persist() of n new jobs in one transaction (all or none); w is told with the last. */
void jobq_persist_all(struct jobq *q, struct job **js, size_t n, struct waiter *w) {
  if (!q->store) {
    for (size_t i = 0; i < n; i++) jobq_persist(q, js[i], i + 1 == n ? w : NULL);
    return;
  }
  struct job_row *rows = xmalloc(n * sizeof *rows);
  void **args = xmalloc(n * sizeof *args);
  for (size_t i = 0; i < n; i++) {
    struct commit *c = xmalloc(sizeof *c);
    *c = (struct commit){q, js[i], js[i]->state, i + 1 == n ? w : NULL};
    to_row(q, js[i], &rows[i]);
    js[i]->inflight++;
    args[i] = c;
  }
  jobstore_put_all(q->store, rows, n, committed, args);
  free(rows);
  free(args);
}

void jobq_waiter_init(struct waiter *w) {
  pthread_mutex_init(&w->m, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->done = w->ok = 0;
}

void jobq_waiter_signal(struct waiter *w, int ok) {
  pthread_mutex_lock(&w->m);
  w->done = 1;
  w->ok = ok;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->m);
}

int jobq_waiter_wait(struct waiter *w) {
  pthread_mutex_lock(&w->m);
  while (!w->done) pthread_cond_wait(&w->cv, &w->m);
  pthread_mutex_unlock(&w->m);
  pthread_mutex_destroy(&w->m);
  pthread_cond_destroy(&w->cv);
  return w->ok;
}

/* A begun job is shown running (q->lock held) once every commit put so far is reported —
** the runner's previous job among them, so that one is shown finished first and jobs shown
** running never outnumber the runners. Its reservation already made the attempt durable, so
** nothing is written: it rides on the last commit pending, if any. */
void jobq_show_running(struct jobq *q, struct job *j) {
  struct commit *c = q->last_commit;
  if (!c) { j->pub_state = JS_RUNNING; return; }
  if (c->nthen == c->capthen) {
    c->capthen = c->capthen ? c->capthen * 2 : 4;
    c->then = xrealloc(c->then, c->capthen * sizeof *c->then);
  }
  c->then[c->nthen++] = j;
}
