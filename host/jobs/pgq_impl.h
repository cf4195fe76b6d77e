/*
** pgq_impl.h — the insides of the Postgres queue driver, shared by pgq.c (writer thread:
** publish, claim, finish, renew, leader work), pgq_view.c (reader thread: records, lists,
** counts, cancel, forget) and pgq_sql.c (connections, schema, statements). Not for other
** modules.
**
** Threads: fields under `lock` unless marked. A caller thread (publisher, consumer, job API)
** queues a request and waits on a waiter of its own; the writer and reader threads take
** `lock` only to move requests and claimed jobs in and out, never while SQL runs. Each thread
** owns its PGconn exclusively.
*/
#ifndef TASKHOST_PGQ_IMPL_H
#define TASKHOST_PGQ_IMPL_H

#include "jobq_impl.h"
#include "pgq.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

/* A publish waiting for its commit: malloc'd, and freed by pgq_pub_done, which settles its
** call. */
struct pgq_pub {
  struct pgq_pub *next;
  size_t n;
  const char *const *data;
  const size_t *lens;
  const struct jobq_publish_opts *o;
  char (*gen)[JOBQ_ID_MAX];     /* ids generated for the n jobs; NULL when o->id is given */
  char *id_out;                 /* keyed single publish: the id of the job (new or there) */
  size_t idlen;
  int existed;
  int rc;                       /* JQ_* */
  char err[200];
  struct jobq_call *call;
  struct jobq_publish_opts opts;  /* call of n > 1 jobs: o without id and key */
  char one[1][JOBQ_ID_MAX];     /* call of one unkeyed job: its generated id */
};

/* A claimed job's outcome waiting to be written (owned by the writer once queued). */
struct pgq_fin {
  struct pgq_fin *next;
  struct job *j;                /* freed once written (or dropped by fencing) */
  int state;                    /* new state */
  int undo;                     /* 1: the attempt did not run (requeue, cancel before start) */
  int64_t delay_ms;             /* retry: run again after this; -1 = keep run_at */
  char *result;                 /* JSON text or NULL */
  char *error;                  /* one history item {"attempt","at","error"} or NULL */
  char *errtext;                /* the error message for on_final, or NULL */
  size_t errlen;
};

/* A job API request for the reader thread: malloc'd, and freed by the reader once its call
** is settled. */
enum pgq_op_kind { OP_INFO, OP_RESULT, OP_LIST, OP_STATS, OP_CANCEL, OP_FORGET, OP_RETRY, OP_REQUEUE };
struct pgq_op {
  struct pgq_op *next;
  enum pgq_op_kind kind;
  const char *id;
  int state;                    /* OP_LIST filter (-1 all) */
  int64_t after;
  size_t limit;
  struct buf *out;
  int64_t next_cursor;
  int rc;
  struct jobq_call *call;
};

struct pgq {
  struct jobq_config cfg;
  char *name, *dsn;
  int64_t lease_ms, poll_ms;
  int notify;
  int64_t owner;                /* this host's id as lease holder (random per open) */
  pthread_mutex_t lock;
  pthread_cond_t cv;            /* consumers waiting for claimed jobs */
  int efd;                      /* eventfd: wakes the writer */
  pthread_t writer, reader;
  int writer_started, reader_started;
  /* requests */
  struct pgq_pub *pubs, **pubs_tail;
  struct pgq_fin *fins, **fins_tail;
  struct pgq_op *ops, **ops_tail;
  pthread_cond_t ops_cv;        /* the reader waits here */
  /* claimed jobs */
  struct job **buf;             /* claimed, not handed to a consumer yet */
  size_t nbuf, capbuf;
  struct job **held;            /* every claimed job not finished: buffered, reserved, running */
  size_t nheld, capheld;
  size_t waiting;               /* consumer threads waiting in pgq_claim_batch */
  size_t running, reserved;
  int64_t run_ewma_ns;          /* recent attempts' run time (prefetch: pgq_writer.c) */
  int draining, stopped;
  int kick;                     /* something may be claimable: claim at the next round */
  int progress_dirty;           /* some held job has a progress not written yet */
  _Atomic int up;               /* the writer's connection works and the schema is ours */
  /* counts (stats) */
  struct jobq_stats st;         /* local counters: published, retries, finished, waits */
  struct waitlog waits;         /* enqueue→start times of the jobs this host began */
  size_t live_est;              /* unfinished jobs of the queue (all hosts) as last counted */
  size_t running_est;           /* running ones of all hosts, as last counted, plus this
                                   host's claims and minus its outcomes since */
  int64_t stats_at;             /* monotonic ns of the cached counts below */
  size_t by_state[JS_COUNT];
  uint64_t rnd;
};

