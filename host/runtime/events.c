/*
** events.c — see events.h. A send formats the message body once and posts one copy to
** each matching subscription's process; a subscription whose process is gone (the post
** failed) is taken off the bus after the send, under the write lock.
** Threads: any; `lock` guards `subs`; counters are relaxed atomics (statistics and the
** per-subscription buffer bound, which may be passed by the sends racing for its last slot:
** at most one extra per concurrent sender).
*/
#include "events.h"
#include "msg.h"
#include "proc.h"
#include "rt.h"
#include "base/util.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct evsub {
  _Atomic int refs;
  uint64_t id, pid;
  char *pattern, *kind;       /* kind NULL: every kind */
  int pattern_glob, kind_glob;
  size_t cap;
  _Atomic size_t queued;      /* sent, not yet taken */
  _Atomic uint64_t dropped;
  _Atomic int gone;           /* its process is gone, or it was closed */
};

struct evbus {
  struct rt *rt;
  pthread_rwlock_t lock;
  struct evsub **subs;
  size_t n, cap;
  _Atomic size_t active;      /* n, readable without the lock */
  _Atomic uint64_t next_id, sent, delivered, dropped;
};

/* The body: a header, then system, kind and path (not NUL-terminated), then the data. */
struct evhdr { uint8_t enc; uint8_t nsystem, nkind; uint8_t pad; uint32_t npath; };

struct evbus *evbus_new(struct rt *rt) {
  struct evbus *b = xcalloc(1, sizeof *b);
  b->rt = rt;
  pthread_rwlock_init(&b->lock, NULL);
  atomic_init(&b->next_id, 1);
  return b;
}

void evsub_unref(struct evsub *s) {
  if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
  free(s->pattern);
  free(s->kind);
  free(s);
}

void evbus_free(struct evbus *b) {
  if (!b) return;
  for (size_t i = 0; i < b->n; i++) evsub_unref(b->subs[i]);
  free(b->subs);
  pthread_rwlock_destroy(&b->lock);
  free(b);
}

static int is_glob(const char *s) { return strpbrk(s, "*?[") != NULL; }

static int name_ok(const char *s, char *err, size_t errlen, const char *what) {
  size_t n = strlen(s);
  if (n && n <= EV_NAME_MAX) return 0;
  snprintf(err, errlen, "%s must be 1 to %d bytes", what, EV_NAME_MAX);
  return -1;
}

struct evsub *evbus_subscribe(struct evbus *b, uint64_t pid, const char *pattern, const char *kind,
                              size_t cap, char *err, size_t errlen) {
  if (name_ok(pattern, err, errlen, "the system pattern") < 0 ||
      (kind && name_ok(kind, err, errlen, "the kind") < 0))
    return NULL;
  if (cap < 1 || cap > EV_CAP_MAX) {
    snprintf(err, errlen, "the buffer must be 1 to %d events", EV_CAP_MAX);
    return NULL;
  }
  struct evsub *s = xcalloc(1, sizeof *s);
  atomic_init(&s->refs, 2);
  s->pid = pid;
  s->pattern = xstrdup(pattern);
  s->pattern_glob = is_glob(pattern);
  s->kind = kind ? xstrdup(kind) : NULL;
  s->kind_glob = kind && is_glob(kind);
  s->cap = cap;
  pthread_rwlock_wrlock(&b->lock);
  if (b->n >= EV_SUBS_MAX) {
    pthread_rwlock_unlock(&b->lock);
    free(s->pattern); free(s->kind); free(s);
    snprintf(err, errlen, "the host has %d subscriptions already", EV_SUBS_MAX);
    return NULL;
  }
  s->id = atomic_fetch_add(&b->next_id, 1);
  if (b->n == b->cap) {
    b->cap = b->cap ? b->cap * 2 : 16;
    b->subs = xrealloc(b->subs, b->cap * sizeof *b->subs);
  }
  b->subs[b->n++] = s;
  atomic_store(&b->active, b->n);
  pthread_rwlock_unlock(&b->lock);
  return s;
}

/* Removes s from the list (write lock held); 1 if it was there. */
static int remove_locked(struct evbus *b, struct evsub *s) {
  for (size_t i = 0; i < b->n; i++) {
    if (b->subs[i] != s) continue;
    b->subs[i] = b->subs[--b->n];
    atomic_store(&b->active, b->n);
    return 1;
  }
  return 0;
}

void evsub_close(struct evbus *b, struct evsub *s) {
  atomic_store(&s->gone, 1);
  pthread_rwlock_wrlock(&b->lock);
  int was = remove_locked(b, s);
  pthread_rwlock_unlock(&b->lock);
  if (was) evsub_unref(s);
}

uint64_t evsub_id(const struct evsub *s) { return s->id; }
uint64_t evsub_dropped(const struct evsub *s) { return atomic_load_explicit(&s->dropped, memory_order_relaxed); }

void evsub_taken(struct evsub *s) {
  size_t q = atomic_load_explicit(&s->queued, memory_order_relaxed);
  while (q && !atomic_compare_exchange_weak(&s->queued, &q, q - 1)) {}
}

