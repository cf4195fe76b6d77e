/*
** worker.h — a worker slot: the thread that runs Lua code of processes or function states
** (a process host's worker, an HTTP connection thread, a job consumer thread), as the
** watchdog (watchdog.h) sees it.
**
** Ownership and threads: the slot belongs to its thread; `s`, `runnext`, `id` and `cache`
** are touched only by it (and by the scheduler that owns the worker, scheduler.c). The
** watchdog thread reads `resumes` and `running_co` and sets `hooking`, following the
** protocol below. A slot must outlive the watchdog it was added to.
**
** The watchdog protocol (task.c run_one): the worker publishes the coroutine it resumes and
** bumps `resumes` before and after lua_resume (odd = inside); a watchdog that sees the same
** odd count twice, a slice apart, arms a count hook on `running_co` while `hooking` is set;
** the worker, after clearing running_co, waits for `hooking` to drop before it may free the
** coroutine. coroutine.resume/wrap (lmod_coroutine.c) point running_co at the plain
** coroutine they run and back, following the same rule, so the hook reaches the innermost
** coroutine running. task_watch_begin/task_watch_end (task.h) are the worker's side;
** task_interrupt_worker (task.h) is the watchdog's.
*/
#ifndef TASKHOST_WORKER_H
#define TASKHOST_WORKER_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct lua_State lua_State;
struct sched;
struct proc;
struct blockcache;

struct worker {
  struct sched *s;           /* the process host it belongs to, or NULL (HTTP, consumers) */
  struct proc *runnext;      /* next process to run on this worker, or NULL */
  int id;
  _Atomic uint64_t resumes;
  _Atomic(lua_State *) running_co;
  _Atomic int hooking;
  struct blockcache *cache;  /* small Lua blocks of the states this worker runs (luaenv.c) */
};

#endif
