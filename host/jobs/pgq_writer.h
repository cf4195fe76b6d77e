/*
** pgq_writer.h — shared by the files of a Postgres queue's writer thread: pgq_writer.c
** (connections, rounds, publishes, claims, leases, maintenance) and pgq_finish.c (job
** outcomes). Not for other modules.
**
** Threads: everything declared here runs on the writer thread, which owns w->c and w->lc.
*/
#ifndef TASKHOST_PGQ_WRITER_H
#define TASKHOST_PGQ_WRITER_H

#include "pgq_impl.h"
#include "value/json.h"

#include <string.h>

struct wstate {
  struct pgq *p;
  PGconn *c, *lc;                 /* work; LISTEN + leader lock */
  int leader, down_logged, deep;
  int64_t backoff_ms, next_connect, next_renew, next_poll, next_house, next_due;
  int64_t last_notify;
  int notify_pending;
  int prepared[8];                /* HOT[i] is prepared on c */
  char err[256];
};

static inline int64_t mono_ms(void) { return clock_mono_ns() / NS_PER_MS; }

static inline void pgq_put_str_or_null(struct buf *b, const char *s) {
  if (s) json_put_string(b, s, strlen(s));
  else buf_adds(b, "null");
}

/* Runs a statement on w's connection c (the round's statements as prepared ones); NULL on
** failure (the connection is dropped when it is gone; other errors are in w->err). */
PGresult *pgq_wexec(struct wstate *w, PGconn *c, const char *sql, int n, const char *const *vals);

/* pgq_finish.c */
extern const char PGQ_SQL_FINISH[];       /* ($1 outcomes as JSON, $2 owner) → applied seqs */
void pgq_fins_json(struct pgq_fin *list, struct buf *b);
/* The finish UPDATE's result r for the outcomes of list (counts, on_final, jobs freed); frees r. */
void pgq_fins_applied(struct wstate *w, struct pgq_fin *list, PGresult *r);
/* The batch UPDATE of list failed: requeue it (no connection) or write each on its own. */
void pgq_fins_retry(struct wstate *w, struct pgq_fin *list);
void pgq_fin_free(struct pgq_fin *f);

#endif
