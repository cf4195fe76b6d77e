/*
** fcall.h — the funcs engine: runs `function.lua` calls made by Lua code (funcs.call /
** funcs.async, lua/lmod_funcs.c) on call threads of its own, so the caller only parks its
** task (a process-host worker runs other processes meanwhile) and the callee runs where
** function states run. A finished call is posted back to the caller as an MK_IO message
** (task.h PEND_IO) with the request; the caller's io_ops (r->ops) push its results.
**
** Pools: the engine keeps its own function pools, one set per registry generation. A call
** takes the current generation's code (rt_code) and pool with a reference, so a hot reload
** never frees a pool a call still uses; a replaced set is freed by the last call leaving it.
** (The HTTP routes' and consumers' pools are separate: pool.max_size bounds each.)
**
** Threads: call threads are started on demand (none idle when a request comes) up to
** `core` (the machine's cores, at least 2) at once; beyond that only when the oldest queued
** request has waited FCALL_GROW_AFTER_NS (the threads are busy in long calls: sleeping,
** waiting on the network), up to `max_threads`, decided by the engine's monitor thread. So
** short calls from many callers share a few hot threads instead of waking one thread each
** (a context switch storm on a small machine), and long calls cannot starve the others for
** more than about a millisecond. At most `max_queue` requests wait (more: FCALL_BUSY). A nested
** request (depth > 1: its caller holds a call thread while it waits) may start a thread
** beyond max_threads, so callers waiting on nested calls can never take every thread and
** wait for each other; such extra threads end when they find nothing queued. Depth is at
** most FCALL_MAX_DEPTH (the Lua side refuses deeper calls), which bounds the extra threads.
** Each thread runs funcpool_call on its own watchdog slot, so busy code past the call's
** deadline is stopped.
** Requests are handed over exactly once (`claim`):
**   WAITING → POSTED  by the call thread when the call ended: the message owns the request
**                     and hands it to r->ops->push (waiter found) or ->drop.
**   WAITING → GONE    by fcall_cancel (the waiter left first: task killed, future:cancel):
**                     it sets the call's cancel flag and wakes the callee; the call thread
**                     then sees GONE and frees the request.
*/
#ifndef TASKHOST_FCALL_H
#define TASKHOST_FCALL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "call.h"

struct rt;
struct io_ops;
struct fcall;

/* What became of a request (r->status), set by the engine before it posts. */
enum fcall_status {
  FC_RAN,          /* the function ran: r->call tells how it ended, r->results its values */
  FC_NOT_FOUND,    /* no function.lua entry with that id */
  FC_TIMEOUT,      /* the deadline passed before it started */
  FC_CANCELED,     /* cancelled before it started */
  FC_STOPPED,      /* the engine is stopping */
  FC_NO_STATE,     /* no state could be made (chunk failed): r->call.error */
};

enum { FCALL_OK = 0, FCALL_BUSY = -1, FCALL_STOPPED = -2 };
#define FCALL_MAX_DEPTH 16
#define FCALL_GROW_AFTER_NS 1000000    /* 1 ms */

struct fcall_req {
  /* set by the caller before fcall_submit (the engine owns them from then on) */
  char *id;                   /* the function entry's id */
  struct buf args;            /* seri-packed arguments */
  struct buf ctx;             /* seri-packed context table (ctx module); empty: none */
  int64_t deadline;           /* monotonic ns; 0 = none */
  int depth;                  /* 1 + the calls the caller runs inside (call.depth) */
  struct rt *rt;              /* where the completion goes: process pid, session */
  uint64_t pid, session;
  const struct io_ops *ops;   /* hooks of the MK_IO message */
  /* written by the call thread, read by the waiter after the completion arrived */
  int status;                 /* enum fcall_status */
  struct buf results;         /* FC_RAN: return values, or the raised value (call.raised) */
  struct call call;
  _Atomic int cancel;
  _Atomic int claim;
  struct fcall_req *next;     /* engine queue link */
  int64_t queued_at;          /* monotonic ns, set by fcall_submit */
};

struct fcall_req *fcall_req_new(const char *id);
void fcall_req_free(struct fcall_req *r);

/* Starts the engine (no thread yet). max_threads, max_queue: 0 = defaults (64, 1024). */
struct fcall *fcall_new(struct rt *rt, int max_threads, int max_queue);
/* Queues r. FCALL_OK: r belongs to the engine until it posts (or is cancelled);
** FCALL_BUSY (queue full) / FCALL_STOPPED: r is still the caller's. Any thread. */
int fcall_submit(struct fcall *e, struct fcall_req *r);
/* The waiter is gone (io_ops.cancel, on the caller's thread): stops the call; r must not be
** touched by the caller afterwards. */
void fcall_cancel(struct fcall_req *r);
/* Stops the engine: queued requests complete as FC_STOPPED, running calls are cancelled,
** the threads are joined, the pools freed. No caller may submit afterwards. */
void fcall_free(struct fcall *e);

/* Counters for tests and logs. */
struct fcall_stats { int threads, idle; size_t queued, pools, sets; uint64_t calls; };
void fcall_stats(struct fcall *e, struct fcall_stats *st);

#endif
