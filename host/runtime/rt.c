/*
** rt.c — see rt.h.
*/
#include "rt.h"
#include "registry/code.h"
#include "proc.h"
#include "registry/registry.h"
#include "scheduler.h"
#include "base/strmap.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct name_ent { struct name_ent *next; char *name; uint64_t pid; };

struct rt *rt_new(const char *project_dir) {
  struct rt *rt = xcalloc(1, sizeof *rt);
  rt->project_dir = project_dir;
  pthread_mutex_init(&rt->gen_lock, NULL);
  pthread_rwlock_init(&rt->pid_lock, NULL);
  pthread_mutex_init(&rt->name_lock, NULL);
  hmap_init(&rt->pids);
  hmap_init(&rt->names);
  atomic_store(&rt->next_pid, 1);
  rt->env_memory = strmap_new();
  return rt;
}

void rt_free(struct rt *rt) {
  if (!rt) return;
  strmap_free(rt->env_memory);
  for (size_t i = 0; i < rt->names.cap; i++) {
    struct name_ent *e = rt->names.vals[i];
    while (e) { struct name_ent *n = e->next; free(e->name); free(e); e = n; }
  }
  hmap_free(&rt->names);
  hmap_free(&rt->pids);
  for (size_t i = 0; i < rt->nscheds; i++) free(rt->scheds[i].id);
  free(rt->scheds);
  for (size_t i = 0; i < rt->nqueues; i++) free(rt->queues[i].id);
  free(rt->queues);
  for (size_t i = 0; i < rt->nold_tables; i++) free(rt->old_tables[i]);
  free(rt->old_tables);
  if (rt->code) codeset_unref(rt->code);
  if (rt->gen) registry_unref(rt->gen);
  pthread_mutex_destroy(&rt->gen_lock);
  pthread_rwlock_destroy(&rt->pid_lock);
  pthread_mutex_destroy(&rt->name_lock);
  free(rt);
}

void rt_set_generation(struct rt *rt, struct registry *gen, struct codeset *code) {
  pthread_mutex_lock(&rt->gen_lock);
  struct registry *old_gen = rt->gen;
  struct codeset *old_code = rt->code;
  rt->gen = gen;
  rt->code = code;
  pthread_mutex_unlock(&rt->gen_lock);
  if (old_code) codeset_unref(old_code);
  if (old_gen) registry_unref(old_gen);
}

struct codeset *rt_code(struct rt *rt) {
  pthread_mutex_lock(&rt->gen_lock);
  struct codeset *c = rt->code ? codeset_ref(rt->code) : NULL;
  pthread_mutex_unlock(&rt->gen_lock);
  return c;
}

/* Keeps a replaced table for rt_free: a reader on another thread may still walk it. */
static void keep_old(struct rt *rt, void *old) {
  if (!old) return;
  rt->old_tables = xrealloc(rt->old_tables, (rt->nold_tables + 1) * sizeof *rt->old_tables);
  rt->old_tables[rt->nold_tables++] = old;
}

void rt_add_sched(struct rt *rt, const char *id, struct sched *s, int terminal) {
  pthread_mutex_lock(&rt->gen_lock);     /* rt_list_scheds may copy from another thread */
  size_t n = atomic_load(&rt->nscheds);
  struct sched_ent *old = atomic_load(&rt->scheds), *t = xmalloc((n + 1) * sizeof *t);
  if (n) memcpy(t, old, n * sizeof *t);
  t[n] = (struct sched_ent){xstrdup(id), s, terminal};
  atomic_store_explicit(&rt->scheds, t, memory_order_release);
  atomic_store_explicit(&rt->nscheds, n + 1, memory_order_release);
  keep_old(rt, old);
  pthread_mutex_unlock(&rt->gen_lock);
}

size_t rt_list_scheds(struct rt *rt, struct sched_ent **out) {
  pthread_mutex_lock(&rt->gen_lock);
  size_t n = rt->nscheds;
  *out = xmalloc((n ? n : 1) * sizeof **out);
  if (n) memcpy(*out, rt->scheds, n * sizeof **out);
  pthread_mutex_unlock(&rt->gen_lock);
  return n;
}

size_t rt_list_queues(struct rt *rt, struct queue_ent **out) {
  pthread_mutex_lock(&rt->gen_lock);
  size_t n = rt->nqueues;
  *out = xmalloc((n ? n : 1) * sizeof **out);
  if (n) memcpy(*out, rt->queues, n * sizeof **out);
  pthread_mutex_unlock(&rt->gen_lock);
  return n;
}

