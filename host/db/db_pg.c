/*
** db_pg.c — the PostgreSQL driver (db.h) on libpq: `max_open` connections on the shared
** connection-thread pool (dbpool.h: queues, pins, threads, cancellation), each running
** requests with blocking libpq calls (so a slow query blocks only its thread, never a
** process-host worker). This file keeps libpq's own part: connect/reset/backoff, PQcancel,
** SQLSTATE kinds, parameters and rows.
**
** Threads and ownership:
**  - Each connection (PGconn, its tx) belongs to its pool thread. Its `cancel` handle
**    (PGcancel) is guarded by the connection's own `cancel_lock`, not the pool's: the
**    interrupt hook runs outside the pool lock (dbpool.h's rule) and PQcancel is a round trip.
**  - A connection connects lazily on its thread (a server down at start is no error: calls
**    fail UNAVAILABLE). A connection found broken is reset before the next request, with a
**    backoff (100 ms doubling to 2 s) during which requests fail UNAVAILABLE at once, cut
**    short when another connection of the pool connects (the server is back).
**  - Cancellation (dbpool.c): a queued request is marked abandoned; a running one is
**    marked and PQcancel'd (the interrupt hook) through the connection's PGcancel (the server
**    answers 57014 → CANCELED). BEGIN, COMMIT and ROLLBACK are never interrupted.
**  - Results are read in single-row mode, so the row and byte budgets are checked while the
**    rows arrive; past a budget the query is cancelled and the rest drained.
**  - The DSN (it may hold a password) is never put in a message or a log line.
*/
#include "dbpool.h"
#include "base/util.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct db_tx {
  struct conn *c;
  int lost;                   /* the connection was lost (and reset) inside it */
};

struct conn {
  struct pool *P;
  PGconn *pg;
  pthread_mutex_t cancel_lock;
  PGcancel *cancel;           /* under cancel_lock */
  int64_t retry_at, backoff;  /* ns (monotonic): no reconnect before retry_at ... */
  unsigned ups_seen;          /* ... unless another connection got through since (P->ups) */
  struct db_tx *tx;
};

