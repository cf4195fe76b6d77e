/*
** jobq_impl.h — the insides of a job queue, shared by jobq.c (changes), jobq_index.c
** (heaps and the id index), jobq_persist.c (store writes and commits) and jobq_view.c
** (reading: info, result, list, stats). Not for other modules.
** Threads: every field is guarded by jobq.lock, except job.cancel (atomic).
*/
#ifndef TASKHOST_JOBQ_IMPL_H
#define TASKHOST_JOBQ_IMPL_H

#include "jobq.h"
#include "base/util.h"

#include <pthread.h>

#define HIST_BUCKETS 16

struct job {
  struct job *hash_next;
  uint64_t hash;
  int64_t seq;
  char *id, *idem_key, *data, *result, *progress, *headers;   /* headers: JSON object or NULL */
  size_t data_len;
  struct buf errors;               /* ",{...}" items; wrapped in [] when shown */
  int state, pub_state;            /* pub_state: committed and visible; -1 = not yet */
  int priority, attempt, max_retries, recoveries;
  int64_t run_at, created_at, started_at, finished_at;   /* epoch ms */
  int heap;                        /* 0 none, 1 ready, 2 delayed */
  size_t hidx;
  int inflight;                    /* store writes not yet committed */
  int unsaved;                     /* its last store write failed (rewritten on recovery) */
  int claimed;                     /* 0 free; 1 reserved by a runner (claimed, not begun);
                                      2 begun: running */
  _Atomic int cancel;              /* 1 cancelled by a client, 2 stopped by shutdown */
  void (*wake)(void *);
  void *wake_arg;
  int64_t deadline;                /* monotonic ns */
  int64_t claimed_mono;            /* when it started running */
  int64_t ready_mono;              /* when it became (or becomes) due: enqueue→start */
};

/* The last WAIT_SAMPLES enqueue→start times (a ring, for p50/p99). */
struct waitlog {
  int64_t *v;                      /* allocated at the first sample */
  size_t n, pos;
};

struct heap {
  struct job **v;
  size_t n, cap;
};

struct jobq {
  struct jobq_config cfg;
  char *name;
  struct jobstore *store;
  struct pgq *pg;                  /* driver postgres: every operation goes to pgq.h */
  pthread_mutex_t lock;
  pthread_cond_t cv;
  struct job **all;
  size_t nall, capall;
  struct job **buckets;            /* id hash chains */
  size_t nbuckets;
  struct heap ready, delayed;
  int64_t next_seq;
  size_t live, running;            /* live: unfinished; running: begun, not finished */
  uint64_t live_bytes;             /* data bytes of the live jobs (capacity_bytes) */
  size_t reserved;                 /* claimed by runners, not begun yet */
  struct commit *last_commit;      /* the last store write put whose commit is not reported */
  int draining, stopped;
  uint64_t rnd;
  int64_t last_prune;              /* epoch ms */
  struct waitlog waits;            /* enqueue→start times (ns) */
  struct jobq_stats st;
};

#define WAIT_SAMPLES 65536

/* A caller waiting for one commit (on its own stack): init, hand to a persist call, unlock
** q->lock, then wait; wait returns whether the commit succeeded. */
struct waiter {
  pthread_mutex_t m;
  pthread_cond_t cv;
  int done, ok;
};

/* jobq_persist.c; q->lock held, except jobq_waiter_wait. Without a store a change is
** visible at once and w is told at once. */
void jobq_persist(struct jobq *q, struct job *j, struct waiter *w);      /* its current row */
/* A claim's reservation row: running with its next attempt on disk, unchanged in memory. */
void jobq_persist_reserved(struct jobq *q, struct job *j, int64_t now, struct waiter *w);
void jobq_persist_all(struct jobq *q, struct job **js, size_t n, struct waiter *w); /* one txn */
void jobq_show_running(struct jobq *q, struct job *j);  /* after every commit put so far */
void jobq_store_event(void *arg, int event);            /* jobstore_on_event callback */
void jobq_waiter_init(struct waiter *w);
int jobq_waiter_wait(struct waiter *w);
void jobq_waiter_signal(struct waiter *w, int ok);      /* the commit is reported: wakes */

int64_t jobq_now_ms(void);                                   /* wall clock, epoch ms */

/* jobq_view.c, also used by the postgres driver (pgq*.c); callers hold their queue's lock. */
/* Counts one enqueue→start time (ns; negative counts as 0) in st's histogram and totals and
** in the ring. */
void waitlog_add(struct waitlog *w, struct jobq_stats *st, int64_t ns);
/* p50 and p99 of the ring into st (0 when empty). */
void waitlog_percentiles(const struct waitlog *w, struct jobq_stats *st);
void waitlog_free(struct waitlog *w);
int jobq_cmp_i64(const void *a, const void *b);             /* qsort/bsearch of int64_t */
/* ,"key":"RFC 3339 UTC with ms" — or ,"key":null for 0 (ms since the epoch). */
void jobq_put_time(struct buf *b, const char *key, int64_t ms);

/* jobq_index.c; q->lock held for all of them. */
struct job *jobq_find(struct jobq *q, const char *id);
void jobq_heap_push(struct jobq *q, struct job *j, int delayed);  /* into ready or delayed */
void jobq_heap_remove(struct jobq *q, struct job *j);             /* from its heap, if any */
void jobq_index_add(struct jobq *q, struct job *j);               /* id hash + `all` */
void jobq_index_del(struct jobq *q, struct job *j);               /* id hash only */
void jobq_index_grow(struct jobq *q);  /* doubles the id hash (1024 buckets when empty) */

#endif
