/* Unit tests for timer.c: heap order, removal, the timer thread, cancel semantics. */
#define _GNU_SOURCE              /* pthread_timedjoin_np */
#include "t.h"
#include "base/timer.h"
#include "base/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

TEST(heap_pops_in_deadline_then_arming_order) {
  struct theap h = {0};
  struct timer n[200];
  unsigned seed = 7;
  for (int i = 0; i < 200; i++) {
    timer_init(&n[i]);
    n[i].deadline = rand_r(&seed) % 50;    /* many equal deadlines */
    n[i].seq = (uint64_t)i;
    theap_push(&h, &n[i]);
  }
  int64_t last_d = -1;
  uint64_t last_seq = 0;
  int count = 0;
  struct timer *t;
  while ((t = theap_pop(&h))) {
    CHECK(t->deadline >= last_d);
    if (t->deadline == last_d) CHECK(t->seq > last_seq);
    CHECK_INT(t->idx, -1);
    last_d = t->deadline;
    last_seq = t->seq;
    count++;
  }
  CHECK_INT(count, 200);
  free(h.v);
}

TEST(heap_remove_from_the_middle_keeps_order) {
  struct theap h = {0};
  struct timer n[100];
  for (int i = 0; i < 100; i++) {
    timer_init(&n[i]);
    n[i].deadline = (i * 37) % 100;
    n[i].seq = (uint64_t)i;
    theap_push(&h, &n[i]);
  }
  for (int i = 0; i < 100; i += 3) theap_remove(&h, &n[i]);
  int64_t last = -1;
  int count = 0;
  struct timer *t;
  while ((t = theap_pop(&h))) {
    CHECK(t->deadline >= last);
    CHECK((t - n) % 3 != 0);
    last = t->deadline;
    count++;
  }
  CHECK_INT(count, 66);
  free(h.v);
}

struct fired { pthread_mutex_t lock; int order[16]; int n; };

static void on_fire(void *ud, uint64_t a, uint64_t b) {
  struct fired *f = ud;
  pthread_mutex_lock(&f->lock);
  f->order[f->n++] = (int)a;
  pthread_mutex_unlock(&f->lock);
}

static int fired_count(struct fired *f) {
  pthread_mutex_lock(&f->lock);
  int n = f->n;
  pthread_mutex_unlock(&f->lock);
  return n;
}

TEST(thread_fires_in_order_and_cancel_prevents_firing) {
  struct timers *ts = timers_new();
  CHECK_INT(timers_start(ts), 0);
  struct fired f = {.lock = PTHREAD_MUTEX_INITIALIZER};
  struct timer t[4];
  int64_t now = clock_mono_ns();
  for (int i = 0; i < 4; i++) timer_init(&t[i]);
  timer_add(ts, &t[0], now + 60 * NS_PER_MS, on_fire, &f, 3, 0);
  timer_add(ts, &t[1], now + 20 * NS_PER_MS, on_fire, &f, 1, 0);
  timer_add(ts, &t[2], now + 40 * NS_PER_MS, on_fire, &f, 2, 0);
  timer_add(ts, &t[3], now + 30 * NS_PER_MS, on_fire, &f, 99, 0);
  CHECK(timer_armed(&t[3]));
  CHECK_INT(timer_cancel(ts, &t[3]), 1);
  CHECK(!timer_armed(&t[3]));
  for (int i = 0; i < 400 && fired_count(&f) < 3; i++) usleep(5000);
  CHECK_INT(fired_count(&f), 3);
  CHECK_INT(f.order[0], 1);
  CHECK_INT(f.order[1], 2);
  CHECK_INT(f.order[2], 3);
  CHECK_INT(timer_cancel(ts, &t[0]), 0);       /* already fired */
  CHECK_INT((long long)timers_pending(ts), 0);
  timers_free(ts);
}

TEST(freeing_with_pending_timers_never_fires_them) {
  struct timers *ts = timers_new();
  timers_start(ts);
  struct fired f = {.lock = PTHREAD_MUTEX_INITIALIZER};
  struct timer t;
  timer_init(&t);
  timer_add(ts, &t, clock_mono_ns() + 10 * NS_PER_S, on_fire, &f, 1, 0);
  timers_free(ts);
  CHECK_INT(f.n, 0);
}

/* A stop that comes while a callback runs (the lock is dropped then, so the signal finds
** nobody waiting) still ends the thread: before, the thread went back to an untimed wait
** on an empty heap and timers_free joined it for ever (seen as a hung test_fcall in CI). */
struct slow { pthread_mutex_t lock; int entered; };

static void on_fire_slowly(void *ud, uint64_t a, uint64_t b) {
  (void)a; (void)b;
  struct slow *s = ud;
  pthread_mutex_lock(&s->lock);
  s->entered = 1;
  pthread_mutex_unlock(&s->lock);
  usleep(200 * 1000);            /* the stop lands in here */
}

static void *free_timers(void *ts) { timers_free(ts); return ts; }

TEST(a_stop_during_a_callback_ends_the_thread) {
  struct timers *ts = timers_new();
  CHECK_INT(timers_start(ts), 0);
  struct slow s = {.lock = PTHREAD_MUTEX_INITIALIZER};
  struct timer t;
  timer_init(&t);
  timer_add(ts, &t, clock_mono_ns(), on_fire_slowly, &s, 0, 0);
  int entered = 0;
  for (int i = 0; i < 2000 && !entered; i++) {
    usleep(1000);
    pthread_mutex_lock(&s.lock);
    entered = s.entered;
    pthread_mutex_unlock(&s.lock);
  }
  CHECK(entered);
  pthread_t th;
  CHECK_INT(pthread_create(&th, NULL, free_timers, ts), 0);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 20;
  int rc = pthread_timedjoin_np(th, NULL, &until);
  CHECK_INT(rc, 0);
  if (rc != 0) { printf("  timers_free still waits for its thread\n"); fflush(stdout); _exit(1); }
}

int main(void) {
  RUN(heap_pops_in_deadline_then_arming_order);
  RUN(heap_remove_from_the_middle_keeps_order);
  RUN(thread_fires_in_order_and_cancel_prevents_firing);
  RUN(freeing_with_pending_timers_never_fires_them);
  RUN(a_stop_during_a_callback_ends_the_thread);
  return T_DONE();
}
