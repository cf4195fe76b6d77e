/*
** task.h — tasks: the scheduler-managed coroutines of a process (its main function and
** coroutine.spawn), the ready FIFO, park/wake, the watchdog's interrupt hook, and the
** sessions (struct pending) that timers, stdin lines and C engines (PEND_IO) complete (task.c).
**
** Ownership and threads:
**  - A task, its coroutine and its pending waits belong to the process (struct proc, proc.h)
**    and are touched only by the worker running that process (one at a time).
**  - A waker never resumes a task: it pushes results onto the task's coroutine and appends
**    the task to the ready FIFO (task_wake); task_run_ready resumes them, on the worker.
**  - Other threads complete a session only by posting a message to the process (a timer
**    fires on the timer thread and posts MK_TIMER with the session, an I/O engine posts MK_IO,
**    msg.h); the worker then
**    finds the pending by session number. A stale session (cancelled, its task dead) is
**    ignored.
**  - task_interrupt_worker is the one function here the watchdog thread calls (worker.h).
*/
#ifndef TASKHOST_TASK_H
#define TASKHOST_TASK_H

#include <stdint.h>

#include "base/timer.h"
#include "msg.h"

typedef struct lua_State lua_State;
struct proc;
struct worker;
struct sel;

enum task_state { T_ROOT, T_READY, T_RUNNING, T_PARKED, T_DEAD };

/* A scheduler-managed coroutine of a process. Found from C through lua_getextraspace(co). */
struct task {
  lua_State *co;
  struct proc *p;
  struct task *next;          /* ready FIFO link */
  struct task *all_next, *all_prev;  /* every live task of the process */
  int ref;                    /* anchors co in the registry */
  int nargs;                  /* values already pushed on co for its next resume */
  uint8_t state;              /* enum task_state; T_ROOT marks the pseudo-task of the main thread */
  uint8_t is_main;
  struct sel *sel;            /* channel wait record while parked on channels */
  struct sel *sel_spare;      /* the task's wait record, reused by every wait (chan.c) */
  int sel_cap;                /* cases it can hold */
  struct pending *pend;       /* timer/line wait while parked on one */
};

/* A wait identified by a session number: a sleeping task, a time.after channel, a readline. */
/* PEND_IO: C code on another thread completes it with an MK_IO message (msg.h io_ops);
** `io`/`io_req` are the engine's hooks and request; pending_free calls io->cancel unless
** the completion was delivered (deliver clears `io` first). With no task (t NULL) `ref`
** anchors the object whose io->settle records the results. A timer armed on a PEND_IO session
** a task waits on (pending_arm_timer) bounds the wait: if it fires first, the session is freed
** (io->cancel) and the task gets io->expire's results (msg.h). */
enum pending_kind { PEND_SLEEP, PEND_AFTER, PEND_TICKER, PEND_LINE, PEND_IO };
struct pending {
  uint64_t session;
  uint8_t kind;
  struct task *t;             /* PEND_SLEEP / PEND_LINE / PEND_IO (NULL: nobody parked yet) */
  const struct io_ops *io;    /* PEND_IO */
  void *io_req;
  int ref;                    /* PEND_AFTER/TICKER: anchors the channel until it fires/stops */
  int64_t period;             /* PEND_TICKER */
  struct timer tm;
};

/* ---- tasks (task.c) ---- */
struct task *task_current(lua_State *L);           /* the task running L (may be &p->root) */
/* A task running the function at fidx on L; reuses a finished task's coroutine if any. */
struct task *task_new(struct proc *p, int fidx, lua_State *L);
void task_drop(struct proc *p, struct task *t);    /* a task that will not run (never started) */
void task_ready(struct task *t);                    /* append to the ready FIFO */
void task_ready_front(struct task *t);
void task_park(struct task *t);                     /* mark parked; caller then yields */
/* Wakes a parked task: the caller has pushed `n` results onto t->co. */
void task_wake(struct task *t, int n);
void task_kill(struct task *t);                     /* cleanup waits, close the coroutine */
int task_run_ready(struct proc *p, int budget);     /* runs ready tasks; returns how many ran */
/* Brackets Lua code run on worker w so the watchdog can interrupt it (worker.h). */
void task_watch_begin(struct worker *w, lua_State *co);
void task_watch_end(struct worker *w);
/* Arms the interrupt hook on the coroutine w is running, if any (the watchdog thread; the
** callback handed to watchdog_new). */
void task_interrupt_worker(struct worker *w);
/* Why code of p must stop now ("terminated", "cancelled", a passed deadline), or NULL. */
const char *task_stop_reason(struct proc *p);
/* Raises `why` in L with the interrupt hook armed at every instruction, so no pcall keeps
** the code running; marks the call interrupted. Does not return. */
int task_stop(lua_State *L, const char *why);
/* Raises a Lua error unless L runs in a task that may block. Returns the task. */
struct task *task_check_blocking(lua_State *L, const char *what);

/* ---- sessions (timers, readline) ---- */
struct pending *pending_new(struct proc *p, int kind);
/* Removes the session; a PEND_IO one still holding its request calls io->cancel(io_req). */
void pending_free(struct proc *p, struct pending *pe);
/* A PEND_IO session for req (hooks ops) that task t (or nobody yet, t NULL) waits on. The
** caller hands req to the engine after this, with the returned session. */
struct pending *pending_new_io(struct proc *p, struct task *t, const struct io_ops *ops, void *req);
void pending_arm_timer(struct proc *p, struct pending *pe, int64_t delay_ns);
void pending_arm_at(struct proc *p, struct pending *pe, int64_t deadline_ns);

/* The process whose task runs L. */
static inline struct proc *proc_of(lua_State *L) { return task_current(L)->p; }

#endif
