/*
** watchdog.c — see watchdog.h.
*/
#include "watchdog.h"
#include "worker.h"
#include "base/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define SLICE_NS (20 * NS_PER_MS)

struct watchdog {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cv;
  int stopping;
  watchdog_fn interrupt;      /* called on the watchdog thread for a slot stuck in a resume */
  struct slot { struct worker *w; uint64_t seen; } *slots;
  size_t n, cap;
};

/* A slot still inside the same lua_resume (odd count, unchanged) gets the hook. */
static void scan(struct watchdog *wd) {
  for (size_t i = 0; i < wd->n; i++) {
    uint64_t r = atomic_load(&wd->slots[i].w->resumes);
    if ((r & 1) && r == wd->slots[i].seen) wd->interrupt(wd->slots[i].w);
    wd->slots[i].seen = r;
  }
}

static void *watch(void *arg) {
  struct watchdog *wd = arg;
  pthread_mutex_lock(&wd->lock);
  while (!wd->stopping) {
    struct timespec ts = ns_timespec(clock_mono_ns() + SLICE_NS);
    pthread_cond_timedwait(&wd->cv, &wd->lock, &ts);
    if (!wd->stopping) scan(wd);
  }
  pthread_mutex_unlock(&wd->lock);
  return NULL;
}

struct watchdog *watchdog_new(watchdog_fn interrupt) {
  struct watchdog *wd = xcalloc(1, sizeof *wd);
  wd->interrupt = interrupt;
  pthread_mutex_init(&wd->lock, NULL);
  cond_init_monotonic(&wd->cv);
  if (pthread_create(&wd->thread, NULL, watch, wd) != 0) {
    pthread_mutex_destroy(&wd->lock);
    pthread_cond_destroy(&wd->cv);
    free(wd);
    return NULL;
  }
  return wd;
}

void watchdog_add(struct watchdog *wd, struct worker *w) {
  if (!wd) return;
  pthread_mutex_lock(&wd->lock);
  if (wd->n == wd->cap) {
    wd->cap = wd->cap ? wd->cap * 2 : 8;
    wd->slots = xrealloc(wd->slots, wd->cap * sizeof *wd->slots);
  }
  wd->slots[wd->n++] = (struct slot){w, 0};
  pthread_mutex_unlock(&wd->lock);
}

void watchdog_free(struct watchdog *wd) {
  if (!wd) return;
  pthread_mutex_lock(&wd->lock);
  wd->stopping = 1;
  pthread_cond_signal(&wd->cv);
  pthread_mutex_unlock(&wd->lock);
  pthread_join(wd->thread, NULL);
  pthread_mutex_destroy(&wd->lock);
  pthread_cond_destroy(&wd->cv);
  free(wd->slots);
  free(wd);
}
