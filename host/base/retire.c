/*
** retire.c — see retire.h.
*/
#include "retire.h"
#include "util.h"

#include <stdlib.h>

struct retired {
  const void *obj;
  void (*release)(void *ud);
  void *ud;
  struct retired *next;
};

void retire_push(struct retire_list *l, const void *obj, void (*release)(void *ud), void *ud) {
  struct retired *r = xmalloc(sizeof *r);
  *r = (struct retired){obj, release, ud, l->head};
  l->head = r;
}

size_t retire_sweep(struct retire_list *l, int (*in_use)(void *ctx, const void *obj), void *ctx) {
  size_t left = 0;
  for (struct retired **p = &l->head; *p;) {
    struct retired *r = *p;
    if (in_use && in_use(ctx, r->obj)) { left++; p = &r->next; continue; }
    *p = r->next;
    if (r->release) r->release(r->ud);
    free(r);
  }
  return left;
}
