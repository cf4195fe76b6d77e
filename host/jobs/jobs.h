/*
** jobs.h — the project's background jobs: one jobq (and, for the sqlite driver, one
** jobstore file) per queue.queue entry, registered in the runtime for queue.publish, and the
** worker threads of every auto-started queue.consumer. Boot restores stored jobs (jobs a
** crash left running go back to retry); shutdown drains (see jobs_drain).
** Threads: all functions run on the main thread.
*/
#ifndef TASKHOST_JOBS_H
#define TASKHOST_JOBS_H

#include <stddef.h>
#include <stdint.h>

struct rt;
struct registry;
struct funcpool;
struct jobs;

typedef struct funcpool *(*jobs_pool_fn)(void *ud, const char *func_id);

/* Opens every queue and restores its stored jobs. NULL with a message in err. */
struct jobs *jobs_open(struct rt *rt, struct registry *gen, char *err, size_t errlen);
/* Starts the auto-start consumers of gen not running yet; pool_for gives the function pool
** of a function.lua id; adopt (may be NULL) is told of each one started. 0 / -1. */
struct consumer;
int jobs_start_consumers(struct jobs *js, struct registry *gen, jobs_pool_fn pool_for, void *ud,
                         void (*adopt)(void *ud, struct consumer *c));
/* Hot reload: opens the queue.queue entries of gen not open yet. 0, or -1 with err. */
int jobs_open_new(struct jobs *js, struct rt *rt, struct registry *gen, char *err, size_t errlen);
/* Shutdown: publishing answers "shutting down" and nothing new is claimed; running jobs get
** timeout_ns to finish, then are interrupted and put back in their queue without using an
** attempt; consumers are joined and stores flushed. */
void jobs_drain(struct jobs *js, int64_t timeout_ns);
void jobs_free(struct jobs *js);
/* The running consumers (for hot reload: consumer_swap_pool), and freeing the pools reloads
** replaced once no job uses them. */
size_t jobs_consumer_count(const struct jobs *js);
struct consumer *jobs_consumer_at(struct jobs *js, size_t i);
void jobs_reclaim(struct jobs *js);
/* A metrics collector (base/metrics.h; ud: the struct rt): every queue's jobs by state,
** published, rejected, retries, finished and the enqueue→start histogram (jobmetrics.c). */
struct mcollect;
void jobs_collect_metrics(void *rt, struct mcollect *c);

#endif
