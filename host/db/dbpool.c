/*
** dbpool.c — the connection-thread pool of dbpool.h. Each slot's thread owns its driver
** connection; the pool lock guards queues, pins, `cur`, `interrupting`, counters, `stop`.
*/
#include "dbpool.h"
#include "base/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct slot {
  struct dbpool *P;
  void *conn;
  pthread_t th;
  int started;
  struct db_tx *tx;           /* the transaction pinning it, or NULL */
  struct db_req *qh, *qt;     /* requests of its transaction */
  struct db_req *cur;         /* the request running */
  int interrupting;           /* interrupt hooks in flight on cur (dbpool_cancel) */
};

struct dbpool {
  const struct dbpool_hooks *h;
  pthread_mutex_t lock;
  pthread_cond_t cv;
  struct db_req *qh, *qt;     /* requests for any connection */
  long queued;
  int stop;
  int n, busy;
  long long served;
  struct slot slots[];
};

static struct db_req *next_req(struct dbpool *P, struct slot *s) {
  struct db_req *r = db_reqq_pop(&s->qh, &s->qt);
  if (!r && !s->tx && (r = db_reqq_pop(&P->qh, &P->qt))) P->queued--;
  return r;
}

/* The pin follows the transaction ends (under the lock, after the request ran). */
static void track_pin(struct slot *s, const struct db_req *r) {
  if (r->op == DBO_BEGIN && r->fail == DBF_NONE && r->tx) s->tx = r->tx;
  else if (r->op == DBO_COMMIT || r->op == DBO_ROLLBACK) s->tx = NULL;
}

static void *slot_main(void *arg) {
  struct slot *s = arg;
  struct dbpool *P = s->P;
  db_mark_pool_thread();
  if (P->h->start) P->h->start(s->conn);
  pthread_mutex_lock(&P->lock);
  for (;;) {
    struct db_req *r = next_req(P, s);
    if (!r && P->stop && s->tx) {               /* nobody can end it any more */
      pthread_mutex_unlock(&P->lock);
      P->h->end_tx(s->conn);
      pthread_mutex_lock(&P->lock);
      s->tx = NULL;
      continue;
    }
    if (!r) {
      if (P->stop) break;
      pthread_cond_wait(&P->cv, &P->lock);
      continue;
    }
    int skip = atomic_load(&r->abandoned) && db_req_interruptible(r);
    if (!skip) { r->running_on = s; s->cur = r; P->busy++; }
    pthread_mutex_unlock(&P->lock);
    if (skip) db_req_fail(r, DBF_CANCELED, "sql: cancelled before it ran (its caller went away)");
    else P->h->run(s->conn, r);
    pthread_mutex_lock(&P->lock);
    while (s->interrupting) pthread_cond_wait(&P->cv, &P->lock);   /* the interrupt rule */
    if (!skip) { r->running_on = NULL; s->cur = NULL; P->busy--; track_pin(s, r); }
    P->served++;
    pthread_mutex_unlock(&P->lock);
    r->done(r);                                   /* r is its owner's again */
    pthread_mutex_lock(&P->lock);
  }
  pthread_mutex_unlock(&P->lock);
  return NULL;
}

struct dbpool *dbpool_start(const struct dbpool_hooks *h, void *const *conns, int n,
                            const char *who, char *err, size_t errlen) {
  struct dbpool *P = xcalloc(1, sizeof *P + (size_t)n * sizeof P->slots[0]);
  P->h = h;
  pthread_mutex_init(&P->lock, NULL);
  pthread_cond_init(&P->cv, NULL);
  P->n = n;
  for (int i = 0; i < n; i++) { P->slots[i].P = P; P->slots[i].conn = conns[i]; }
  for (int i = 0; i < n; i++) {
    if (pthread_create(&P->slots[i].th, NULL, slot_main, &P->slots[i]) != 0) {
      snprintf(err, errlen, "%s: cannot start a connection thread", who);
      dbpool_stop(P);
      return NULL;
    }
    P->slots[i].started = 1;
  }
  return P;
}

void dbpool_submit(struct dbpool *P, struct db_req *r) {
  pthread_mutex_lock(&P->lock);
  struct slot *pin = NULL;
  for (int i = 0; r->tx && i < P->n && !pin; i++)
    if (P->slots[i].tx == r->tx) pin = &P->slots[i];
  if (pin) db_reqq_push(&pin->qh, &pin->qt, r);
  else { db_reqq_push(&P->qh, &P->qt, r); P->queued++; }
  pthread_cond_broadcast(&P->cv);                 /* a pinned request needs its own thread */
  pthread_mutex_unlock(&P->lock);
}

void dbpool_cancel(struct dbpool *P, uint64_t id) {
  pthread_mutex_lock(&P->lock);
  struct db_req *found = NULL;
  struct slot *hit = NULL;
  for (int i = 0; i < P->n && !found; i++) {
    struct slot *s = &P->slots[i];
    if (s->cur && s->cur->id == id) {
      found = s->cur;
      if (db_req_interruptible(found)) { atomic_store(&found->abandoned, 1); hit = s; s->interrupting++; }
    }
    for (struct db_req *r = s->qh; r && !found; r = r->next)
      if (r->id == id) found = r;
  }
  for (struct db_req *r = P->qh; r && !found; r = r->next)
    if (r->id == id) found = r;
  if (found && !found->running_on) atomic_store(&found->abandoned, 1);
  pthread_mutex_unlock(&P->lock);
  if (!hit) return;
  P->h->interrupt(hit->conn);                     /* outside the lock: may be a round trip */
  pthread_mutex_lock(&P->lock);
  hit->interrupting--;
  pthread_cond_broadcast(&P->cv);
  pthread_mutex_unlock(&P->lock);
}

void dbpool_stats(struct dbpool *P, struct db_stats *st) {
  pthread_mutex_lock(&P->lock);
  int pinned = 0, open = 0;
  for (int i = 0; i < P->n; i++) {
    if (P->slots[i].tx && !P->slots[i].cur) pinned++;
    if (!P->h->is_open || P->h->is_open(P->slots[i].conn)) open++;
  }
  st->max_open = P->n;
  st->open = open;
  st->in_use = P->busy + pinned;
  st->idle = P->n - st->in_use;
  st->queued = P->queued;
  st->served = P->served;
  pthread_mutex_unlock(&P->lock);
}

void dbpool_stop(struct dbpool *P) {
  pthread_mutex_lock(&P->lock);
  P->stop = 1;
  pthread_cond_broadcast(&P->cv);
  pthread_mutex_unlock(&P->lock);
  for (int i = 0; i < P->n; i++)
    if (P->slots[i].started) pthread_join(P->slots[i].th, NULL);
  pthread_mutex_destroy(&P->lock);
  pthread_cond_destroy(&P->cv);
  free(P);
}
