/*
** scheduler.h — a process.host: N worker threads running processes from one FIFO run queue.
** A worker that wakes a process of its own scheduler keeps it in its `runnext` slot, so two
** processes talking to each other stay on one awake thread (waking a sleeping thread costs
** ~100 µs on these VMs; see process-cost.md). Idle workers spin briefly before they sleep.
** Threads: sched_push may be called from any thread; workers own the processes they run.
** A worker thread's slot (struct worker) and the watchdog protocol it follows are in worker.h.
*/
#ifndef TASKHOST_SCHEDULER_H
#define TASKHOST_SCHEDULER_H

#include <stdint.h>

struct rt;
struct proc;
struct sched;

struct sched *sched_new(struct rt *rt, const char *name, int nworkers);
int sched_start(struct sched *s);            /* 0 / -1 */
/* Queues a QUEUED process; `waker` is the process running the post on a worker, or NULL. */
void sched_push(struct sched *s, struct proc *p, struct proc *waker);
/* Stops the workers (after the caller has made every process exit) and frees s. */
void sched_free(struct sched *s);

const char *sched_name(const struct sched *s);
int sched_workers(const struct sched *s);
void sched_proc_added(struct sched *s);
void sched_proc_removed(struct sched *s);
long sched_procs(struct sched *s);
uint64_t sched_started(struct sched *s);   /* processes ever added to s */
/* Processes waiting in the run queue (not those in a worker's runnext slot). Any thread. */
long sched_queued(struct sched *s);
/* Time its workers have spent running processes, ns, summed over workers: added when a
** worker turns to the run queue for its next process (and every 64 steps of a runnext
** chain), so a stretch still running shows when it ends. Monotonic. Any thread. */
uint64_t sched_busy_ns(struct sched *s);
/* Waits until the scheduler runs no process or the monotonic deadline passes: 0 / -1. */
int sched_wait_empty(struct sched *s, int64_t deadline_ns);
void sched_close(struct sched *s);           /* refuse new spawns */
int sched_closed(struct sched *s);

#endif
