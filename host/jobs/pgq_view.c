/*
** pgq_view.c — the reader thread of a Postgres queue (pgq_impl.h): a job's record and
** result, pages of jobs, counts per state, cancel and forget, each one request at a time on
** a connection of its own so that they never wait behind the writer's batches.
**
** Threads: callers queue a pgq_op (pgq_op_start) under p->lock; the reader settles its
** call and hands it to its done hook (a synchronous caller waits for that, pgq_call_run).
** The reader thread owns its PGconn. While the writer has no connection (pgq_available() == 0) requests fail
** at once with JQ_UNAVAILABLE instead of waiting for a connect timeout.
*/
#include "pgq_impl.h"
#include "base/log.h"
#include "value/json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_CACHE_NS (50 * NS_PER_MS)

static const char SHOWN_STATE[] = "CASE WHEN state IN (1, 3) AND run_at <= now() THEN 0 ELSE state END";

/* ---- the requests, on the reader thread ------------------------------------------------- */

static int op_info(struct pgq *p, PGconn *c, struct pgq_op *op, char *err, size_t errlen) {
  char sql[1024];
  snprintf(sql, sizeof sql, "SELECT %s FROM taskhost_jobs WHERE queue = $1 AND jid = $2", PGQ_RECORD_COLS);
  const char *vals[] = {p->name, op->id};
  PGresult *r = pgq_exec(c, sql, 2, vals, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  int rc = PQntuples(r) ? (int)pgq_int(r, 0, RC_STATE) : -1;
  if (rc >= 0) pgq_put_record(p->name, r, 0, op->out);
  PQclear(r);
  return rc;
}

static int op_result(struct pgq *p, PGconn *c, struct pgq_op *op, char *err, size_t errlen) {
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT %s, result, errors->-1->>'error' FROM taskhost_jobs"
           " WHERE queue = $1 AND jid = $2", SHOWN_STATE);
  const char *vals[] = {p->name, op->id};
  PGresult *r = pgq_exec(c, sql, 2, vals, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  int rc = PQntuples(r) ? (int)pgq_int(r, 0, 0) : -1;
  if (rc == JS_DONE) buf_adds(op->out, PQgetisnull(r, 0, 1) ? "null" : PQgetvalue(r, 0, 1));
  else if ((rc == JS_FAILED || rc == JS_CANCELLED) && !PQgetisnull(r, 0, 2))
    json_put_string(op->out, PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2));
  else if (rc == JS_FAILED || rc == JS_CANCELLED) buf_adds(op->out, "null");
  PQclear(r);
  return rc;
}

