/*
** jobstore.h — durable storage of background jobs in SQLite (one file, WAL mode).
**
** The job queue (jobq.c) keeps every live job in memory and uses the store as its durable
** record: each state change is handed over as a complete row (jobstore_put), written by the
** store's own writer thread in batched transactions (group commit: everything queued while
** one transaction commits goes into the next one), and only after that transaction has
** committed is the caller told (the done callback). So the queue can make a change visible —
** send a 202, start a job, report `done` — only once it is durable.
**
** Threads: jobstore_put/jobstore_delete may be called from any thread; done callbacks run on
** the writer thread, in put order, and must not call back into the store. jobstore_load runs
** on the caller's thread before any put. The sqlite3 connection belongs to the writer thread
** after jobstore_open returns.
*/
#ifndef TASKHOST_JOBSTORE_H
#define TASKHOST_JOBSTORE_H

#include <stddef.h>
#include <stdint.h>

/* One job as stored. Strings are NUL-terminated; NULL means SQL NULL. Times are epoch ms. */
struct job_row {
  int64_t seq;              /* primary key, assigned by jobq (creation order), > 0 */
  const char *id;           /* client-visible id, unique */
  const char *queue;        /* queue entry id, e.g. "app:jobs" */
  int state;                /* enum job_state (jobq.h); stored as its integer */
  int priority;             /* smaller runs first */
  int attempt;              /* attempts started so far */
  int max_retries;
  int recoveries;           /* times a crash left it running and boot recovered it */
  int64_t run_at;           /* not before (queued/scheduled/retrying) */
  int64_t created_at, started_at, finished_at;   /* 0 = not yet */
  const char *data;         /* the job's argument, JSON text */
  const char *result;       /* JSON text, or NULL */
  const char *errors;       /* JSON array of {attempt, at, error}, or NULL */
  const char *progress;     /* JSON text, or NULL */
  const char *idem_key;     /* idempotency key, or NULL */
};

struct jobstore;

/* ok: 1 when the row's transaction committed, 0 when it failed (the store logs why). */
typedef void (*jobstore_done_fn)(void *arg, int ok);

/* Opens (creating the file, its directory and the schema when missing) and starts the
** writer thread. synchronous_full: PRAGMA synchronous=FULL instead of NORMAL.
** Returns NULL with a message in err. */
struct jobstore *jobstore_open(const char *path, int synchronous_full, char *err, size_t errlen);

/* Calls each(arg, row) for every stored row, in seq order; row and its strings are valid
** only during the call. Returns 0, or -1 with a message in err. Call before any put. */
int jobstore_load(struct jobstore *s, void (*each)(void *arg, const struct job_row *r), void *arg,
                  char *err, size_t errlen);

/* Queues an upsert of the whole row (copied; the caller's memory may go at once). done may
** be NULL. */
void jobstore_put(struct jobstore *s, const struct job_row *r, jobstore_done_fn done, void *arg);

/* Queues the deletion of a row (retention pruning). */
void jobstore_delete(struct jobstore *s, int64_t seq);

/* Waits until everything queued so far has committed (or failed). */
void jobstore_flush(struct jobstore *s);

/* Flushes, stops the writer thread, closes the database. NULL is fine. */
void jobstore_close(struct jobstore *s);

/* Counters for metrics and the benchmark. */
struct jobstore_stats {
  uint64_t rows, transactions, failures;
};
void jobstore_stats(struct jobstore *s, struct jobstore_stats *out);

#endif
