/*
** diag.c — see diag.h.
*/
#include "diag.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void diag_init(struct diag *d) { memset(d, 0, sizeof *d); }

void diag_free(struct diag *d) {
  for (size_t i = 0; i < d->n; i++) free(d->items[i]);
  free(d->items);
  diag_init(d);
}

void diag_add(struct diag *d, int is_error, const char *file, int line, const char *fmt, ...) {
  struct buf b;
  buf_init(&b);
  if (file && line > 0) buf_printf(&b, "%s:%d: ", file, line);
  else if (file) buf_printf(&b, "%s: ", file);
  if (!is_error) buf_adds(&b, "warning: ");
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(&b, fmt, ap);
  va_end(ap);
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 8;
    d->items = xrealloc(d->items, d->cap * sizeof *d->items);
  }
  d->items[d->n++] = buf_steal(&b);
  if (is_error) d->errors++;
  else d->warnings++;
}
