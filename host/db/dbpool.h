/*
** dbpool.h — the connection-thread pool both SQL drivers share (db_sqlite.c, db_pg.c): n
** connections, each owned by one thread that runs requests on it through the driver's hooks.
** Requests for any connection wait on the pool's queue; requests of a transaction wait on
** the queue of the connection it pins (from its BEGIN's success until its COMMIT/ROLLBACK
** completes, whatever the outcome), and a pinned connection takes nothing else.
**
** Threads and ownership:
**  - A driver connection (`void *conn`) belongs to its thread: run, start and end_tx run there.
**  - The pool's lock guards the queues, `running_on` of every request, the pins, the
**    counters and `stop`. No hook runs under it except is_open.
**  - Interrupt rule: dbpool_cancel marks a running request abandoned under the lock, counts
**    an interrupt in flight on its connection, and calls the interrupt hook after releasing
**    the lock. The connection's thread does not let go of that request (nor start another,
**    nor exit) while an interrupt on it is in flight, so the hook always acts on the request
**    it was meant for and the connection outlives the call. A hook that touches state its
**    thread may swap (libpq's PGcancel) guards that with a lock of its own.
*/
#ifndef TASKHOST_DBPOOL_H
#define TASKHOST_DBPOOL_H

#include "db.h"

struct dbpool_hooks {
  void (*start)(void *conn);                    /* its thread, once first; NULL: nothing */
  void (*run)(void *conn, struct db_req *r);    /* its thread: one request */
  void (*end_tx)(void *conn);                   /* its thread: roll back a tx nobody can end */
  void (*interrupt)(void *conn);                /* any thread, outside the pool lock */
  int (*is_open)(void *conn);                   /* under the pool lock (stats); NULL: always */
};

struct dbpool;
/* Starts n threads on conns[0..n) (kept by the driver). NULL (err) when a thread cannot start. */
struct dbpool *dbpool_start(const struct dbpool_hooks *h, void *const *conns, int n,
                            const char *who, char *err, size_t errlen);
void dbpool_submit(struct dbpool *p, struct db_req *r);
void dbpool_cancel(struct dbpool *p, uint64_t id);
void dbpool_stats(struct dbpool *p, struct db_stats *st);
/* Runs what is queued, ends pinned transactions, joins the threads, frees the pool (not the
** driver's connections: the driver closes them after). */
void dbpool_stop(struct dbpool *p);

#endif
