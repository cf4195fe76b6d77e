/*
** strmap.c — chained hash buckets under one mutex; the bucket array doubles when the map
** holds twice as many keys as buckets. Keys are never removed (a storage's keys are few).
*/
#include "strmap.h"
#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct node {
  struct node *next;
  uint64_t h;
  char *key, *val;
};

struct strmap {
  pthread_mutex_t mu;
  struct node **b;
  size_t nb, n;
};

static uint64_t fnv(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

struct strmap *strmap_new(void) {
  struct strmap *m = xcalloc(1, sizeof *m);
  pthread_mutex_init(&m->mu, NULL);
  m->nb = 16;
  m->b = xcalloc(m->nb, sizeof *m->b);
  return m;
}

void strmap_free(struct strmap *m) {
  if (!m) return;
  for (size_t i = 0; i < m->nb; i++)
    for (struct node *x = m->b[i], *nx; x; x = nx) {
      nx = x->next;
      free(x->key);
      free(x->val);
      free(x);
    }
  free(m->b);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static struct node *lookup(struct strmap *m, const char *key, uint64_t h) {
  for (struct node *x = m->b[h & (m->nb - 1)]; x; x = x->next)
    if (x->h == h && strcmp(x->key, key) == 0) return x;
  return NULL;
}

static void grow(struct strmap *m) {
  size_t nb = m->nb * 2;
  struct node **b = xcalloc(nb, sizeof *b);
  for (size_t i = 0; i < m->nb; i++)
    for (struct node *x = m->b[i], *nx; x; x = nx) {
      nx = x->next;
      x->next = b[x->h & (nb - 1)];
      b[x->h & (nb - 1)] = x;
    }
  free(m->b);
  m->b = b;
  m->nb = nb;
}

char *strmap_get(struct strmap *m, const char *key) {
  uint64_t h = fnv(key);
  pthread_mutex_lock(&m->mu);
  struct node *x = lookup(m, key, h);
  char *v = x ? xstrdup(x->val) : NULL;
  pthread_mutex_unlock(&m->mu);
  return v;
}

void strmap_set(struct strmap *m, const char *key, const char *value) {
  uint64_t h = fnv(key);
  char *v = xstrdup(value);
  pthread_mutex_lock(&m->mu);
  struct node *x = lookup(m, key, h);
  if (x) {
    free(x->val);
    x->val = v;
  } else {
    x = xmalloc(sizeof *x);
    *x = (struct node){m->b[h & (m->nb - 1)], h, xstrdup(key), v};
    m->b[h & (m->nb - 1)] = x;
    if (++m->n > 2 * m->nb) grow(m);
  }
  pthread_mutex_unlock(&m->mu);
}
