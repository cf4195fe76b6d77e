/*
** jobq_index.c — the in-memory indexes of a job queue (jobq_impl.h): the `ready` heap
** (priority, seq) and the `delayed` heap (run_at, seq) a waiting job is in exactly one of,
** and the id hash table plus `all` (seq order) every job is in.
** Threads: the caller holds q->lock for every function here.
*/
#include "jobq_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- heaps ----------------------------------------------------------------------- */

static int before(const struct job *a, const struct job *b, int delayed) {
  if (delayed && a->run_at != b->run_at) return a->run_at < b->run_at;
  if (!delayed && a->priority != b->priority) return a->priority < b->priority;
  return a->seq < b->seq;
}

static void heap_set(struct heap *h, size_t i, struct job *j) { h->v[i] = j; j->hidx = i; }

static void heap_up(struct heap *h, size_t i, int delayed) {
  struct job *j = h->v[i];
  while (i > 0 && before(j, h->v[(i - 1) / 2], delayed)) {
    heap_set(h, i, h->v[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  heap_set(h, i, j);
}

static void heap_down(struct heap *h, size_t i, int delayed) {
  struct job *j = h->v[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && before(h->v[c + 1], h->v[c], delayed)) c++;
    if (!before(h->v[c], j, delayed)) break;
    heap_set(h, i, h->v[c]);
    i = c;
  }
  heap_set(h, i, j);
}

void jobq_heap_push(struct jobq *q, struct job *j, int delayed) {
  struct heap *h = delayed ? &q->delayed : &q->ready;
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 64;
    h->v = xrealloc(h->v, h->cap * sizeof *h->v);
  }
  j->heap = delayed ? 2 : 1;
  heap_set(h, h->n++, j);
  heap_up(h, h->n - 1, delayed);
}

void jobq_heap_remove(struct jobq *q, struct job *j) {
  if (!j->heap) return;
  int delayed = j->heap == 2;
  struct heap *h = delayed ? &q->delayed : &q->ready;
  size_t i = j->hidx;
  j->heap = 0;
  struct job *last = h->v[--h->n];
  if (i == h->n) return;
  heap_set(h, i, last);
  heap_up(h, i, delayed);
  heap_down(h, last->hidx, delayed);
}

/* ---- index ----------------------------------------------------------------------- */

struct job *jobq_find(struct jobq *q, const char *id) {
  uint64_t h = str_hash(id);
  for (struct job *j = q->buckets[h & (q->nbuckets - 1)]; j; j = j->hash_next)
    if (j->hash == h && strcmp(j->id, id) == 0) return j;
  return NULL;
}

void jobq_index_add(struct jobq *q, struct job *j);

void jobq_index_grow(struct jobq *q) {
  struct job **old = q->buckets;
  size_t n = q->nbuckets;
  q->nbuckets = n ? n * 2 : 1024;
  q->buckets = xcalloc(q->nbuckets, sizeof *q->buckets);
  for (size_t i = 0; i < n; i++)
    for (struct job *j = old[i], *next; j; j = next) {
      next = j->hash_next;
      j->hash_next = q->buckets[j->hash & (q->nbuckets - 1)];
      q->buckets[j->hash & (q->nbuckets - 1)] = j;
    }
  free(old);
}

void jobq_index_add(struct jobq *q, struct job *j) {
  if (q->nall + 1 > q->nbuckets) jobq_index_grow(q);
  j->hash = str_hash(j->id);
  struct job **b = &q->buckets[j->hash & (q->nbuckets - 1)];
  j->hash_next = *b;
  *b = j;
  if (q->nall == q->capall) {
    q->capall = q->capall ? q->capall * 2 : 1024;
    q->all = xrealloc(q->all, q->capall * sizeof *q->all);
  }
  q->all[q->nall++] = j;
}

void jobq_index_del(struct jobq *q, struct job *j) {
  for (struct job **p = &q->buckets[j->hash & (q->nbuckets - 1)]; *p; p = &(*p)->hash_next)
    if (*p == j) { *p = j->hash_next; break; }
}
