/*
** poolset.c — see poolset.h.
*/
#include "poolset.h"
#include "funcpool.h"
#include "rt.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "value/val.h"
#include "base/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct poolset {
  struct rt *rt;
  struct codeset *code;
  pthread_mutex_t lock;
  struct { const char *func; struct funcpool *fp; } *v;   /* func: the entry's id (the code's) */
  size_t n;
  int refs;
};

struct poolset *poolset_new(struct rt *rt, struct codeset *code) {
  struct poolset *ps = xcalloc(1, sizeof *ps);
  ps->rt = rt;
  ps->code = codeset_ref(code);
  ps->refs = 1;
  pthread_mutex_init(&ps->lock, NULL);
  return ps;
}

struct funcpool *poolset_get(struct poolset *ps, const char *func) {
  pthread_mutex_lock(&ps->lock);
  struct funcpool *fp = NULL;
  for (size_t i = 0; i < ps->n && !fp; i++)
    if (strcmp(ps->v[i].func, func) == 0) fp = ps->v[i].fp;
  const struct code *c = fp ? NULL : codeset_get(ps->code, func);
  if (c && strcmp(c->e->kind, "function.lua") == 0) {
    size_t max = (size_t)val_int(val_path(c->e->data, "pool.max_size"), 100);
    fp = funcpool_new(ps->rt, c, rt_background_sched(ps->rt, val_str(val_path(c->e->data, "pool.host"), NULL)), max);
    ps->v = xrealloc(ps->v, (ps->n + 1) * sizeof *ps->v);
    ps->v[ps->n].func = c->e->id;
    ps->v[ps->n++].fp = fp;
  }
  pthread_mutex_unlock(&ps->lock);
  return fp;
}

void poolset_ref(struct poolset *ps) {
  pthread_mutex_lock(&ps->lock);
  ps->refs++;
  pthread_mutex_unlock(&ps->lock);
}

int poolset_unref(struct poolset *ps) {
  pthread_mutex_lock(&ps->lock);
  int last = --ps->refs == 0;
  pthread_mutex_unlock(&ps->lock);
  if (!last) return 0;
  for (size_t i = 0; i < ps->n; i++) {
    funcpool_quiet(ps->v[i].fp);
    funcpool_free(ps->v[i].fp);
  }
  free(ps->v);
  codeset_unref(ps->code);
  pthread_mutex_destroy(&ps->lock);
  free(ps);
  return 1;
}

const struct codeset *poolset_code(const struct poolset *ps) { return ps->code; }

size_t poolset_pools(struct poolset *ps) {
  pthread_mutex_lock(&ps->lock);
  size_t n = ps->n;
  pthread_mutex_unlock(&ps->lock);
  return n;
}
