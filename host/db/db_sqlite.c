/*
** db_sqlite.c — the SQLite driver (db.h): `max_open` connections on the shared
** connection-thread pool (dbpool.h: queues, pins, threads, cancellation); this file keeps
** SQLite's own part: opening with pragmas, statements, binding, rows, transactions.
**
** Threads and ownership:
**  - Each connection (sqlite3 handle, its tx, `cur`) belongs to its pool thread.
**  - Interrupt hook (any thread, outside the pool lock, dbpool.h's rule): sqlite3_interrupt,
**    safe from any thread while the handle is open; a progress handler also polls the mark,
**    so an interrupt that lands before the first step is not lost). BEGIN, COMMIT and
**    ROLLBACK are never interrupted.
**  - A statement interrupted (or failed) inside a transaction may make SQLite roll the whole
**    transaction back; the tx is then marked broken: later statements fail, COMMIT fails,
**    ROLLBACK ends it. Commit and rollback always unpin the connection.
*/
#include "dbpool.h"
#include "base/log.h"
#include "base/util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct db_tx {
  struct conn *c;
  int broken;                 /* SQLite ended the transaction (an error inside it) */
  int read_only;
};

struct conn {
  sqlite3 *db;
  struct db_tx *tx;           /* the transaction pinning it, or NULL */
  struct db_req *cur;         /* the request running (its thread; read by the progress handler) */
};

struct pool {
  struct dbpool *dp;
  int n;
  struct conn conns[];
};

/* ---- errors ---- */

static int fail_of(int rc) {
  switch (rc & 0xff) {
  case SQLITE_CONSTRAINT:
    return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY ? DBF_CONFLICT : DBF_INVALID;
  case SQLITE_BUSY: case SQLITE_LOCKED: case SQLITE_IOERR: case SQLITE_FULL: case SQLITE_CANTOPEN:
  case SQLITE_READONLY: case SQLITE_PROTOCOL: case SQLITE_NOLFS: case SQLITE_PERM:
    return DBF_UNAVAILABLE;
  case SQLITE_INTERRUPT: return DBF_CANCELED;
  case SQLITE_NOMEM: case SQLITE_CORRUPT: case SQLITE_NOTADB: case SQLITE_INTERNAL: case SQLITE_MISUSE:
    return DBF_INTERNAL;
  case SQLITE_TOOBIG: return DBF_TOO_LARGE;
  default: return DBF_INVALID;
  }
}

static void fail_rc(struct conn *c, struct db_req *r, int rc) {
  int kind = fail_of(rc);
  if ((rc & 0xff) == SQLITE_READONLY && c->tx && c->tx->read_only) kind = DBF_INVALID;   /* a read_only tx wrote */
  if (kind == DBF_CANCELED)
    db_req_fail(r, kind, "sql: the statement was interrupted (its caller went away)");
  else if ((rc & 0xff) == SQLITE_BUSY)
    db_req_fail(r, kind, "sqlite: %s (still locked after busy_timeout)", sqlite3_errmsg(c->db));
  else
    db_req_fail(r, kind, "sqlite: %s", sqlite3_errmsg(c->db));
}

/* ---- binding and rows ---- */

static int bind_one(sqlite3_stmt *st, int i, const struct db_val *v) {
  switch (v->type) {
  case DBV_INT: return sqlite3_bind_int64(st, i, v->i);
  case DBV_FLOAT: return sqlite3_bind_double(st, i, v->f);
  case DBV_TEXT: return sqlite3_bind_text64(st, i, v->s, v->len, SQLITE_STATIC, SQLITE_UTF8);
  case DBV_BLOB: return sqlite3_bind_blob64(st, i, v->s ? v->s : "", v->len, SQLITE_STATIC);
  default: return sqlite3_bind_null(st, i);
  }
}

/* Index of a named parameter: the name as given, else with each of SQLite's prefixes. */
static int named_index(sqlite3_stmt *st, const char *name) {
  int i = sqlite3_bind_parameter_index(st, name);
  static const char prefixes[] = ":@$";
  char buf[256];
  for (const char *p = prefixes; !i && *p; p++) {
    snprintf(buf, sizeof buf, "%c%s", *p, name);
    i = sqlite3_bind_parameter_index(st, buf);
  }
  return i;
}

