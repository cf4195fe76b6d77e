/*
** dash_hist.c — see dash_hist.h. Storage: cap + 1 slots, so the slot being written
** (between dhist_begin and dhist_end) is never one a reader is shown; `n` counts only the
** finished samples (at most cap). Each series has a value per slot (NAN = null).
** Threads: the sampler thread writes, any thread reads; `lock` guards everything, and is
** held only for a put or a read, never while the sampler collects.
*/
#include "dash_hist.h"
#include "base/util.h"
#include "value/json.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
  char name[DH_NAME_MAX + 1];
  double *v;                  /* slots values, NAN = none */
  double prev_total;          /* counters: the previous total and its time */
  int64_t prev_t;
  int has_prev;
};

struct dhist {
  pthread_mutex_t lock;
  size_t cap, slots, max;
  int64_t *t;                 /* slot times, ms */
  size_t head;                /* the slot the next (or current) sample is written to */
  size_t n;                   /* finished samples, at most cap */
  struct series *s;
  size_t ns;
  uint64_t dropped;
};

struct dhist *dhist_new(size_t cap, size_t max_series) {
  struct dhist *h = xcalloc(1, sizeof *h);
  pthread_mutex_init(&h->lock, NULL);
  h->cap = cap ? cap : 1;
  h->slots = h->cap + 1;
  h->max = max_series;
  h->t = xcalloc(h->slots, sizeof *h->t);
  h->s = xcalloc(max_series ? max_series : 1, sizeof *h->s);
  return h;
}

void dhist_free(struct dhist *h) {
  if (!h) return;
  for (size_t i = 0; i < h->ns; i++) free(h->s[i].v);
  free(h->s);
  free(h->t);
  pthread_mutex_destroy(&h->lock);
  free(h);
}

void dhist_begin(struct dhist *h, int64_t t_ms) {
  pthread_mutex_lock(&h->lock);
  h->t[h->head] = t_ms;
  for (size_t i = 0; i < h->ns; i++) h->s[i].v[h->head] = NAN;
  pthread_mutex_unlock(&h->lock);
}

/* Under lock: the series called name, made when there is room; NULL (dropped) otherwise. */
static struct series *find(struct dhist *h, const char *name, int make) {
  char cut[DH_NAME_MAX + 1];
  snprintf(cut, sizeof cut, "%s", name);
  for (size_t i = 0; i < h->ns; i++)
    if (strcmp(h->s[i].name, cut) == 0) return &h->s[i];
  if (!make) return NULL;
  if (h->ns == h->max) { h->dropped++; return NULL; }
  struct series *s = &h->s[h->ns++];
  memcpy(s->name, cut, sizeof cut);
  s->v = xmalloc(h->slots * sizeof *s->v);
  for (size_t i = 0; i < h->slots; i++) s->v[i] = NAN;
  return s;
}

void dhist_put(struct dhist *h, const char *name, double v) {
  pthread_mutex_lock(&h->lock);
  struct series *s = find(h, name, 1);
  if (s) s->v[h->head] = v;
  pthread_mutex_unlock(&h->lock);
}

void dhist_count(struct dhist *h, const char *name, double total) {
  pthread_mutex_lock(&h->lock);
  struct series *s = find(h, name, 1);
  if (s) {
    int64_t t = h->t[h->head];
    double rate = NAN;
    if (s->has_prev && t > s->prev_t && total >= s->prev_total)
      rate = (total - s->prev_total) * 1000.0 / (double)(t - s->prev_t);
    s->v[h->head] = rate;
    s->prev_total = total;
    s->prev_t = t;
    s->has_prev = 1;
  }
  pthread_mutex_unlock(&h->lock);
}

void dhist_end(struct dhist *h) {
  pthread_mutex_lock(&h->lock);
  h->head = (h->head + 1) % h->slots;
  if (h->n < h->cap) h->n++;
  pthread_mutex_unlock(&h->lock);
}

/* Under lock: the slot of the i-th finished sample, oldest first. */
static size_t slot_of(const struct dhist *h, size_t i) {
  return (h->head + h->slots - h->n + i) % h->slots;
}

static void put_num(struct buf *b, double v) {
  if (isnan(v) || isinf(v)) buf_adds(b, "null");
  else buf_printf(b, "%.6g", v);
}

void dhist_json(struct dhist *h, int64_t since_ms, struct buf *out) {
  pthread_mutex_lock(&h->lock);
  size_t first = 0;
  while (first < h->n && h->t[slot_of(h, first)] <= since_ms) first++;
  buf_adds(out, "{\"t\":[");
  for (size_t i = first; i < h->n; i++)
    buf_printf(out, "%s%lld", i > first ? "," : "", (long long)h->t[slot_of(h, i)]);
  buf_adds(out, "],\"series\":{");
  for (size_t k = 0; k < h->ns; k++) {
    if (k) buf_addc(out, ',');
    json_put_string(out, h->s[k].name, strlen(h->s[k].name));
    buf_adds(out, ":[");
    for (size_t i = first; i < h->n; i++) {
      if (i > first) buf_addc(out, ',');
      put_num(out, h->s[k].v[slot_of(h, i)]);
    }
    buf_addc(out, ']');
  }
  buf_printf(out, "},\"dropped\":%llu}", (unsigned long long)h->dropped);
  pthread_mutex_unlock(&h->lock);
}

double dhist_last(struct dhist *h, const char *name) {
  pthread_mutex_lock(&h->lock);
  struct series *s = h->n ? find(h, name, 0) : NULL;
  double v = s ? s->v[slot_of(h, h->n - 1)] : NAN;
  pthread_mutex_unlock(&h->lock);
  return v;
}

size_t dhist_len(struct dhist *h) {
  pthread_mutex_lock(&h->lock);
  size_t n = h->n;
  pthread_mutex_unlock(&h->lock);
  return n;
}
