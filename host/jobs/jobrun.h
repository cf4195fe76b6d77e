/*
** jobrun.h — the workers of a `queue.consumer` entry: `concurrency` threads that claim jobs
** from a queue (jobq.h) and run the consumer's function.lua on a state borrowed from its
** pool, with the job's data as the argument, the job's timeout as the call's deadline and
** the job's cancel flag watched by the call (the interrupt hook stops busy code; waits in
** time.sleep, channels and the like are woken).
** Threads: consumer_start/consumer_join from the main thread; each worker thread owns its
** watchdog slot; the jobctx of a running job lives on its worker's stack.
*/
#ifndef TASKHOST_JOBRUN_H
#define TASKHOST_JOBRUN_H

#include <stddef.h>

struct jobq;
struct job;
struct funcpool;

/* What queue.job()/queue.progress() see through call->ctx (CALL_JOB). */
struct jobctx {
  struct jobq *q;
  struct job *job;
};

struct consumer;

/* Starts the threads; returns NULL with a message in err when none could start. */
struct consumer *consumer_start(const char *id, struct jobq *q, struct funcpool *fp,
                                int concurrency, char *err, size_t errlen);
/* After jobq_stop(q): waits for the threads (each finishes its job first) and frees. */
void consumer_join(struct consumer *c);
/* Hot reload: jobs that start from now on run on fp; jobs running finish on their pool. The
** replaced pool is released (release(ud); NULL for the pool consumer_start got, which stays
** its caller's) once no job uses it: here, in consumer_reclaim, or in consumer_join. */
void consumer_swap_pool(struct consumer *c, struct funcpool *fp, void (*release)(void *ud), void *ud);
void consumer_reclaim(struct consumer *c);
/* The consumer's current pool is released with release(ud) when replaced or joined. */
void consumer_own_pool(struct consumer *c, void (*release)(void *ud), void *ud);
const char *consumer_id(const struct consumer *c);

#endif
