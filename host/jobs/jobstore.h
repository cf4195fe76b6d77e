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
** Storage faults are errors, never signals: the file is used with locking_mode=EXCLUSIVE
** (set before WAL, so the wal-index lives in heap memory and there is no mapped -shm file)
** and mmap_size=0; one host owns the file anyway (flock on <path>.lock).
**
** Health. After every commit, and every second while idle, the writer checks that `path`
** and `<path>.lock` still name the files it holds and that the file system is writable. A
** failed transaction or a failed check makes the store *unhealthy*: that batch and every
** later op fail (done(ok = 0)) without touching the disk, jobstore_healthy() is 0 and an
** ERROR is logged. Every second it then tries to recover: it takes the lock again, reopens
** (creating the directory and the file when they are gone) and asks the owner to put its rows
** again — every row when the file is new or was replaced (JOBSTORE_REWRITE_ALL: they replace
** whatever the file holds), else only those whose last write failed (JOBSTORE_REWRITE_FAILED:
** a full disk need not fit a copy of everything) — and commits those; once that commit holds
** it is healthy again (logged, JOBSTORE_HEALTHY). A commit reported ok is on the file `path`
** names; a put reported failed is not left in it (one that reached a file the path no longer
** named is deleted there on recovery, should that file come back).
**
** Threads: jobstore_put/jobstore_delete may be called from any thread; done callbacks and
** event callbacks run on the writer thread (done in put order) and must not wait for the
** store (they may queue puts). jobstore_load runs on the caller's thread before any put. The
** sqlite3 connection belongs to the writer thread after jobstore_open returns.
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
  const char *headers;      /* message headers, a JSON object, or NULL */
};

struct jobstore;

/* ok: 1 when the row's transaction committed, 0 when it failed (the store logs why). */
typedef void (*jobstore_done_fn)(void *arg, int ok);

/* Takes the flock on <path>.lock (refused when another taskhost holds it), opens (creating
** the file, its directory and the schema when missing) and starts the writer thread.
** synchronous_full: PRAGMA synchronous=FULL instead of NORMAL.
** Returns NULL with a message in err. */
struct jobstore *jobstore_open(const char *path, int synchronous_full, char *err, size_t errlen);

/* Calls each(arg, row) for every stored row, in seq order; row and its strings are valid
** only during the call. Returns 0, or -1 with a message in err. Call before any put. */
int jobstore_load(struct jobstore *s, void (*each)(void *arg, const struct job_row *r), void *arg,
                  char *err, size_t errlen);

/* Queues an upsert of the whole row (copied; the caller's memory may go at once). done may
** be NULL. */
void jobstore_put(struct jobstore *s, const struct job_row *r, jobstore_done_fn done, void *arg);

/* Queues n upserts that commit in the same transaction: all or none. done(args[i], ok) for
** each row (done may be NULL). */
void jobstore_put_all(struct jobstore *s, const struct job_row *rows, size_t n,
                      jobstore_done_fn done, void *const *args);

/* Queues the deletion of a row (retention pruning). */
void jobstore_delete(struct jobstore *s, int64_t seq);

/* 1 while the file is writable and is the one opened, 0 after a fault until recovered. */
int jobstore_healthy(struct jobstore *s);

/* The owner's hook (see Health above): fn(arg, JOBSTORE_REWRITE_ALL / _FAILED) after a
** reopen — put those rows again (jobstore_put; do not wait) — and fn(arg, JOBSTORE_HEALTHY)
** once they are on disk. Set it before faults matter (right after open). */
enum { JOBSTORE_REWRITE_ALL, JOBSTORE_REWRITE_FAILED, JOBSTORE_HEALTHY };
void jobstore_on_event(struct jobstore *s, void (*fn)(void *arg, int event), void *arg);

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