static int bind_all(struct conn *c, sqlite3_stmt *st, struct db_req *r) {
  int want = sqlite3_bind_parameter_count(st);
  if (!r->names && (size_t)want != r->nparams) {
    db_req_fail(r, DBF_INVALID, "sql: the statement has %d parameters, %zu given", want, r->nparams);
    return -1;
  }
  for (size_t i = 0; i < r->nparams; i++) {
    int at = (int)i + 1;
    if (r->names && !(at = named_index(st, r->names[i]))) {
      db_req_fail(r, DBF_INVALID, "sql: the statement has no parameter named %s", r->names[i]);
      return -1;
    }
    int rc = bind_one(st, at, &r->params[i]);
    if (rc != SQLITE_OK) { fail_rc(c, r, rc); return -1; }
  }
  return 0;
}

static int take_columns(struct db_req *r, sqlite3_stmt *st) {
  r->ncols = sqlite3_column_count(st);
  r->cols = xcalloc(r->ncols ? (size_t)r->ncols : 1, sizeof *r->cols);
  for (int i = 0; i < r->ncols; i++) {
    const char *n = sqlite3_column_name(st, i);
    if (!n) return -1;                            /* out of memory in SQLite */
    r->cols[i] = xstrdup(n);
  }
  return 0;
}

/* Appends the current row; -1 (r failed) past a budget. */
static int take_row(struct db_req *r, sqlite3_stmt *st, size_t *bytes) {
  if (r->nrows >= r->db->lim.max_rows) {
    db_req_fail(r, DBF_TOO_LARGE, "sql: result too large: more than %zu rows (max_rows)", r->db->lim.max_rows);
    return -1;
  }
  size_t need = (r->nrows + 1) * (size_t)r->ncols;
  if (need > r->capcells) {
    r->capcells = need * 2;
    r->cells = xrealloc(r->cells, r->capcells * sizeof *r->cells);
  }
  struct db_val *row = r->cells + r->nrows * (size_t)r->ncols;
  for (int i = 0; i < r->ncols; i++) {
    struct db_val *v = &row[i];
    memset(v, 0, sizeof *v);
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: v->type = DBV_INT; v->i = sqlite3_column_int64(st, i); break;
    case SQLITE_FLOAT: v->type = DBV_FLOAT; v->f = sqlite3_column_double(st, i); break;
    case SQLITE_TEXT: case SQLITE_BLOB: {
      int blob = sqlite3_column_type(st, i) == SQLITE_BLOB;
      const void *p = blob ? sqlite3_column_blob(st, i) : (const void *)sqlite3_column_text(st, i);
      v->len = (size_t)sqlite3_column_bytes(st, i);
      v->type = blob ? DBV_BLOB : DBV_TEXT;
      *bytes += v->len;
      if (*bytes > r->db->lim.max_bytes) break;
      v->s = xmalloc(v->len + 1);
      if (v->len) memcpy(v->s, p, v->len);
      v->s[v->len] = '\0';
      break;
    }
    default: v->type = DBV_NULL;
    }
    *bytes += 16;
  }
  r->nrows++;
  if (*bytes > r->db->lim.max_bytes) {
    db_req_fail(r, DBF_TOO_LARGE, "sql: result too large: more than %zu bytes (max_bytes)", r->db->lim.max_bytes);
    return -1;
  }
  return 0;
}

/* ---- running SQL ---- */

/* Steps one prepared statement to its end, keeping rows when keep. 0 / -1 (r failed). */
static int step_all(struct conn *c, struct db_req *r, sqlite3_stmt *st, int keep) {
  size_t bytes = 0;
  if (keep && take_columns(r, st) != 0) { db_req_fail(r, DBF_INTERNAL, "sqlite: out of memory"); return -1; }
  for (;;) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return 0;
    if (rc != SQLITE_ROW) { fail_rc(c, r, rc); return -1; }
    if (keep && take_row(r, st, &bytes) != 0) return -1;
  }
}

/* Is there another statement in [p, end)? (Compiling it runs nothing.) */
static int more_statements(struct conn *c, const char *p, const char *end) {
  while (p < end) {
    sqlite3_stmt *st = NULL;
    const char *tail = end;
    if (sqlite3_prepare_v2(c->db, p, (int)(end - p), &st, &tail) != SQLITE_OK) return 1;
    if (st) { sqlite3_finalize(st); return 1; }
    if (tail <= p) break;
    p = tail;
  }
  return 0;
}

