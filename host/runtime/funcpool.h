/*
** funcpool.h — pools of Lua states for one function.lua entry (of one generation). A call
** borrows a state, runs the entry's function on the calling thread (an HTTP thread), and
** gives the state back — unless the call left coroutines running (coroutine.spawn), in which
** case the state is detached to a process host, where those coroutines run to their end,
** and the pool makes a new state for later calls. States are created on demand up to
** `max`; callers beyond that wait for one to come back.
** Threads: any thread may call; the pool's lists are guarded by its mutex, a state is used
** by one thread at a time.
*/
#ifndef TASKHOST_FUNCPOOL_H
#define TASKHOST_FUNCPOOL_H

#include <stddef.h>
#include <stdint.h>

struct rt;
struct code;
struct sched;
struct call;
struct worker;
struct funcpool;

/* bg: the process host for detached coroutines, or NULL (they are then cancelled). */
struct funcpool *funcpool_new(struct rt *rt, const struct code *code, struct sched *bg, size_t max);
/* Runs one call (c->ctx, c->deadline set by the caller). Returns 0, or -1 with c->error set
** when no state could be made. w: the calling thread's watchdog slot (may be NULL). A call
** that finds the pool at its limit waits for a state, but not past c->deadline nor after
** *c->cancel is set: it then ends interrupted (0, c->interrupted set), as a stopped call. */
int funcpool_call(struct funcpool *fp, struct worker *w, struct call *c);
void funcpool_free(struct funcpool *fp);   /* no call may be running */
void funcpool_quiet(struct funcpool *fp);  /* funcpool_free logs no summary */
size_t funcpool_states(struct funcpool *fp);

#endif