/* pgq_sql.c */
PGconn *pgq_connect(const char *dsn, char *err, size_t errlen);
/* Creates the tables and functions when missing (under an advisory lock), or checks that the
** stored schema_version is one this host knows. 0, or -1 with err (newer schema, SQL error). */
int pgq_migrate(PGconn *c, char *err, size_t errlen);
/* Runs one statement with text params; returns the result when its status is ok
** (PGRES_COMMAND_OK / TUPLES_OK), else NULL with the server's message in err. */
PGresult *pgq_exec(PGconn *c, const char *sql, int n, const char *const *vals, char *err,
                   size_t errlen);
/* As pgq_exec, through a prepared statement `name` of sql on c (prepared first unless
** *prepared; a statement the server no longer knows, SQLSTATE 26000, is prepared again). */
PGresult *pgq_exec_prepared(PGconn *c, const char *name, const char *sql, int *prepared, int n,
                            const char *const *vals, char *err, size_t errlen);
/* A statement of a pipeline: a prepared statement (prepared first unless *prepared) and its
** params in; its result (NULL on failure, with err) out. */
struct pgq_stmt {
  const char *name, *sql;
  int *prepared;
  int n;
  const char *const *vals;
  PGresult *res;
  char err[256];
};
/* Sends the n statements in one round trip (libpq pipeline mode, a sync after each, so each
** is a transaction of its own and one failing does not abort the others); then
** pgq_pipeline_read reads the result of each in order (s[0] first), so the caller can act on
** the first before the others are executed. Both return 0, or -1 when the connection broke
** (the unread results stay NULL with an error; stop reading). When a prepare fails nothing
** is sent: every statement fails with that error and send returns 1 (nothing to read). */
int pgq_pipeline_send(PGconn *c, struct pgq_stmt *s, int n);
int pgq_pipeline_read(PGconn *c, struct pgq_stmt *s, int last);   /* last: leave pipeline mode */
int pgq_conn_bad(PGconn *c);    /* the connection is gone (reconnect) */
/* One history item {"attempt":a,"at":ms,"error":"msg"} (malloc'd). */
char *pgq_error_item(int attempt, int64_t at_ms, const char *msg, size_t len);
/* A job record as jobq_job_info shows it, from a row of PGQ_RECORD_COLS at row i. */
void pgq_put_record(const char *queue, PGresult *r, int i, struct buf *out);
int64_t pgq_int(PGresult *r, int i, int col);   /* 0 for NULL */

/* The columns pgq_put_record reads, in order (select list over taskhost_jobs). */
extern const char PGQ_RECORD_COLS[];
enum { RC_JID, RC_STATE, RC_ATTEMPT, RC_MAXR, RC_PRIO, RC_CREATED, RC_RUNAT, RC_STARTED,
       RC_FINISHED, RC_HEADERS, RC_PROGRESS, RC_RESULT, RC_ERRORS, RC_SEQ, RC_NCOLS };

/* pgq.c, for the writer */
uint64_t pgq_rand(struct pgq *p);                         /* lock held (or before threads) */
void pgq_job_free(struct job *j);
void pgq_held_remove(struct pgq *p, struct job *j);       /* lock held */
void pgq_wake_writer(struct pgq *p);
void pgq_cancel_local(struct pgq *p, int64_t seq);        /* lock held: flag + wake */
void pgq_pub_done(struct pgq_pub *u);     /* the writer answered u: settle its call */
/* A publish with a caller-given id or an idempotency key: written on its own, ON CONFLICT
** naming the job already there (its id_out is set by the writer). */
static inline int pgq_pub_keyed(const struct pgq_pub *u) { return u->o->id || u->o->idem_key; }

/* pgq_view.c, for pgq_call_start */
void pgq_op_start(struct pgq *p, struct jobq_call *c);

/* pgq_writer.c */
void *pgq_writer_main(void *arg);

/* pgq_view.c */
void *pgq_reader_main(void *arg);

#endif