static void run_sql(struct conn *c, struct db_req *r) {
  const char *p = r->sql, *end = r->sql + r->sql_len;
  int one = r->op != DBO_EXEC || r->nparams > 0, ran = 0;
  while (p < end) {
    sqlite3_stmt *st = NULL;
    const char *tail = end;
    int rc = sqlite3_prepare_v2(c->db, p, (int)(end - p), &st, &tail);
    if (rc != SQLITE_OK) { fail_rc(c, r, rc); return; }
    if (!st) { if (tail <= p) break; p = tail; continue; }   /* whitespace or a comment */
    ran++;
    if (one && more_statements(c, tail, end)) {
      sqlite3_finalize(st);
      db_req_fail(r, DBF_INVALID, "sql: %s takes one statement (execute runs several only without params)",
                  r->op == DBO_QUERY ? "query" : r->op == DBO_PREPARE ? "prepare" : "execute with params");
      return;
    }
    int ok = r->op == DBO_PREPARE ? 0 : bind_all(c, st, r);
    if (ok == 0 && r->op != DBO_PREPARE) ok = step_all(c, r, st, r->op == DBO_QUERY);
    sqlite3_finalize(st);
    if (ok != 0) return;
    p = tail;
  }
  if (!ran && r->op != DBO_EXEC) { db_req_fail(r, DBF_INVALID, "sql: no statement in the text"); return; }
  r->rows_affected = sqlite3_changes64(c->db);
  r->last_insert_id = sqlite3_last_insert_rowid(c->db);
}

static int exec_text(struct conn *c, struct db_req *r, const char *sql) {
  int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) { if (r) fail_rc(c, r, rc); return -1; }
  return 0;
}

static void end_tx(struct conn *c) {
  if (!sqlite3_get_autocommit(c->db)) exec_text(c, NULL, "ROLLBACK");
  if (c->tx && c->tx->read_only) exec_text(c, NULL, "PRAGMA query_only = 0");
  free(c->tx);
  c->tx = NULL;
}

static void run_tx(struct conn *c, struct db_req *r) {
  char sql[300];
  switch (r->op) {
  case DBO_BEGIN: {
    if (r->read_only && exec_text(c, r, "PRAGMA query_only = 1") != 0) return;
    /* IMMEDIATE for writers: a deferred transaction that reads then writes can fail at once
    ** with SQLITE_BUSY (no busy handler for the lock upgrade) when another writes meanwhile. */
    if (exec_text(c, r, r->read_only ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE") != 0) {
      if (r->read_only) exec_text(c, NULL, "PRAGMA query_only = 0");
      return;
    }
    c->tx = xcalloc(1, sizeof *c->tx);
    c->tx->c = c;
    c->tx->read_only = r->read_only;
    r->tx = c->tx;
    return;
  }
  case DBO_COMMIT:
    if (c->tx->broken || sqlite3_get_autocommit(c->db))
      db_req_fail(r, DBF_INVALID, "sql: the transaction was already rolled back by an error inside it");
    else
      exec_text(c, r, "COMMIT");
    end_tx(c);
    return;
  case DBO_ROLLBACK:
    end_tx(c);
    return;
  default:
    snprintf(sql, sizeof sql, "%s %s", r->op == DBO_SAVEPOINT ? "SAVEPOINT" :
             r->op == DBO_RELEASE ? "RELEASE" : "ROLLBACK TO", r->sql);
    exec_text(c, r, sql);
  }
}

static void run_one(struct conn *c, struct db_req *r) {
  if (r->op >= DBO_BEGIN) { run_tx(c, r); return; }
  if (c->tx && (c->tx->broken || sqlite3_get_autocommit(c->db))) {
    c->tx->broken = 1;
    db_req_fail(r, DBF_INVALID, "sql: the transaction was rolled back by an error inside it; roll it back");
    return;
  }
  run_sql(c, r);
  if (c->tx && sqlite3_get_autocommit(c->db)) c->tx->broken = 1;
}

static int progress(void *ud) {
  struct conn *c = ud;
  return c->cur && atomic_load(&c->cur->abandoned) && db_req_interruptible(c->cur);
}

/* ---- pool hooks ---- */

static void run(void *conn, struct db_req *r) {
  struct conn *c = conn;
  c->cur = r;
  run_one(c, r);
  c->cur = NULL;
}

static void hook_end_tx(void *conn) { end_tx(conn); }
static void interrupt(void *conn) { sqlite3_interrupt(((struct conn *)conn)->db); }

static const struct dbpool_hooks hooks = {NULL, run, hook_end_tx, interrupt, NULL};

static const struct { const char *name; const char *const values[8]; } pragma_allow[] = {
  {"journal_mode", {"wal", "delete", "truncate", "persist", "memory", "off"}},
  {"synchronous", {"off", "normal", "full", "extra", "0", "1", "2", "3"}},
  {"foreign_keys", {"on", "off", "true", "false", "1", "0"}},
  {"temp_store", {"default", "file", "memory", "0", "1", "2"}},
  {"cache_size", {"*"}},
  {"auto_vacuum", {"none", "full", "incremental", "0", "1", "2"}},
  {"recursive_triggers", {"on", "off", "true", "false", "1", "0"}},
  {"secure_delete", {"on", "off", "fast", "true", "false", "1", "0"}},
};

/* 0 when name = value is an allowed pragma (cache_size: an integer). */
static int pragma_ok(const char *name, const char *value) {
  for (size_t i = 0; i < countof(pragma_allow); i++) {
    if (strcmp(pragma_allow[i].name, name) != 0) continue;
    if (strcmp(pragma_allow[i].values[0], "*") == 0) {
      char *e;
      strtoll(value, &e, 10);
      return *value && !*e ? 0 : -1;
    }
    for (size_t k = 0; k < 8 && pragma_allow[i].values[k]; k++)
      if (strcasecmp(pragma_allow[i].values[k], value) == 0) return 0;
    return -1;
  }
  return -1;
}

static int open_conn(struct conn *c, const struct db_config *cfg, char *err, size_t errlen) {
  int rc = sqlite3_open_v2(cfg->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                           SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "sqlite: cannot open %s: %s", cfg->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    return -1;
  }
  sqlite3_extended_result_codes(c->db, 1);
  sqlite3_busy_timeout(c->db, (int)(cfg->busy_timeout_ns / 1000000));
  sqlite3_progress_handler(c->db, 1000, progress, c);
  for (size_t i = 0; i < cfg->npragmas; i++) {
    char sql[300];
    snprintf(sql, sizeof sql, "PRAGMA %s = %s", cfg->pragmas[i].name, cfg->pragmas[i].value);
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
      snprintf(err, errlen, "sqlite: %s on %s: %s", sql, cfg->path, sqlite3_errmsg(c->db));
      return -1;
    }
  }
  return 0;
}