int evbus_active(const struct evbus *b) { return b && atomic_load_explicit(&b->active, memory_order_relaxed) > 0; }

static int matches(const char *pat, int glob, const char *s) {
  return glob ? fnmatch(pat, s, 0) == 0 : strcmp(pat, s) == 0;
}

static int send_checks(const char *system, const char *kind, const char *path, size_t len,
                       char *err, size_t errlen) {
  if (name_ok(system, err, errlen, "the system") < 0 || name_ok(kind, err, errlen, "the kind") < 0)
    return -1;
  if (strlen(path) > EV_PATH_MAX) {
    snprintf(err, errlen, "the path must be at most %d bytes", EV_PATH_MAX);
    return -1;
  }
  if (len > EV_DATA_MAX) {
    snprintf(err, errlen, "the data must be at most %u bytes packed", EV_DATA_MAX);
    return -1;
  }
  return 0;
}

/* Takes off the bus the subscriptions whose process is gone. */
static void sweep(struct evbus *b) {
  pthread_rwlock_wrlock(&b->lock);
  for (size_t i = b->n; i-- > 0;) {
    struct evsub *s = b->subs[i];
    if (!atomic_load(&s->gone)) continue;
    b->subs[i] = b->subs[--b->n];
    evsub_unref(s);
  }
  atomic_store(&b->active, b->n);
  pthread_rwlock_unlock(&b->lock);
}

void evbus_format(struct buf *out, const char *system, const char *kind, const char *path,
                  enum ev_data enc, const void *data, size_t len) {
  struct evhdr h = {(uint8_t)enc, (uint8_t)strlen(system), (uint8_t)strlen(kind), 0, (uint32_t)strlen(path)};
  buf_add(out, &h, sizeof h);
  buf_add(out, system, h.nsystem);
  buf_add(out, kind, h.nkind);
  buf_add(out, path, h.npath);
  if (len) buf_add(out, data, len);
}

int evbus_send(struct evbus *b, uint64_t from, struct proc *waker, const char *system,
               const char *kind, const char *path, enum ev_data enc, const void *data,
               size_t len, char *err, size_t errlen) {
  if (send_checks(system, kind, path, len, err, errlen) < 0) return -1;
  atomic_fetch_add_explicit(&b->sent, 1, memory_order_relaxed);
  if (!evbus_active(b)) return 0;
  struct buf body;
  buf_init(&body);
  evbus_format(&body, system, kind, path, enc, data, len);
  int delivered = 0, gone = 0;
  pthread_rwlock_rdlock(&b->lock);
  for (size_t i = 0; i < b->n; i++) {
    struct evsub *s = b->subs[i];
    if (atomic_load_explicit(&s->gone, memory_order_relaxed) ||
        !matches(s->pattern, s->pattern_glob, system) || (s->kind && !matches(s->kind, s->kind_glob, kind)))
      continue;
    if (atomic_fetch_add_explicit(&s->queued, 1, memory_order_relaxed) >= s->cap) {
      atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
      continue;
    }
    char topic[32];
    int tn = snprintf(topic, sizeof topic, "@events:%" PRIu64, s->id);
    struct msg *m = msg_new(MK_USER, from, topic, (size_t)tn, body.data, body.len);
    m->at = clock_wall_ns();
    if (proc_post(b->rt, s->pid, m, waker) != 0) {
      atomic_store(&s->gone, 1);
      gone = 1;
      continue;
    }
    delivered++;
  }
  pthread_rwlock_unlock(&b->lock);
  buf_free(&body);
  atomic_fetch_add_explicit(&b->delivered, (uint64_t)delivered, memory_order_relaxed);
  if (gone) sweep(b);
  return delivered;
}

void evbus_host(struct evbus *b, const char *system, const char *kind, const char *path,
                const char *json) {
  char err[128];
  if (evbus_active(b))
    evbus_send(b, 0, NULL, system, kind, path, json ? EV_DATA_JSON : EV_DATA_NONE, json,
               json ? strlen(json) : 0, err, sizeof err);
}

int evbus_parse(const struct msg *m, struct evparts *out) {
  struct evhdr h;
  if (m->len < sizeof h) return -1;
  const char *p = msg_body(m);
  memcpy(&h, p, sizeof h);
  size_t need = sizeof h + (size_t)h.nsystem + h.nkind + h.npath;
  if (need > m->len || h.enc > EV_DATA_JSON) return -1;
  p += sizeof h;
  *out = (struct evparts){p, p + h.nsystem, p + h.nsystem + h.nkind, h.nsystem, h.nkind, h.npath,
                          (enum ev_data)h.enc, msg_body(m) + need, m->len - need};
  return 0;
}

uint64_t evbus_topic_sub(const char *topic) {
  if (strncmp(topic, "@events:", 8) != 0) return 0;
  char *end;
  unsigned long long id = strtoull(topic + 8, &end, 10);
  return *end ? 0 : (uint64_t)id;
}

void evbus_stats(struct evbus *b, struct evbus_stats *out) {
  out->sent = atomic_load(&b->sent);
  out->delivered = atomic_load(&b->delivered);
  out->dropped = atomic_load(&b->dropped);
  out->subscriptions = atomic_load(&b->active);
}
