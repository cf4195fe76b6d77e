/*
** scheduler.h — a process.host: N worker threads running processes from one FIFO run queue.
** A worker that wakes a process of its own scheduler keeps it in its `runnext` slot, so two
** processes talking to each other stay on one awake thread (waking a sleeping thread costs
** ~100 µs on these VMs; see process-cost.md). Idle workers spin briefly before they sleep.
** Threads: sched_push may be called from any thread; workers own the processes they run.
*/
#ifndef TASKHOST_SCHEDULER_H
#define TASKHOST_SCHEDULER_H

#include <stdatomic.h>
#include <stdint.h>

struct rt;
struct proc;
struct sched;

typedef struct lua_State lua_State;

/* A worker thread. The watchdog fields implement this protocol (task.c run_one): the worker
** publishes the coroutine it resumes and bumps `resumes` before and after lua_resume (odd =
** inside); a watchdog that sees the same odd count twice, a slice apart, arms a count hook
** on `running_co` while `hooking` is set; the worker, after clearing running_co, waits for
** `hooking` to drop before it may free the coroutine. coroutine.resume/wrap
** (lmod_coroutine.c) point running_co at the plain coroutine they run and back, following
** the same rule, so the hook reaches the innermost coroutine running. */
struct worker {
  struct sched *s;
  struct proc *runnext;      /* next process to run on this worker, or NULL */
  int id;
  _Atomic uint64_t resumes;
  _Atomic(lua_State *) running_co;
  _Atomic int hooking;
  struct blockcache *cache;  /* small Lua blocks of the states this worker runs (luaenv.c) */
};

/* Arms the interrupt hook on the coroutine w is running, if any (task.c). */
void task_interrupt_worker(struct worker *w);

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
/* Waits until the scheduler runs no process or the monotonic deadline passes: 0 / -1. */
int sched_wait_empty(struct sched *s, int64_t deadline_ns);
void sched_close(struct sched *s);           /* refuse new spawns */
int sched_closed(struct sched *s);

#endif
