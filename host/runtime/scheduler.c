/*
** scheduler.c — see scheduler.h.
** The run queue is an intrusive FIFO (proc->run_next) under `lock`; `qlen` is read without
** the lock by spinning workers. `nsleep` counts workers parked on `cv`; a push signals only
** when one is parked.
*/
#include "scheduler.h"
#include "proc.h"
#include "task.h"
#include "worker.h"
#include "base/log.h"
#include "luaenv.h"
#include "rt.h"
#include "base/util.h"
#include "base/thstack.h"
#include "watchdog.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* An idle worker polls the queue SPIN_ROUNDS times with `pause`, then YIELD_ROUNDS times
** with sched_yield (other threads on these 2-core VMs get the CPU), then sleeps. */
#define SPIN_ROUNDS 200
#define YIELD_ROUNDS 20

struct sched {
  struct rt *rt;
  char *name;
  pthread_mutex_t lock;
  pthread_cond_t cv;
  struct proc *head, *tail;
  _Atomic long qlen;
  int nsleep;
  int stopping;
  _Atomic int closed;
  int nworkers;
  struct worker *workers;
  pthread_t *threads;
  struct watchdog *watchdog;
  _Atomic long nprocs;
  _Atomic uint64_t nstarted;   /* processes ever added (metrics); relaxed */
  _Atomic uint64_t busy_ns;    /* time the workers spent running processes (metrics); relaxed */
  pthread_mutex_t empty_lock;
  pthread_cond_t empty_cv;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void enqueue_locked(struct sched *s, struct proc *p) {
  p->run_next = NULL;
  if (s->tail) s->tail->run_next = p;
  else s->head = p;
  s->tail = p;
  atomic_fetch_add_explicit(&s->qlen, 1, memory_order_release);
  if (s->nsleep > 0) pthread_cond_signal(&s->cv);
}

static struct proc *dequeue_locked(struct sched *s) {
  struct proc *p = s->head;
  if (!p) return NULL;
  s->head = p->run_next;
  if (!s->head) s->tail = NULL;
  atomic_fetch_sub_explicit(&s->qlen, 1, memory_order_relaxed);
  return p;
}

void sched_push(struct sched *s, struct proc *p, struct proc *waker) {
  /* a waker running on one of our workers keeps the wakee on its thread */
  struct worker *w = (waker && waker->sched == s) ? waker->worker : NULL;
  if (w) {
    struct proc *old = w->runnext;
    w->runnext = p;
    if (!old) return;
    p = old;
  }
  pthread_mutex_lock(&s->lock);
  enqueue_locked(s, p);
  pthread_mutex_unlock(&s->lock);
}

/* A worker about to sleep returns the pages of closed states to the OS once TRIM_AFTER
** bytes of Lua heap were closed since the last trim (a burst of processes or detached
** function states ended): glibc keeps free pages inside its arenas until malloc_trim. At
** most one trim per TRIM_EVERY_NS (a trim walks every arena); a worker that finds one due
** but too early sleeps only until it is allowed, so the end of a burst is trimmed too. */
#define TRIM_AFTER ((uint64_t)1 << 20)
#define TRIM_EVERY_NS (100 * NS_PER_MS)

/* Trims if due; returns 0, or the monotonic time at which a pending trim is allowed. */
static int64_t trim_if_due(struct rt *rt) {
  if (atomic_load_explicit(&rt->heap_closed, memory_order_relaxed) < TRIM_AFTER) return 0;
  int64_t now = clock_mono_ns(), last = atomic_load(&rt->last_trim);
  if (now - last < TRIM_EVERY_NS) return last + TRIM_EVERY_NS;
  if (!atomic_compare_exchange_strong(&rt->last_trim, &last, now)) return 0;  /* another worker */
  atomic_store(&rt->heap_closed, 0);
  malloc_trim(0);
  return 0;
}

/* Spins for a while watching qlen, then sleeps. Returns a process or NULL on stop. */
static struct proc *next_proc(struct sched *s) {
  for (int i = 0; i < SPIN_ROUNDS + YIELD_ROUNDS; i++) {
    if (atomic_load_explicit(&s->qlen, memory_order_acquire) > 0) break;
    if (i < SPIN_ROUNDS) cpu_relax();
    else sched_yield();
  }
  int64_t trim_at = 0;
  if (atomic_load_explicit(&s->qlen, memory_order_acquire) == 0) trim_at = trim_if_due(s->rt);
  pthread_mutex_lock(&s->lock);
  struct proc *p;
  while (!(p = dequeue_locked(s)) && !s->stopping) {
    s->nsleep++;
    if (trim_at) {
      struct timespec ts = ns_timespec(trim_at);
      pthread_cond_timedwait(&s->cv, &s->lock, &ts);
    } else {
      pthread_cond_wait(&s->cv, &s->lock);
    }
    s->nsleep--;
    if (trim_at && clock_mono_ns() >= trim_at) {
      pthread_mutex_unlock(&s->lock);
      trim_at = trim_if_due(s->rt);
      pthread_mutex_lock(&s->lock);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return p;
}

/* Adds the busy stretch that began at `since` to the host's busy time; returns now. */
static int64_t add_busy(struct sched *s, int64_t since) {
  int64_t now = clock_mono_ns();
  atomic_fetch_add_explicit(&s->busy_ns, (uint64_t)(now - since), memory_order_relaxed);
  return now;
}

/* A worker is busy from the moment it has a process until it looks for the next one in the
** run queue (spinning and sleeping there are idle); a chain of runnext hand-offs, which
** never looks, reports its busy time every BUSY_EVERY steps. The clock is read only at
** those edges, never per step of a runnext chain. */
#define BUSY_EVERY 64

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct sched *s = w->s;
  int64_t since = 0;                   /* start of the busy stretch not yet added */
  unsigned chained = 0;
  for (;;) {
    struct proc *p = w->runnext;
    w->runnext = NULL;
    if (p) {
      if (++chained % BUSY_EVERY == 0) since = add_busy(s, since);
    } else {
      if (since) add_busy(s, since);
      if (!(p = next_proc(s))) break;
      since = clock_mono_ns();
    }
    /* after proc_step returns 0, p may already run elsewhere or be freed: don't touch it */
    int again = proc_step(p, w);
    if (again) sched_push(s, p, NULL);
  }
  return NULL;
}

struct sched *sched_new(struct rt *rt, const char *name, int nworkers) {
  struct sched *s = xcalloc(1, sizeof *s);
  s->rt = rt;
  s->name = xstrdup(name);
  if (nworkers <= 0) nworkers = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nworkers <= 0) nworkers = 1;
  s->nworkers = nworkers;
  pthread_mutex_init(&s->lock, NULL);
  cond_init_monotonic(&s->cv);           /* timed waits for a pending trim */
  pthread_mutex_init(&s->empty_lock, NULL);
  cond_init_monotonic(&s->empty_cv);
  s->workers = xcalloc((size_t)nworkers, sizeof *s->workers);
  s->threads = xcalloc((size_t)nworkers, sizeof *s->threads);
  return s;
}

int sched_start(struct sched *s) {
  for (int i = 0; i < s->nworkers; i++) {
    s->workers[i].s = s;
    s->workers[i].cache = luaenv_cache_new();
    s->workers[i].id = i;
    if (thstack_create(&s->threads[i], worker_main, &s->workers[i]) != 0) {
      log_error("%s: cannot start worker %d", s->name, i);
      s->nworkers = i;
      return -1;
    }
  }
  s->watchdog = watchdog_new(task_interrupt_worker);
  for (int i = 0; i < s->nworkers; i++) watchdog_add(s->watchdog, &s->workers[i]);
  return 0;
}

void sched_free(struct sched *s) {
  if (!s) return;
  pthread_mutex_lock(&s->lock);
  s->stopping = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->lock);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->threads[i], NULL);
  watchdog_free(s->watchdog);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->empty_lock);
  pthread_cond_destroy(&s->empty_cv);
  for (int i = 0; i < s->nworkers; i++) luaenv_cache_destroy(s->workers[i].cache);
  free(s->workers);
  free(s->threads);
  free(s->name);
  free(s);
}

