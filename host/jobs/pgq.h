/*
** pgq.h — the Postgres driver of a job queue: the jobs of a `queue.queue` with
** `driver: postgres` live in one table (taskhost_jobs) that every host naming the same
** database shares. jobq.c hands each jobq.h call of such a queue to the pgq_* function of the
** same name, so consumers, queue.publish and the job API do not know which driver they use.
**
** The database is the only record: nothing about a job is kept in memory except the jobs this
** host has claimed. A publish returns once its INSERT committed; a claim is one
** `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED LIMIT free slots)` that sets the job
** running with this host as owner, the next attempt and a lease; finishing applies only
** `WHERE owner = this host AND attempt = the claimed one` (fencing: a job rescued elsewhere
** keeps its new attempt). Leases are renewed every lease/3; one host (advisory-lock leader)
** rescues jobs whose lease ran out and prunes finished ones past retention.
**
** Threads: pgq_* may be called from any thread. Each queue has a writer thread (pgq.c: its
** own connection for publishes, finishes, renewals and claims, batched per round, and one
** LISTEN connection that also holds the leader lock) and a reader thread (pgq_view.c: a
** connection for job records, lists, counts, cancel and forget). Callers hand requests over
** under pgq.lock and wait on their own waiter; no lock is held while SQL runs.
*/
#ifndef TASKHOST_PGQ_H
#define TASKHOST_PGQ_H

#include "jobq.h"

#include <stddef.h>
#include <stdint.h>

struct pgq_config {
  const char *dsn;            /* libpq connection string or URI */
  int64_t lease_ns;           /* a running job's lease (renewed every lease/3) */
  int64_t poll_ns;            /* look for work at least this often */
  int notify;                 /* LISTEN/NOTIFY wake-ups (0: polling only) */
};

struct pgq;

/* Parses the DSN and starts the threads. When the server answers, the schema is created or
** checked first: a schema newer than this host's fails the open (NULL, err). A server that
** does not answer yet does not fail it: the queue is unavailable until it does. */
struct pgq *pgq_open(const struct jobq_config *cfg, const struct pgq_config *pc, char *err,
                     size_t errlen);
void pgq_free(struct pgq *p);     /* after pgq_stop; no worker may hold a job */

/* jobq.h's operations, same contracts (see there). */
int pgq_publish(struct pgq *p, const char *data, size_t len, const struct jobq_publish_opts *o,
                char *id_out, size_t idlen, int *existed, char *err, size_t errlen);
int pgq_publish_many(struct pgq *p, const char *const *data, const size_t *lens, size_t n,
                     const struct jobq_publish_opts *o, char (*ids)[JOBQ_ID_MAX], char *err,
                     size_t errlen);
size_t pgq_claim_batch(struct pgq *p, int64_t until_ns, struct job **out, size_t max);
int pgq_begin(struct pgq *p, struct job *j);
void pgq_finish(struct pgq *p, struct job *j, enum job_outcome o, const char *text, size_t len);
void pgq_on_cancel(struct pgq *p, struct job *j, void (*wake)(void *), void *arg);
void pgq_set_progress(struct pgq *p, struct job *j, const char *json, size_t len);
int pgq_cancel(struct pgq *p, const char *id);
int pgq_forget(struct pgq *p, const char *id);
/* jobq_retry (requeue 0) and jobq_requeue (requeue 1) on the database. */
int pgq_revive(struct pgq *p, const char *id, int requeue);
int pgq_job_info(struct pgq *p, const char *id, struct buf *out);
int pgq_job_result(struct pgq *p, const char *id, struct buf *out);
void pgq_list(struct pgq *p, int state, int64_t after, size_t limit, struct buf *out,
              int64_t *next);
void pgq_stats(struct pgq *p, struct jobq_stats *out);
void pgq_drain(struct pgq *p);
void pgq_stop(struct pgq *p);
size_t pgq_running(struct pgq *p);
int pgq_draining(struct pgq *p);
int pgq_available(struct pgq *p);
size_t pgq_interrupt_running(struct pgq *p);
/* jobq_call_start of a postgres queue: publishes go to the writer, the rest to the reader;
** c->done runs on that thread (or inline when the call fails at once). pgq_call_run: the
** same, waited for on the calling thread (it sets c->done and c->ud); every synchronous
** pgq_* call above except claims and finishes is one of these. */
void pgq_call_start(struct pgq *p, struct jobq_call *c);
void pgq_call_run(struct pgq *p, struct jobq_call *c);

#endif