static int op_list(struct pgq *p, PGconn *c, struct pgq_op *op, char *err, size_t errlen) {
  char sql[1024], after[24], state[8], limit[24];
  snprintf(sql, sizeof sql, "SELECT %s FROM taskhost_jobs WHERE queue = $1 AND seq > $2"
           " AND ($3::int < 0 OR %s = $3::int) ORDER BY seq LIMIT $4", PGQ_RECORD_COLS, SHOWN_STATE);
  snprintf(after, sizeof after, "%" PRId64, op->after);
  snprintf(state, sizeof state, "%d", op->state);
  snprintf(limit, sizeof limit, "%zu", op->limit + 1);
  const char *vals[] = {p->name, after, state, limit};
  PGresult *r = pgq_exec(c, sql, 4, vals, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  size_t n = (size_t)PQntuples(r);
  buf_addc(op->out, '[');
  for (size_t i = 0; i < n && i < op->limit; i++) {
    if (i) buf_addc(op->out, ',');
    pgq_put_record(p->name, r, (int)i, op->out);
  }
  buf_addc(op->out, ']');
  op->next_cursor = n > op->limit && op->limit ? pgq_int(r, (int)op->limit - 1, RC_SEQ) : 0;
  PQclear(r);
  return 0;
}

/* Counts per state: each part reads one partial index (the unfinished ones are few; the
** finished ones are counted from their index alone, an index-only scan where vacuum has
** marked the pages all-visible) instead of a pass over every row the table keeps. */
static const char SQL_STATS[] =
  "SELECT 0, count(*), sum(octet_length(data)) FROM taskhost_jobs WHERE queue = $1 AND state = 0"
  " UNION ALL SELECT CASE WHEN run_at <= now() THEN 0 ELSE state END, count(*), sum(octet_length(data))"
  "  FROM taskhost_jobs WHERE queue = $1 AND state IN (1, 3) GROUP BY 1"
  " UNION ALL SELECT 2, count(*), sum(octet_length(data)) FROM taskhost_jobs WHERE queue = $1 AND state = 2"
  " UNION ALL SELECT state, count(*), 0 FROM taskhost_jobs WHERE queue = $1 AND state >= 4 GROUP BY state";

static int op_stats(struct pgq *p, PGconn *c, char *err, size_t errlen) {
  const char *vals[] = {p->name};
  PGresult *r = pgq_exec(c, SQL_STATS, 1, vals, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  pthread_mutex_lock(&p->lock);
  memset(p->by_state, 0, sizeof p->by_state);
  uint64_t bytes = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    int s = (int)pgq_int(r, i, 0);
    if (s < 0 || s >= JS_COUNT) continue;
    p->by_state[s] += (size_t)pgq_int(r, i, 1);
    if (!job_state_final(s)) bytes += (uint64_t)pgq_int(r, i, 2);
  }
  p->st.live_bytes = bytes;
  p->stats_at = clock_mono_ns();
  pthread_mutex_unlock(&p->lock);
  PQclear(r);
  return 0;
}

static int run_all(PGconn *c, const char *const *sqls, int n, const char *const *vals, int nvals,
                   char *err, size_t errlen) {
  for (int i = 0; i < n; i++) {
    PGresult *r = pgq_exec(c, sqls[i], nvals, vals, err, errlen);
    if (!r) return -1;
    PQclear(r);
  }
  return 0;
}

static int op_cancel(struct pgq *p, PGconn *c, struct pgq_op *op, char *err, size_t errlen) {
  PGresult *r = pgq_exec(c, "BEGIN", 0, NULL, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  PQclear(r);
  const char *vals[] = {p->name, op->id};
  r = pgq_exec(c, "SELECT seq, state, attempt FROM taskhost_jobs WHERE queue = $1 AND jid = $2 FOR UPDATE",
               2, vals, err, errlen);
  int was = !r ? JQ_UNAVAILABLE : PQntuples(r) ? (int)pgq_int(r, 0, 1) : -1;
  char seq[24] = "0";
  int attempt = r && PQntuples(r) ? (int)pgq_int(r, 0, 2) : 0;
  if (r && PQntuples(r)) snprintf(seq, sizeof seq, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  int ok = 1;
  static const char msg[] = "cancelled before it ran";
  if (was == JS_RUNNING) {
    static const char *const sqls[] = {
      "UPDATE taskhost_jobs SET cancel_requested = true WHERE seq = $1",
      "SELECT pg_notify('taskhost_cancel', $1)"};
    const char *sv[] = {seq};
    ok = run_all(c, sqls, 2, sv, 1, err, errlen) == 0;
  } else if (was >= 0 && !job_state_final(was)) {
    char *item = pgq_error_item(attempt, jobq_now_ms(), msg, sizeof msg - 1);
    const char *sv[] = {seq, item};
    static const char *const sqls[] = {
      "UPDATE taskhost_jobs SET state = 6, finished_at = now(), errors = coalesce(errors, '[]'::jsonb)"
      " || jsonb_build_array($2::jsonb) WHERE seq = $1"};
    ok = run_all(c, sqls, 1, sv, 2, err, errlen) == 0;
    free(item);
  }
  r = pgq_exec(c, ok && was >= 0 ? "COMMIT" : "ROLLBACK", 0, NULL, err, errlen);
  if (!r) ok = 0;
  PQclear(r);
  if (!ok) return JQ_UNAVAILABLE;
  if (was >= 0 && was != JS_RUNNING && !job_state_final(was) && p->cfg.on_final)
    p->cfg.on_final(p->cfg.on_final_ud, p->name, op->id, JS_CANCELLED, attempt, msg, sizeof msg - 1);
  return was;
}

static int op_forget(struct pgq *p, PGconn *c, struct pgq_op *op, char *err, size_t errlen) {
  const char *vals[] = {p->name, op->id};
  PGresult *r = pgq_exec(c, "DELETE FROM taskhost_jobs WHERE queue = $1 AND jid = $2 AND state >= 4"
                         " RETURNING seq", 2, vals, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  int deleted = PQntuples(r) > 0;
  PQclear(r);
  if (deleted) return 0;
  r = pgq_exec(c, "SELECT 1 FROM taskhost_jobs WHERE queue = $1 AND jid = $2", 2, vals, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  int rc = PQntuples(r) ? 1 : -1;
  PQclear(r);
  return rc;
}

/* Retry (a failed or cancelled job queued again, attempts afresh) or requeue (a scheduled or
** retrying one due now), in one transaction with a NOTIFY so every host's claimers look. A
** live job holding the same idempotency key makes the retry's UPDATE violate the key's
** unique index: JQ_CONFLICT, as jobq_retry. Capacity is not checked here: the database holds
** the jobs, and publishes check it from the counts. */
static int op_revive(struct pgq *p, PGconn *c, struct pgq_op *op, char *err, size_t errlen) {
  int requeue = op->kind == OP_REQUEUE;
  PGresult *r = pgq_exec(c, "BEGIN", 0, NULL, err, errlen);
  if (!r) return JQ_UNAVAILABLE;
  PQclear(r);
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT seq, %s, idem_key IS NOT NULL AND EXISTS (SELECT 1 FROM"
           " taskhost_jobs o WHERE o.queue = $1 AND o.idem_key = t.idem_key AND o.state < 4)"
           " FROM taskhost_jobs t WHERE queue = $1 AND jid = $2 FOR UPDATE", SHOWN_STATE);
  const char *vals[] = {p->name, op->id};
  r = pgq_exec(c, sql, 2, vals, err, errlen);
  int was = !r ? JQ_UNAVAILABLE : PQntuples(r) ? (int)pgq_int(r, 0, 1) : -1;
  char seq[24] = "0";
  int key_taken = r && PQntuples(r) && PQgetvalue(r, 0, 2)[0] == 't';
  if (r && PQntuples(r)) snprintf(seq, sizeof seq, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  int takes = requeue ? was == JS_SCHEDULED || was == JS_RETRYING
                      : (was == JS_FAILED || was == JS_CANCELLED) && !key_taken;
  int rc = was < 0 ? was : takes ? was : JQ_CONFLICT;
  if (takes) {
    static const char *const sqls[] = {
      "UPDATE taskhost_jobs SET state = 0, attempt = 0, recoveries = 0, run_at = now(),"
      " finished_at = NULL, result = NULL, cancel_requested = false WHERE seq = $1",
      "UPDATE taskhost_jobs SET state = 0, run_at = now() WHERE seq = $1"};
    const char *sv[] = {seq};
    r = pgq_exec(c, sqls[requeue], 1, sv, err, errlen);
    if (!r) rc = strstr(err, "unique constraint") ? JQ_CONFLICT : JQ_UNAVAILABLE;   /* a race on the key */
    PQclear(r);
    if (r && p->notify) {
      const char *nv[] = {p->name};
      r = pgq_exec(c, "SELECT pg_notify('taskhost_jobs', $1)", 1, nv, err, errlen);
      if (!r) rc = JQ_UNAVAILABLE;
      PQclear(r);
    }
  }
  r = pgq_exec(c, rc >= 0 && takes ? "COMMIT" : "ROLLBACK", 0, NULL, err, errlen);
  if (!r && rc >= 0) rc = JQ_UNAVAILABLE;
  PQclear(r);
  return rc;
}

static int run_op(struct pgq *p, PGconn *c, struct pgq_op *op, char *err, size_t errlen) {
  switch (op->kind) {
  case OP_INFO: return op_info(p, c, op, err, errlen);
  case OP_RESULT: return op_result(p, c, op, err, errlen);
  case OP_LIST: return op_list(p, c, op, err, errlen);
  case OP_STATS: return op_stats(p, c, err, errlen);
  case OP_CANCEL: return op_cancel(p, c, op, err, errlen);
  case OP_FORGET: return op_forget(p, c, op, err, errlen);
  case OP_RETRY: case OP_REQUEUE: return op_revive(p, c, op, err, errlen);
  }
  return JQ_ERROR;
}

/* The counts as jobq_stats shows them: this host's counters, the cached counts. */
static void read_stats(struct pgq *p, struct jobq_stats *out) {
  pthread_mutex_lock(&p->lock);
  *out = p->st;
  memcpy(out->by_state, p->by_state, sizeof out->by_state);
  waitlog_percentiles(&p->waits, out);
  pthread_mutex_unlock(&p->lock);
}

/* A call's results as the synchronous function of its op returns them; then done. */
static void settle(struct pgq *p, struct jobq_call *c, int rc, int64_t next) {
  c->rc = rc;
  if (c->op == JC_LIST) {
    c->rc = 0;
    c->next = rc == 0 ? next : 0;
    if (rc != 0) buf_adds(c->out, "[]");
  }
  if (c->op == JC_STATS) {
    c->rc = 0;
    read_stats(p, &c->st);
  }
  c->done(c);
}

/* The reader answered op: settle its call. */
static void op_done(struct pgq *p, struct pgq_op *op) {
  struct jobq_call *c = op->call;
  int rc = op->rc;
  int64_t next = op->next_cursor;
  free(op);
  settle(p, c, rc, next);
}

void *pgq_reader_main(void *arg) {
  struct pgq *p = arg;
  PGconn *c = NULL;
  char err[256];
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!p->ops && p->stopped != 2) pthread_cond_wait(&p->ops_cv, &p->lock);
    struct pgq_op *op = p->ops;
    if (!op) break;
    p->ops = op->next;
    if (!p->ops) p->ops_tail = &p->ops;
    pthread_mutex_unlock(&p->lock);
    if (pgq_conn_bad(c)) {
      PQfinish(c);
      c = pgq_connect(p->dsn, err, sizeof err);
    }
    op->rc = c ? run_op(p, c, op, err, sizeof err) : JQ_UNAVAILABLE;
    if (op->rc == JQ_UNAVAILABLE) {
      log_warn("%s: job API request failed: %s", p->name, err);
      if (c && PQtransactionStatus(c) != PQTRANS_IDLE) PQclear(PQexec(c, "ROLLBACK"));
    }
    op_done(p, op);
    pthread_mutex_lock(&p->lock);
  }
  pthread_mutex_unlock(&p->lock);
  PQfinish(c);
  return NULL;
}

/* ---- the callers' side ----------------------------------------------------------------- */

/* Hands op to the reader: 0, or JQ_UNAVAILABLE (not queued) while the database is away. */
static int queue_op(struct pgq *p, struct pgq_op *op) {
  if (!atomic_load(&p->up) || !p->reader_started) return JQ_UNAVAILABLE;
  pthread_mutex_lock(&p->lock);
  if (p->stopped == 2) {                  /* the reader is ending: it would not see op */
    pthread_mutex_unlock(&p->lock);
    return JQ_UNAVAILABLE;
  }
  op->next = NULL;
  *p->ops_tail = op;
  p->ops_tail = &op->next;
  pthread_cond_signal(&p->ops_cv);
  pthread_mutex_unlock(&p->lock);
  return 0;
}

static int stats_fresh(struct pgq *p) {
  pthread_mutex_lock(&p->lock);
  int fresh = p->stats_at && clock_mono_ns() - p->stats_at < STATS_CACHE_NS;
  pthread_mutex_unlock(&p->lock);
  return fresh;
}

void pgq_op_start(struct pgq *p, struct jobq_call *c) {
  static const enum pgq_op_kind kinds[] = {
    [JC_INFO] = OP_INFO, [JC_RESULT] = OP_RESULT, [JC_LIST] = OP_LIST, [JC_CANCEL] = OP_CANCEL,
    [JC_FORGET] = OP_FORGET, [JC_STATS] = OP_STATS, [JC_RETRY] = OP_RETRY, [JC_REQUEUE] = OP_REQUEUE};
  if (c->op == JC_STATS && stats_fresh(p)) { settle(p, c, 0, 0); return; }
  struct pgq_op *op = xmalloc(sizeof *op);
  *op = (struct pgq_op){.kind = kinds[c->op], .id = c->id, .state = c->state, .after = c->after,
                        .limit = c->limit, .out = c->out, .call = c};
  if (queue_op(p, op) == 0) return;
  free(op);
  settle(p, c, JQ_UNAVAILABLE, 0);
}

int pgq_job_info(struct pgq *p, const char *id, struct buf *out) {
  struct jobq_call c = {.op = JC_INFO, .id = id, .out = out};
  pgq_call_run(p, &c);
  return c.rc;
}

int pgq_job_result(struct pgq *p, const char *id, struct buf *out) {
  struct jobq_call c = {.op = JC_RESULT, .id = id, .out = out};
  pgq_call_run(p, &c);
  return c.rc;
}

void pgq_list(struct pgq *p, int state, int64_t after, size_t limit, struct buf *out,
              int64_t *next) {
  struct jobq_call c = {.op = JC_LIST, .state = state, .after = after, .limit = limit, .out = out};
  pgq_call_run(p, &c);
  *next = c.next;
}

int pgq_cancel(struct pgq *p, const char *id) {
  struct jobq_call c = {.op = JC_CANCEL, .id = id};
  pgq_call_run(p, &c);
  return c.rc;
}

int pgq_forget(struct pgq *p, const char *id) {
  struct jobq_call c = {.op = JC_FORGET, .id = id};
  pgq_call_run(p, &c);
  return c.rc;
}

int pgq_revive(struct pgq *p, const char *id, int requeue) {
  struct jobq_call c = {.op = requeue ? JC_REQUEUE : JC_RETRY, .id = id};
  pgq_call_run(p, &c);
  return c.rc;
}

void pgq_stats(struct pgq *p, struct jobq_stats *out) {
  struct jobq_call c = {.op = JC_STATS};              /* on failure the last counts stay */
  pgq_call_run(p, &c);
  *out = c.st;
}