struct sched *rt_find_sched(struct rt *rt, const char *id) {
  size_t n = atomic_load_explicit(&rt->nscheds, memory_order_acquire);
  struct sched_ent *t = atomic_load_explicit(&rt->scheds, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (strcmp(t[i].id, id) == 0) return t[i].s;
  return NULL;
}

struct sched *rt_background_sched(struct rt *rt, const char *id) {
  if (id) return rt_find_sched(rt, id);
  size_t n = atomic_load_explicit(&rt->nscheds, memory_order_acquire);
  struct sched_ent *t = atomic_load_explicit(&rt->scheds, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (!t[i].terminal) return t[i].s;
  return NULL;
}

void rt_add_queue(struct rt *rt, const char *id, struct jobq *q) {
  pthread_mutex_lock(&rt->gen_lock);
  size_t n = atomic_load(&rt->nqueues);
  struct queue_ent *old = atomic_load(&rt->queues), *t = xmalloc((n + 1) * sizeof *t);
  if (n) memcpy(t, old, n * sizeof *t);
  t[n] = (struct queue_ent){xstrdup(id), q};
  atomic_store_explicit(&rt->queues, t, memory_order_release);
  atomic_store_explicit(&rt->nqueues, n + 1, memory_order_release);
  keep_old(rt, old);
  pthread_mutex_unlock(&rt->gen_lock);
}

struct jobq *rt_find_queue(struct rt *rt, const char *id) {
  size_t n = atomic_load_explicit(&rt->nqueues, memory_order_acquire);
  struct queue_ent *t = atomic_load_explicit(&rt->queues, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (strcmp(t[i].id, id) == 0) return t[i].q;
  return NULL;
}

void rt_add_service(struct rt *rt, const char *name, void *ptr) {
  if (rt->nservices == countof(rt->services)) abort();   /* a fixed set, known at build time */
  rt->services[rt->nservices++] = (struct service_ent){name, ptr};
}

void *rt_find_service(struct rt *rt, const char *name) {
  for (size_t i = 0; i < rt->nservices; i++)
    if (strcmp(rt->services[i].name, name) == 0) return rt->services[i].ptr;
  return NULL;
}

uint64_t rt_next_pid(struct rt *rt) { return atomic_fetch_add(&rt->next_pid, 1); }

void rt_pid_add(struct rt *rt, struct proc *p) {
  pthread_rwlock_wrlock(&rt->pid_lock);
  hmap_put(&rt->pids, p->pid, p);
  pthread_rwlock_unlock(&rt->pid_lock);
}

void rt_pid_remove(struct rt *rt, uint64_t pid) {
  pthread_rwlock_wrlock(&rt->pid_lock);
  hmap_del(&rt->pids, pid);
  pthread_rwlock_unlock(&rt->pid_lock);
}

struct proc *rt_pid_get(struct rt *rt, uint64_t pid) {
  pthread_rwlock_rdlock(&rt->pid_lock);
  struct proc *p = hmap_get(&rt->pids, pid);
  if (p) proc_ref(p);
  pthread_rwlock_unlock(&rt->pid_lock);
  return p;
}

void rt_foreach_proc(struct rt *rt, struct sched *s, void (*fn)(struct proc *, void *), void *ud) {
  pthread_rwlock_rdlock(&rt->pid_lock);
  for (size_t i = 0; i < rt->pids.cap; i++) {
    struct proc *p = rt->pids.keys[i] ? rt->pids.vals[i] : NULL;
    if (p && (!s || p->sched == s)) fn(p, ud);
  }
  pthread_rwlock_unlock(&rt->pid_lock);
}

char *rt_pid_format(char *buf, size_t len, const char *host, uint64_t pid) {
  snprintf(buf, len, "{%s|0x%05llx}", host ? host : "?", (unsigned long long)pid);
  return buf;
}

uint64_t rt_pid_parse(const char *s) {
  if (!s || s[0] != '{') return 0;
  const char *bar = strrchr(s, '|');
  if (!bar || bar[1] != '0' || (bar[2] != 'x' && bar[2] != 'X')) return 0;
  char *end;
  uint64_t pid = strtoull(bar + 3, &end, 16);
  if (end == bar + 3 || end[0] != '}' || end[1] != '\0') return 0;
  return pid;
}

uint64_t rt_resolve(struct rt *rt, const char *dest) {
  if (dest[0] == '{') return rt_pid_parse(dest);
  return rt_name_lookup(rt, dest);
}

int rt_name_register(struct rt *rt, const char *name, uint64_t pid, uint64_t *owner) {
  uint64_t h = str_hash(name);
  pthread_mutex_lock(&rt->name_lock);
  struct name_ent *head = hmap_get(&rt->names, h), *e;
  for (e = head; e; e = e->next)
    if (strcmp(e->name, name) == 0) break;
  int rc = 0;
  if (e && e->pid != pid) {
    if (owner) *owner = e->pid;
    rc = -1;
  } else if (!e) {
    e = xmalloc(sizeof *e);
    e->name = xstrdup(name);
    e->pid = pid;
    e->next = head;
    hmap_put(&rt->names, h, e);
  }
  pthread_mutex_unlock(&rt->name_lock);
  return rc;
}

uint64_t rt_name_lookup(struct rt *rt, const char *name) {
  uint64_t h = str_hash(name), pid = 0;
  pthread_mutex_lock(&rt->name_lock);
  for (struct name_ent *e = hmap_get(&rt->names, h); e; e = e->next)
    if (strcmp(e->name, name) == 0) { pid = e->pid; break; }
  pthread_mutex_unlock(&rt->name_lock);
  return pid;
}

int rt_name_unregister(struct rt *rt, const char *name, uint64_t pid) {
  uint64_t h = str_hash(name);
  int removed = 0;
  pthread_mutex_lock(&rt->name_lock);
  struct name_ent *head = hmap_get(&rt->names, h), *prev = NULL, *e;
  for (e = head; e; prev = e, e = e->next)
    if (strcmp(e->name, name) == 0) break;
  if (e && (pid == 0 || e->pid == pid)) {
    if (prev) prev->next = e->next;
    else if (e->next) hmap_put(&rt->names, h, e->next);
    else hmap_del(&rt->names, h);
    free(e->name);
    free(e);
    removed = 1;
  }
  pthread_mutex_unlock(&rt->name_lock);
  return removed;
}