const char *sched_name(const struct sched *s) { return s->name; }
int sched_workers(const struct sched *s) { return s->nworkers; }
void sched_close(struct sched *s) { atomic_store(&s->closed, 1); }
int sched_closed(struct sched *s) { return atomic_load(&s->closed); }
long sched_procs(struct sched *s) { return atomic_load(&s->nprocs); }

void sched_proc_added(struct sched *s) {
  atomic_fetch_add(&s->nprocs, 1);
  atomic_fetch_add_explicit(&s->nstarted, 1, memory_order_relaxed);
}
uint64_t sched_started(struct sched *s) { return atomic_load_explicit(&s->nstarted, memory_order_relaxed); }
long sched_queued(struct sched *s) { return atomic_load_explicit(&s->qlen, memory_order_relaxed); }
uint64_t sched_busy_ns(struct sched *s) { return atomic_load_explicit(&s->busy_ns, memory_order_relaxed); }

void sched_proc_removed(struct sched *s) {
  if (atomic_fetch_sub(&s->nprocs, 1) == 1) {
    pthread_mutex_lock(&s->empty_lock);
    pthread_cond_broadcast(&s->empty_cv);
    pthread_mutex_unlock(&s->empty_lock);
  }
}

int sched_wait_empty(struct sched *s, int64_t deadline_ns) {
  struct timespec ts = ns_timespec(deadline_ns);
  pthread_mutex_lock(&s->empty_lock);
  int rc = 0;
  while (atomic_load(&s->nprocs) > 0 && rc == 0)
    rc = pthread_cond_timedwait(&s->empty_cv, &s->empty_lock, &ts);
  int empty = atomic_load(&s->nprocs) == 0;
  pthread_mutex_unlock(&s->empty_lock);
  return empty ? 0 : -1;
}