struct pool {
  struct dbpool *dp;
  int n;
  char *dsn;
  _Atomic unsigned ups;       /* successful connects: the server is back for everyone */
  struct conn conns[];
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- errors: by SQLSTATE (class, or the whole code first) ---- */

static const struct { const char *state; int fail; } state_fail[] = {
  {"23505", DBF_CONFLICT},            /* unique_violation */
  {"57014", DBF_CANCELED},            /* query_canceled */
  {"40001", DBF_UNAVAILABLE},         /* serialization_failure: retry the transaction */
  {"40P01", DBF_UNAVAILABLE},         /* deadlock_detected: retry */
  {"08P01", DBF_INVALID},             /* protocol_violation: e.g. wrong parameter count */
  {"53", DBF_UNAVAILABLE},            /* insufficient resources */
  {"54", DBF_TOO_LARGE},              /* program limit exceeded */
  {"57", DBF_UNAVAILABLE},            /* operator intervention (shutdown) */
  {"58", DBF_UNAVAILABLE},            /* system error */
  {"08", DBF_UNAVAILABLE},            /* connection exception */
  {"XX", DBF_INTERNAL},
};

static int fail_of_state(const char *st) {
  if (!st || strlen(st) != 5) return DBF_UNAVAILABLE;     /* no server answer: the link is gone */
  for (size_t i = 0; i < countof(state_fail); i++)
    if (strncmp(st, state_fail[i].state, strlen(state_fail[i].state)) == 0) return state_fail[i].fail;
  return DBF_INVALID;                                    /* 22, 23, 25, 42, ...: the caller's */
}

/* Copies a libpq message without its trailing newline. */
static void fail_msg(struct db_req *r, int fail, const char *state, const char *msg) {
  char m[400];
  snprintf(m, sizeof m, "%s", msg && *msg ? msg : "connection lost");
  size_t n = strlen(m);
  while (n && (m[n - 1] == '\n' || m[n - 1] == ' ')) m[--n] = '\0';
  if (fail == DBF_CANCELED && atomic_load(&r->abandoned))
    db_req_fail(r, fail, "sql: the statement was interrupted (its caller went away)");
  else
    db_req_fail(r, fail, "postgres: %s%s%s%s", m, state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
}

static void fail_res(struct conn *c, struct db_req *r, PGresult *res) {
  const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  int fail = PQstatus(c->pg) == CONNECTION_BAD ? DBF_UNAVAILABLE : fail_of_state(st);
  const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;   /* one line */
  fail_msg(r, fail, st, m ? m : res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
}

/* ---- connecting ---- */

static void set_cancel(struct conn *c) {
  PGcancel *nc = c->pg && PQstatus(c->pg) == CONNECTION_OK ? PQgetCancel(c->pg) : NULL;
  pthread_mutex_lock(&c->cancel_lock);
  PGcancel *old = c->cancel;
  c->cancel = nc;
  pthread_mutex_unlock(&c->cancel_lock);
  if (old) PQfreeCancel(old);
}

/* Server notices (and the FATAL of a shutdown seen while idle) are not printed to stderr. */
static void quiet(void *ud, const char *msg) { (void)ud; (void)msg; }

/* Makes c's connection usable. 0, or -1 with r (when given) failed UNAVAILABLE. */
static int ensure(struct conn *c, struct db_req *r) {
  if (c->pg && PQstatus(c->pg) == CONNECTION_OK) {
    /* Idle between requests: read what the server sent meanwhile (libpq's socket is
    ** non-blocking, so this never waits). A server that shut down sent its FATAL and closed:
    ** the connection turns BAD here and is reset now, instead of failing this request. */
    for (int i = 0; i < 3 && PQconsumeInput(c->pg); i++) PQisBusy(c->pg);   /* a FATAL, then EOF */
    for (PGnotify *n; (n = PQnotifies(c->pg));) PQfreemem(n);
    if (PQstatus(c->pg) == CONNECTION_OK) return 0;
  }
  if (c->tx) c->tx->lost = 1;
  int64_t now = now_ns();
  if (c->pg && now < c->retry_at && atomic_load(&c->P->ups) == c->ups_seen) {
    if (r) db_req_fail(r, DBF_UNAVAILABLE, "postgres: the server is unreachable (reconnecting): %.300s", PQerrorMessage(c->pg));
    return -1;
  }
  if (c->pg) PQreset(c->pg);
  else {
    /* connect_timeout first: a value in the DSN overrides it. */
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const vals[] = {"5", c->P->dsn, NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (c->pg) PQsetNoticeProcessor(c->pg, quiet, NULL);
  }
  if (!c->pg) { if (r) db_req_fail(r, DBF_INTERNAL, "postgres: out of memory"); return -1; }
  if (PQstatus(c->pg) != CONNECTION_OK) {
    c->backoff = c->backoff ? c->backoff * 2 : 100000000LL;
    if (c->backoff > 2000000000LL) c->backoff = 2000000000LL;
    c->retry_at = now_ns() + c->backoff;
    c->ups_seen = atomic_load(&c->P->ups);
    set_cancel(c);
    if (r) fail_msg(r, DBF_UNAVAILABLE, NULL, PQerrorMessage(c->pg));
    return -1;
  }
  c->backoff = 0;
  atomic_fetch_add(&c->P->ups, 1);
  PQsetClientEncoding(c->pg, "UTF8");
  set_cancel(c);
  return 0;
}

/* ---- parameters and rows ---- */

/* Text of each parameter (binary for BLOBs); bufs holds what was formatted. */
struct params { const char **vals; int *lens, *fmts; char (*num)[32]; };

/* Postgres text cannot hold a NUL byte and libpq takes C strings: such a value would be cut
** short, so it is refused. 0 / -1 (r failed). */
static int params_check(struct db_req *r) {
  if (memchr(r->sql, 0, r->sql_len)) {
    db_req_fail(r, DBF_INVALID, "sql: the SQL text holds a NUL byte");
    return -1;
  }
  for (size_t i = 0; i < r->nparams; i++) {
    const struct db_val *v = &r->params[i];
    if (v->type == DBV_TEXT && v->s && memchr(v->s, 0, v->len)) {
      db_req_fail(r, DBF_INVALID, "sql: param %zu holds a NUL byte (postgres text cannot; use sql.as.binary)", i + 1);
      return -1;
    }
    if (v->type == DBV_BLOB && v->len > (size_t)1 << 30) {
      db_req_fail(r, DBF_TOO_LARGE, "sql: param %zu is over 1GB (postgres' limit for a value)", i + 1);
      return -1;
    }
  }
  return 0;
}

static void params_build(struct params *p, const struct db_req *r) {
  size_t n = r->nparams ? r->nparams : 1;
  p->vals = xcalloc(n, sizeof *p->vals);
  p->lens = xcalloc(n, sizeof *p->lens);
  p->fmts = xcalloc(n, sizeof *p->fmts);
  p->num = xcalloc(n, sizeof *p->num);
  for (size_t i = 0; i < r->nparams; i++) {
    const struct db_val *v = &r->params[i];
    switch (v->type) {
    case DBV_INT: snprintf(p->num[i], 32, "%lld", (long long)v->i); p->vals[i] = p->num[i]; break;
    case DBV_FLOAT: snprintf(p->num[i], 32, "%.17g", v->f); p->vals[i] = p->num[i]; break;
    case DBV_BOOL: p->vals[i] = v->i ? "true" : "false"; break;
    case DBV_TEXT: p->vals[i] = v->s ? v->s : ""; break;
    case DBV_BLOB: p->vals[i] = v->s ? v->s : ""; p->lens[i] = (int)v->len; p->fmts[i] = 1; break;
    default: p->vals[i] = NULL;
    }
  }
}

static void params_free(struct params *p) {
  free(p->vals); free(p->lens); free(p->fmts); free(p->num);
}

static void take_columns(struct db_req *r, const PGresult *res) {
  if (r->cols) return;
  r->ncols = PQnfields(res);
  r->cols = xcalloc(r->ncols ? (size_t)r->ncols : 1, sizeof *r->cols);
  for (int i = 0; i < r->ncols; i++) r->cols[i] = xstrdup(PQfname(res, i));
}

enum { OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26,
       OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

static void cell(struct db_val *v, const PGresult *res, int row, int col) {
  memset(v, 0, sizeof *v);
  if (PQgetisnull(res, row, col)) { v->type = DBV_NULL; return; }
  const char *t = PQgetvalue(res, row, col);
  switch (PQftype(res, col)) {
  case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID:
    v->type = DBV_INT; v->i = strtoll(t, NULL, 10); return;
  case OID_FLOAT4: case OID_FLOAT8: case OID_NUMERIC:
    v->type = DBV_FLOAT; v->f = strtod(t, NULL); return;
  case OID_BOOL: v->type = DBV_BOOL; v->i = t[0] == 't'; return;
  case OID_BYTEA: {
    size_t n = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)t, &n);
    v->type = DBV_BLOB;
    v->s = xmalloc(n + 1);
    if (b && n) memcpy(v->s, b, n);
    v->s[n] = '\0';
    v->len = b ? n : 0;
    PQfreemem(b);
    return;
  }
  default: {
    size_t n = (size_t)PQgetlength(res, row, col);
    v->type = DBV_TEXT;
    v->s = xmalloc(n + 1);
    memcpy(v->s, t, n);
    v->s[n] = '\0';
    v->len = n;
  }
  }
}

/* Appends the rows of res; -1 (r failed TOO_LARGE) past a budget. */
static int take_rows(struct db_req *r, const PGresult *res, size_t *bytes) {
  take_columns(r, res);
  int nt = PQntuples(res);
  for (int k = 0; k < nt; k++) {
    if (r->nrows >= r->db->lim.max_rows) {
      db_req_fail(r, DBF_TOO_LARGE, "sql: result too large: more than %zu rows (max_rows)", r->db->lim.max_rows);
      return -1;
    }
    for (int i = 0; i < r->ncols; i++) *bytes += 16 + (size_t)PQgetlength(res, k, i);
    if (*bytes > r->db->lim.max_bytes) {
      db_req_fail(r, DBF_TOO_LARGE, "sql: result too large: more than %zu bytes (max_bytes)", r->db->lim.max_bytes);
      return -1;
    }
    size_t need = (r->nrows + 1) * (size_t)r->ncols;
    if (need > r->capcells) {
      r->capcells = need * 2;
      r->cells = xrealloc(r->cells, r->capcells * sizeof *r->cells);
    }
    for (int i = 0; i < r->ncols; i++) cell(&r->cells[r->nrows * (size_t)r->ncols + i], res, k, i);
    r->nrows++;
  }
  return 0;
}

/* ---- running SQL ---- */

/* Any thread (the interrupt hook, or its own past a budget): a short round trip. */
static void cancel_own(struct conn *c) {
  char eb[256];
  pthread_mutex_lock(&c->cancel_lock);
  if (c->cancel) PQcancel(c->cancel, eb, sizeof eb);
  pthread_mutex_unlock(&c->cancel_lock);
}

/* Reads every result of the query sent; keeps rows when keep. */
static void collect(struct conn *c, struct db_req *r, int keep) {
  size_t bytes = 0;
  int failed = 0;
  PGresult *res;
  while ((res = PQgetResult(c->pg))) {
    if (!failed) switch (PQresultStatus(res)) {
    case PGRES_SINGLE_TUPLE: case PGRES_TUPLES_OK:
      if (keep && take_rows(r, res, &bytes) != 0) { failed = 1; cancel_own(c); }
      if (PQresultStatus(res) == PGRES_TUPLES_OK) r->rows_affected = strtoll(PQcmdTuples(res), NULL, 10);
      break;
    case PGRES_COMMAND_OK: case PGRES_EMPTY_QUERY:
      r->rows_affected = strtoll(PQcmdTuples(res), NULL, 10);
      break;
    case PGRES_COPY_IN: case PGRES_COPY_OUT: case PGRES_COPY_BOTH:
      failed = 1;
      db_req_fail(r, DBF_INVALID, "sql: COPY is not supported");
      PQclear(res);
      PQfinish(c->pg); c->pg = NULL; set_cancel(c);    /* no sane way back: reconnect */
      return;
    default:
      failed = 1;
      fail_res(c, r, res);
    }
    PQclear(res);
  }
  if (!failed && PQstatus(c->pg) == CONNECTION_BAD) fail_res(c, r, NULL);
}

static void run_sql(struct conn *c, struct db_req *r) {
  if (r->names) {
    db_req_fail(r, DBF_INVALID, "sql: postgres takes positional parameters ($1, $2, ...), not names");
    return;
  }
  int ok;
  if (params_check(r) != 0) return;
  if (r->op == DBO_PREPARE) {
    PGresult *res = PQprepare(c->pg, "", r->sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) fail_res(c, r, res);
    PQclear(res);
    return;
  }
  if (r->op == DBO_EXEC && r->nparams == 0) {
    ok = PQsendQuery(c->pg, r->sql);        /* several statements allowed */
  } else {
    struct params p;
    params_build(&p, r);
    ok = PQsendQueryParams(c->pg, r->sql, (int)r->nparams, NULL, p.vals, p.lens, p.fmts, 0);
    params_free(&p);
  }
  if (!ok) { fail_res(c, r, NULL); return; }
  if (r->op == DBO_QUERY) PQsetSingleRowMode(c->pg);
  r->last_insert_id = 0;                    /* Postgres has none: RETURNING gives ids */
  collect(c, r, r->op == DBO_QUERY);
}

/* Runs one command with no rows; 0 / -1 (r failed, when given). */
static int exec_text(struct conn *c, struct db_req *r, const char *sql) {
  PGresult *res = PQexec(c->pg, sql);
  int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok && r) fail_res(c, r, res);
  PQclear(res);
  return ok ? 0 : -1;
}

static void end_tx(struct conn *c) {
  if (c->pg && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
    exec_text(c, NULL, "ROLLBACK");
  free(c->tx);
  c->tx = NULL;
}

static const char *const iso_sql[] = {
  [DBI_DEFAULT] = "", [DBI_READ_UNCOMMITTED] = " ISOLATION LEVEL READ UNCOMMITTED",
  [DBI_READ_COMMITTED] = " ISOLATION LEVEL READ COMMITTED", [DBI_WRITE_COMMITTED] = " ISOLATION LEVEL READ COMMITTED",
  [DBI_REPEATABLE_READ] = " ISOLATION LEVEL REPEATABLE READ", [DBI_SNAPSHOT] = " ISOLATION LEVEL REPEATABLE READ",
  [DBI_SERIALIZABLE] = " ISOLATION LEVEL SERIALIZABLE", [DBI_LINEARIZABLE] = " ISOLATION LEVEL SERIALIZABLE",
};

static void run_tx(struct conn *c, struct db_req *r) {
  char sql[300];
  switch (r->op) {
  case DBO_BEGIN: {
    int iso = r->isolation >= 0 && (size_t)r->isolation < countof(iso_sql) ? r->isolation : DBI_DEFAULT;
    snprintf(sql, sizeof sql, "BEGIN%s%s", iso_sql[iso], r->read_only ? " READ ONLY" : "");
    if (exec_text(c, r, sql) != 0) return;
    c->tx = xcalloc(1, sizeof *c->tx);
    c->tx->c = c;
    r->tx = c->tx;
    return;
  }
  case DBO_COMMIT:
    if (c->tx->lost || PQstatus(c->pg) != CONNECTION_OK)
      db_req_fail(r, DBF_UNAVAILABLE, "sql: the connection was lost inside the transaction; nothing was committed");
    else if (PQtransactionStatus(c->pg) == PQTRANS_INERROR)
      db_req_fail(r, DBF_INVALID, "sql: the transaction was aborted by an error inside it; it is rolled back");
    else
      exec_text(c, r, "COMMIT");
    end_tx(c);
    return;
  case DBO_ROLLBACK:
    end_tx(c);
    return;
  default: {
    char *id = PQescapeIdentifier(c->pg, r->sql, strlen(r->sql));
    if (!id) { fail_res(c, r, NULL); return; }
    snprintf(sql, sizeof sql, "%s %s", r->op == DBO_SAVEPOINT ? "SAVEPOINT" :
             r->op == DBO_RELEASE ? "RELEASE SAVEPOINT" : "ROLLBACK TO SAVEPOINT", id);
    PQfreemem(id);
    exec_text(c, r, sql);
  }
  }
}

static void run_one(struct conn *c, struct db_req *r) {
  if (r->op == DBO_COMMIT || r->op == DBO_ROLLBACK) {
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) c->tx->lost = 1;
    run_tx(c, r);
    return;
  }
  if (ensure(c, r) != 0) return;
  if (c->tx && c->tx->lost) {
    db_req_fail(r, DBF_UNAVAILABLE, "sql: the connection was lost inside the transaction; roll it back");
    return;
  }
  if (r->op >= DBO_BEGIN) run_tx(c, r);
  else run_sql(c, r);
}

/* ---- pool hooks ---- */

static void start(void *conn) { ensure(conn, NULL); }   /* early connect; failure is no error here */
static void run(void *conn, struct db_req *r) { run_one(conn, r); }
static void hook_end_tx(void *conn) { end_tx(conn); }
static void interrupt(void *conn) { cancel_own(conn); }

static int is_open(void *conn) {
  struct conn *c = conn;
  pthread_mutex_lock(&c->cancel_lock);
  int open = c->cancel != NULL;
  pthread_mutex_unlock(&c->cancel_lock);
  return open;
}

static const struct dbpool_hooks hooks = {start, run, hook_end_tx, interrupt, is_open};

static void pg_close(void *pool);

static void *pg_open(const struct db_config *cfg, char *err, size_t errlen) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(cfg->path, &perr);
  if (!opts) {
    snprintf(err, errlen, "postgres: the dsn is not a valid connection string: %s", perr ? perr : "out of memory");
    PQfreemem(perr);
    return NULL;
  }
  PQconninfoFree(opts);
  int n = cfg->max_open < 1 ? 1 : cfg->max_open;
  struct pool *P = xcalloc(1, sizeof *P + (size_t)n * sizeof P->conns[0]);
  P->n = n;
  P->dsn = xstrdup(cfg->path);
  void **conns = xcalloc((size_t)n, sizeof *conns);
  for (int i = 0; i < n; i++) {
    P->conns[i].P = P;
    pthread_mutex_init(&P->conns[i].cancel_lock, NULL);
    conns[i] = &P->conns[i];
  }
  P->dp = dbpool_start(&hooks, conns, n, "postgres", err, errlen);
  free(conns);
  if (!P->dp) { pg_close(P); return NULL; }
  return P;
}

static void pg_submit(void *pool, struct db_req *r) { dbpool_submit(((struct pool *)pool)->dp, r); }
static void pg_cancel(void *pool, uint64_t id) { dbpool_cancel(((struct pool *)pool)->dp, id); }
static void pg_stats(void *pool, struct db_stats *st) { dbpool_stats(((struct pool *)pool)->dp, st); }

static void pg_close(void *pool) {
  struct pool *P = pool;
  if (P->dp) dbpool_stop(P->dp);
  for (int i = 0; i < P->n; i++) {
    if (P->conns[i].cancel) PQfreeCancel(P->conns[i].cancel);
    if (P->conns[i].pg) PQfinish(P->conns[i].pg);
    pthread_mutex_destroy(&P->conns[i].cancel_lock);
  }
  free(P->dsn);
  free(P);
}

const struct db_driver db_pg_driver = {"postgres", pg_open, pg_submit, pg_cancel, pg_stats, pg_close};

/* PQlibVersion() is major*10000 + minor from PostgreSQL 10 on (150005 → "15.5"), and
** major*10000 + minor*100 + patch before (90624 → "9.6.24"). */
int db_pg_version(char *buf, size_t n) {
  int v = PQlibVersion();
  if (v >= 100000) snprintf(buf, n, "%d.%d", v / 10000, v % 10000);
  else snprintf(buf, n, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
  return 0;
}
