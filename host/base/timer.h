/*
** timer.h — one timer thread over a min-heap keyed by (deadline, seq), monotonic clock
** (libuv's timer.c shape). Nodes are intrusive and owned by the caller, who must keep a node
** alive while it is armed: timer_cancel guarantees that after it returns the thread will not
** touch the node again. Callbacks run on the timer thread, outside the heap lock, with copies
** of (ud, a, b) — never with the node — so a callback racing a cancel touches no freed memory.
** Callbacks must be short and must not block (they post to a mailbox or a queue).
*/
#ifndef TASKHOST_TIMER_H
#define TASKHOST_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef void (*timer_fn)(void *ud, uint64_t a, uint64_t b);

struct timer {
  int64_t deadline;   /* CLOCK_MONOTONIC ns */
  uint64_t seq;       /* tie-break: equal deadlines fire in arming order */
  int idx;            /* heap slot, -1 when not armed */
  timer_fn fn;
  void *ud;
  uint64_t a, b;
};

struct timers;

struct timers *timers_new(void);
int timers_start(struct timers *t);     /* starts the thread: 0 / -1 */
void timers_free(struct timers *t);     /* stops the thread; pending timers never fire */

void timer_init(struct timer *n);
/* Arms n to fire at `deadline` (monotonic ns). n must not be armed. */
void timer_add(struct timers *t, struct timer *n, int64_t deadline, timer_fn fn, void *ud,
               uint64_t a, uint64_t b);
/* Disarms n. Returns 1 if it was armed, 0 if it already fired (or never was). */
int timer_cancel(struct timers *t, struct timer *n);
int timer_armed(const struct timer *n);
size_t timers_pending(struct timers *t);

/* The heap alone, for unit tests and for owners that run their own loop. */
struct theap { struct timer **v; size_t n, cap; };
void theap_push(struct theap *h, struct timer *n);
struct timer *theap_pop(struct theap *h);
void theap_remove(struct theap *h, struct timer *n);
struct timer *theap_top(const struct theap *h);

#endif
