/*
** call.h — one call of a function state: what the caller (an HTTP connection thread, a job
** consumer, funcpool_call) hands to the state and reads back when it returns
** (proc_call_inline, funcpool.h). Callers need only this header to make a call.
**
** Ownership and threads:
**  - The caller owns the struct (usually on its stack) and everything it points to; it must
**    outlive the call. `ctx` is the caller's context, read by the Lua module of its kind
**    (lmod_http.c for CALL_HTTP, lmod_queue.c for CALL_JOB) through the state's `call`.
**  - While the call runs, the thread running it writes the result fields (done .. error);
**    the caller reads them after the call returns. `cancel` and `proc` are the only fields
**    other threads touch during the call: any thread may set *cancel and then call
**    proc_call_wake so the state notices it.
*/
#ifndef TASKHOST_CALL_H
#define TASKHOST_CALL_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct proc;

/* What a call's ctx is, so a module reads only its own kind of context. */
enum call_kind { CALL_PLAIN, CALL_HTTP, CALL_JOB };

/* One inline call of a function state (proc_call_inline). */
struct call {
  enum call_kind kind;
  int64_t deadline;           /* monotonic ns; 0 = none */
  void *ctx;                  /* the caller's context (http.c's request, a job), for Lua modules */
  const char *arg_json;       /* when set, decoded and passed as the function's one argument */
  size_t arg_len;
  struct buf *result_json;    /* when set, gets the first return value encoded as JSON */
  const char *args;           /* when set (and not arg_json): seri-packed arguments (value/seri.h) */
  size_t args_len;
  struct buf *results;        /* when set: every return value seri-packed, or after a raise the
                              ** raised value (error objects keep their kind); see `raised` */
  const char *ctx_vals;       /* seri-packed table of context values (the ctx module), or NULL */
  size_t ctx_len;
  int depth;                  /* funcs calls this one runs inside (0: an HTTP request or a job) */
  _Atomic int *cancel;        /* when set and non-zero, the call is interrupted ("cancelled") */
  struct proc *_Atomic proc;  /* the state running the call (for proc_call_wake) */
  _Atomic int waking;         /* proc_call_wake calls under way: the state outlives them */
  int done;
  int failed;                 /* raised, returned nil/false + error, or timed out */
  int fatal;                  /* failed with an error object whose retryable is false */
  int interrupted;            /* ended by the deadline or the cancel flag */
  int returned;               /* returned a non-nil first value */
  int raised;                 /* the function raised (results holds the value, if it packs) */
  char *error;                /* failure message (malloc'd) */
};

/* Wakes the state running c so it notices c->cancel (any thread; implemented in proc.c). */
void proc_call_wake(struct call *c);

#endif
