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

#endif
