/*
** timer.c — see timer.h.
** Threads: the heap is shared and guarded by `lock`; the timer thread sleeps on `cv` until
** the earliest deadline (pthread_cond_timedwait on CLOCK_MONOTONIC) and is signalled when a
** newly armed timer becomes the earliest.
*/
#include "timer.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct timers {
  pthread_mutex_t lock;
  pthread_cond_t cv;
  pthread_t thread;
  struct theap heap;
  uint64_t seq;
  int running, stopping;
};

/* ---- the heap ---------------------------------------------------------- */

static int before(const struct timer *x, const struct timer *y) {
  return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

static void place(struct theap *h, size_t i, struct timer *n) { h->v[i] = n; n->idx = (int)i; }

static void sift_up(struct theap *h, size_t i) {
  struct timer *n = h->v[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(n, h->v[parent])) break;
    place(h, i, h->v[parent]);
    i = parent;
  }
  place(h, i, n);
}

static void sift_down(struct theap *h, size_t i) {
  struct timer *n = h->v[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const struct timer *best = n;
    if (l < h->n && before(h->v[l], best)) { m = l; best = h->v[l]; }
    if (r < h->n && before(h->v[r], best)) m = r;
    if (m == i) break;
    place(h, i, h->v[m]);
    i = m;
  }
  place(h, i, n);
}

void theap_push(struct theap *h, struct timer *n) {
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 64;
    h->v = xrealloc(h->v, h->cap * sizeof *h->v);
  }
  place(h, h->n++, n);
  sift_up(h, h->n - 1);
}

struct timer *theap_top(const struct theap *h) { return h->n ? h->v[0] : NULL; }

void theap_remove(struct theap *h, struct timer *n) {
  size_t i = (size_t)n->idx;
  struct timer *last = h->v[--h->n];
  n->idx = -1;
  if (last == n) return;
  place(h, i, last);
  if (i > 0 && before(last, h->v[(i - 1) / 2])) sift_up(h, i);
  else sift_down(h, i);
}

struct timer *theap_pop(struct theap *h) {
  struct timer *n = theap_top(h);
  if (n) theap_remove(h, n);
  return n;
}

/* ---- the thread ---------------------------------------------------------- */

void timer_init(struct timer *n) { n->idx = -1; }
int timer_armed(const struct timer *n) { return n->idx >= 0; }

/* Pops every expired timer and runs its callback outside the lock. Called with lock held. */
static void fire_expired(struct timers *t) {
  int64_t now = clock_mono_ns();
  struct timer *n;
  while ((n = theap_top(&t->heap)) && n->deadline <= now) {
    theap_remove(&t->heap, n);
    timer_fn fn = n->fn;
    void *ud = n->ud;
    uint64_t a = n->a, b = n->b;
    pthread_mutex_unlock(&t->lock);
    fn(ud, a, b);
    pthread_mutex_lock(&t->lock);
  }
}

static void *timer_thread(void *arg) {
  struct timers *t = arg;
  pthread_mutex_lock(&t->lock);
  while (!t->stopping) {
    fire_expired(t);
    if (t->stopping) break;      /* fire_expired drops the lock around each callback: a stop
                                    signalled then found nobody waiting, and must not be missed */
    struct timer *n = theap_top(&t->heap);
    if (!n) { pthread_cond_wait(&t->cv, &t->lock); continue; }
    struct timespec ts = ns_timespec(n->deadline);
    pthread_cond_timedwait(&t->cv, &t->lock, &ts);
  }
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

struct timers *timers_new(void) {
  struct timers *t = xcalloc(1, sizeof *t);
  cond_init_monotonic(&t->cv);
  pthread_mutex_init(&t->lock, NULL);
  return t;
}

int timers_start(struct timers *t) {
  if (pthread_create(&t->thread, NULL, timer_thread, t) != 0) return -1;
  t->running = 1;
  return 0;
}

void timers_free(struct timers *t) {
  if (!t) return;
  pthread_mutex_lock(&t->lock);
  t->stopping = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->lock);
  if (t->running) pthread_join(t->thread, NULL);
  while (theap_pop(&t->heap)) {}
  free(t->heap.v);
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cv);
  free(t);
}

void timer_add(struct timers *t, struct timer *n, int64_t deadline, timer_fn fn, void *ud,
               uint64_t a, uint64_t b) {
  n->deadline = deadline;
  n->fn = fn;
  n->ud = ud;
  n->a = a;
  n->b = b;
  pthread_mutex_lock(&t->lock);
  n->seq = t->seq++;
  theap_push(&t->heap, n);
  if (n->idx == 0) pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->lock);
}

int timer_cancel(struct timers *t, struct timer *n) {
  pthread_mutex_lock(&t->lock);
  int armed = n->idx >= 0;
  if (armed) theap_remove(&t->heap, n);
  pthread_mutex_unlock(&t->lock);
  return armed;
}

size_t timers_pending(struct timers *t) {
  pthread_mutex_lock(&t->lock);
  size_t n = t->heap.n;
  pthread_mutex_unlock(&t->lock);
  return n;
}