static void sq_close(void *pool);

static void *sq_open(const struct db_config *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < cfg->npragmas; i++)
    if (pragma_ok(cfg->pragmas[i].name, cfg->pragmas[i].value) != 0) {
      snprintf(err, errlen, "sqlite: pragma %s = %s is not allowed (allowed: journal_mode, synchronous, "
               "foreign_keys, temp_store, cache_size, auto_vacuum, recursive_triggers, secure_delete)",
               cfg->pragmas[i].name, cfg->pragmas[i].value);
      return NULL;
    }
  /* Every connection to ":memory:" is a database of its own: one connection, so all see one. */
  int n = strcmp(cfg->path, ":memory:") == 0 ? 1 : cfg->max_open < 1 ? 1 : cfg->max_open;
  struct pool *P = xcalloc(1, sizeof *P + (size_t)n * sizeof P->conns[0]);
  P->n = n;
  for (int i = 0; i < n; i++)
    if (open_conn(&P->conns[i], cfg, err, errlen) != 0) { sq_close(P); return NULL; }
  void **conns = xcalloc((size_t)n, sizeof *conns);
  for (int i = 0; i < n; i++) conns[i] = &P->conns[i];
  P->dp = dbpool_start(&hooks, conns, n, "sqlite", err, errlen);
  free(conns);
  if (!P->dp) { sq_close(P); return NULL; }
  return P;
}

static void sq_submit(void *pool, struct db_req *r) { dbpool_submit(((struct pool *)pool)->dp, r); }
static void sq_cancel(void *pool, uint64_t id) { dbpool_cancel(((struct pool *)pool)->dp, id); }
static void sq_stats(void *pool, struct db_stats *st) { dbpool_stats(((struct pool *)pool)->dp, st); }

static void sq_close(void *pool) {
  struct pool *P = pool;
  if (P->dp) dbpool_stop(P->dp);
  for (int i = 0; i < P->n; i++)
    if (P->conns[i].db) sqlite3_close_v2(P->conns[i].db);
  free(P);
}

const struct db_driver db_sqlite_driver = {"sqlite", sq_open, sq_submit, sq_cancel, sq_stats, sq_close};

int db_sqlite_version(char *buf, size_t n) {
  snprintf(buf, n, "%s", sqlite3_libversion());
  return 0;
}
