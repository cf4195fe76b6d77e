/*
** diag.h — diagnostics: the problems found while loading or checking a project, each as
** "file:line: message" (or "file: message"), warnings marked, errors and warnings counted.
** Used by the registry loader, the route builder, the app and `taskhost check`.
** Threads: a struct diag belongs to the caller that made it; no shared state.
*/
#ifndef TASKHOST_DIAG_H
#define TASKHOST_DIAG_H

#include <stddef.h>

/* Diagnostics: each problem as "file:line: message". */
struct diag {
  char **items;
  size_t n, cap;
  int errors, warnings;
};
void diag_init(struct diag *d);
void diag_free(struct diag *d);
void diag_add(struct diag *d, int is_error, const char *file, int line, const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));

#endif
