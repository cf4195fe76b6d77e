/* The SQLite driver without Lua: requests submitted and waited for on a condition variable. */
#include "t.h"
#include "db/db.h"

#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

struct waiter { pthread_mutex_t m; pthread_cond_t cv; int done; };

static void on_done(struct db_req *r) {
  struct waiter *w = r->ud;
  pthread_mutex_lock(&w->m);
  w->done = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->m);
}

static void submit(struct db *d, struct db_req *r, struct waiter *w) {
  pthread_mutex_init(&w->m, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->done = 0;
  r->done = on_done;
  r->ud = w;
  db_submit(d, r);
}

static void wait_req(struct waiter *w) {
  pthread_mutex_lock(&w->m);
  while (!w->done) pthread_cond_wait(&w->cv, &w->m);
  pthread_mutex_unlock(&w->m);
  pthread_mutex_destroy(&w->m);
  pthread_cond_destroy(&w->cv);
}

/* Runs one request to its end; the caller frees it. */
static struct db_req *go(struct db *d, int op, const char *sql, struct db_tx *tx) {
  struct db_req *r = db_req_new(op, sql, strlen(sql));
  r->tx = tx;
  struct waiter w;
  submit(d, r, &w);
  wait_req(&w);
  return r;
}

static int ok(struct db *d, const char *sql) {
  struct db_req *r = go(d, DBO_EXEC, sql, NULL);
  int f = r->fail;
  if (f) printf("  %s: %s\n", sql, r->errmsg);
  db_req_free(r);
  return f == DBF_NONE;
}

static struct db *open_db(const char *path, int n, size_t max_rows, size_t max_bytes) {
  struct db_config cfg = {path, n, 200000000LL, NULL, 0,
                          {max_rows, max_bytes, DB_DEFAULT_MAX_SQL, 100}};
  char err[256];
  struct db *d = db_open(&db_sqlite_driver, &cfg, err, sizeof err);
  if (!d) printf("  open: %s\n", err);
  return d;
}

static void set_param(struct db_req *r, size_t i, int type, int64_t iv, double f, const char *s, size_t len) {
  struct db_val *v = &r->params[i];
  v->type = type; v->i = iv; v->f = f;
  if (s) { v->s = malloc(len + 1); memcpy(v->s, s, len); v->s[len] = 0; v->len = len; }
}

TEST(open_memory_and_params) {
  struct db *d = open_db(":memory:", 4, 1000, 1 << 20);
  CHECK(d != NULL);
  if (!d) return;
  struct db_stats st;
  db_stats(d, &st);
  CHECK_INT(st.open, 1);                          /* :memory: is one connection */
  CHECK(ok(d, "CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, z)"));
  const int64_t ints[] = {(1LL << 53) + 1, INT64_MIN, INT64_MAX};
  for (size_t k = 0; k < 3; k++) {
    struct db_req *r = db_req_new(DBO_EXEC, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", 36);
    r->params = calloc(5, sizeof *r->params);
    r->nparams = 5;
    set_param(r, 0, DBV_INT, ints[k], 0, NULL, 0);
    set_param(r, 1, DBV_FLOAT, 0, 2.5, NULL, 0);
    set_param(r, 2, DBV_TEXT, 0, 0, "héllo", 6);
    set_param(r, 3, DBV_BLOB, 0, 0, "a\0b\0", 4);
    set_param(r, 4, DBV_NULL, 0, 0, NULL, 0);
    struct waiter w;
    submit(d, r, &w);
    wait_req(&w);
    CHECK_INT(r->fail, DBF_NONE);
    CHECK_INT(r->rows_affected, 1);
    CHECK_INT(r->last_insert_id, (int64_t)k + 1);
    db_req_free(r);
  }
  struct db_req *q = go(d, DBO_QUERY, "SELECT i, f, s, b, z, typeof(b) AS tb FROM t ORDER BY rowid", NULL);
  CHECK_INT(q->fail, DBF_NONE);
  CHECK_INT(q->nrows, 3);
  CHECK_INT(q->ncols, 6);
  CHECK_STR(q->cols[0], "i");
  for (size_t k = 0; k < 3 && q->nrows == 3; k++) {
    struct db_val *row = q->cells + k * 6;
    CHECK_INT(row[0].type, DBV_INT);
    CHECK(row[0].i == ints[k]);
    CHECK_INT(row[1].type, DBV_FLOAT);
    CHECK(row[1].f == 2.5);
    CHECK_STR(row[2].s, "héllo");
    CHECK_INT(row[3].type, DBV_BLOB);
    CHECK_INT(row[3].len, 4);
    CHECK(memcmp(row[3].s, "a\0b\0", 4) == 0);
    CHECK_INT(row[4].type, DBV_NULL);
    CHECK_STR(row[5].s, "blob");
  }
  db_req_free(q);
  /* wrong parameter count is refused, not padded with NULL */
  struct db_req *r = go(d, DBO_EXEC, "INSERT INTO t (i) VALUES (?)", NULL);
  CHECK_INT(r->fail, DBF_INVALID);
  CHECK_CONTAINS(r->errmsg, "1 parameters, 0 given");
  db_req_free(r);
  db_unref(d);
}

TEST(file_and_errors) {
  char path[] = "/tmp/taskhost-db-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  struct db *d = open_db(path, 2, 1000, 1 << 20);
  CHECK(d != NULL);
  if (!d) return;
  CHECK(ok(d, "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL); INSERT INTO u (name) VALUES ('a')"));
  struct db_req *r = go(d, DBO_EXEC, "INSERT INTO u (name) VALUES ('a')", NULL);
  CHECK_INT(r->fail, DBF_CONFLICT);
  CHECK_CONTAINS(r->errmsg, "UNIQUE constraint failed");
  db_req_free(r);
  r = go(d, DBO_EXEC, "INSERT INTO u (name) VALUES (NULL)", NULL);
  CHECK_INT(r->fail, DBF_INVALID);
  CHECK_CONTAINS(r->errmsg, "NOT NULL");
  db_req_free(r);
  r = go(d, DBO_QUERY, "SELEC 1", NULL);
  CHECK_INT(r->fail, DBF_INVALID);
  CHECK_CONTAINS(r->errmsg, "syntax error");
  db_req_free(r);
  r = go(d, DBO_QUERY, "SELECT * FROM nothing_here", NULL);
  CHECK_INT(r->fail, DBF_INVALID);
  CHECK_CONTAINS(r->errmsg, "no such table");
  db_req_free(r);
  r = go(d, DBO_QUERY, "SELECT 1; SELECT 2", NULL);
  CHECK_INT(r->fail, DBF_INVALID);
  CHECK_CONTAINS(r->errmsg, "one statement");
  db_req_free(r);
  /* a second pool on the same file sees the row (a real file, shared) */
  struct db *d2 = open_db(path, 1, 1000, 1 << 20);
  r = d2 ? go(d2, DBO_QUERY, "SELECT count(*) AS n FROM u", NULL) : NULL;
  CHECK(r && r->fail == DBF_NONE && r->nrows == 1 && r->cells[0].i == 1);
  db_req_free(r);
  /* locked past busy_timeout (200ms): UNAVAILABLE */
  struct db_req *b = go(d, DBO_BEGIN, "", NULL);
  CHECK_INT(b->fail, DBF_NONE);
  struct db_tx *tx = b->tx;
  db_req_free(b);
  r = go(d2, DBO_EXEC, "INSERT INTO u (name) VALUES ('z')", NULL);
  CHECK_INT(r->fail, DBF_UNAVAILABLE);
  CHECK_CONTAINS(r->errmsg, "busy_timeout");
  db_req_free(r);
  db_req_free(go(d, DBO_ROLLBACK, "", tx));
  db_unref(d2);
  db_unref(d);
  unlink(path);
}

TEST(budgets) {
  struct db *d = open_db(":memory:", 1, 10, 4096);
  if (!d) { CHECK(d != NULL); return; }
  struct db_req *r = go(d, DBO_QUERY, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 11) SELECT x FROM c", NULL);
  CHECK_INT(r->fail, DBF_TOO_LARGE);
  CHECK_CONTAINS(r->errmsg, "more than 10 rows");
  db_req_free(r);
  r = go(d, DBO_QUERY, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) SELECT x FROM c", NULL);
  CHECK_INT(r->fail, DBF_NONE);
  CHECK_INT(r->nrows, 10);
  db_req_free(r);
  r = go(d, DBO_QUERY, "SELECT zeroblob(5000) AS b", NULL);
  CHECK_INT(r->fail, DBF_TOO_LARGE);
  CHECK_CONTAINS(r->errmsg, "bytes");
  db_req_free(r);
  r = db_req_new(DBO_EXEC, "SELECT 1", 8);
  r->nparams = 101;
  r->params = calloc(101, sizeof *r->params);
  struct waiter w;
  submit(d, r, &w);
  wait_req(&w);
  CHECK_INT(r->fail, DBF_INVALID);
  CHECK_CONTAINS(r->errmsg, "max_params");
  db_req_free(r);
  db_unref(d);
}

TEST(interrupt_from_another_thread) {
  struct db *d = open_db(":memory:", 1, 10, 4096);
  if (!d) { CHECK(d != NULL); return; }
  const char *slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c";
  struct db_req *r = db_req_new(DBO_QUERY, slow, strlen(slow));
  struct waiter w;
  submit(d, r, &w);
  struct db_stats st;
  for (int i = 0; i < 2000; i++) {                 /* until it runs (bounded: 20 s) */
    db_stats(d, &st);
    if (st.in_use) break;
    usleep(10000);
  }
  CHECK_INT(st.in_use, 1);
  db_cancel(d, r->id);
  wait_req(&w);
  CHECK_INT(r->fail, DBF_CANCELED);
  db_req_free(r);
  /* the connection is clean afterwards */
  r = go(d, DBO_QUERY, "SELECT 42 AS x", NULL);
  CHECK_INT(r->fail, DBF_NONE);
  CHECK(r->nrows == 1 && r->cells[0].i == 42);
  db_req_free(r);
  db_unref(d);
}

TEST(transactions_pin_one_connection) {
  char path[] = "/tmp/taskhost-db-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  struct db *d = open_db(path, 3, 1000, 1 << 20);
  if (!d) { CHECK(d != NULL); return; }
  CHECK(ok(d, "PRAGMA journal_mode = wal; CREATE TABLE t (v INTEGER)"));
  struct db_req *b = go(d, DBO_BEGIN, "", NULL);
  CHECK_INT(b->fail, DBF_NONE);
  struct db_tx *tx = b->tx;
  db_req_free(b);
  struct db_stats st;
  db_stats(d, &st);
  CHECK_INT(st.in_use, 1);
  db_req_free(go(d, DBO_EXEC, "INSERT INTO t VALUES (1)", tx));
  db_req_free(go(d, DBO_SAVEPOINT, "sp1", tx));
  db_req_free(go(d, DBO_EXEC, "INSERT INTO t VALUES (2)", tx));
  struct db_req *r = go(d, DBO_ROLLBACK_TO, "sp1", tx);
  CHECK_INT(r->fail, DBF_NONE);
  db_req_free(r);
  r = go(d, DBO_QUERY, "SELECT count(*) AS n FROM t", tx);   /* the tx sees its own row */
  CHECK(r->fail == DBF_NONE && r->cells[0].i == 1);
  db_req_free(r);
  r = go(d, DBO_QUERY, "SELECT count(*) AS n FROM t", NULL); /* another connection does not */
  CHECK(r->fail == DBF_NONE && r->cells[0].i == 0);
  db_req_free(r);
  r = go(d, DBO_COMMIT, "", tx);
  CHECK_INT(r->fail, DBF_NONE);
  db_req_free(r);
  r = go(d, DBO_QUERY, "SELECT count(*) AS n FROM t", NULL);
  CHECK(r->fail == DBF_NONE && r->cells[0].i == 1);
  db_req_free(r);
  db_stats(d, &st);
  CHECK_INT(st.in_use, 0);
  /* a rollback undoes */
  b = go(d, DBO_BEGIN, "", NULL);
  tx = b->tx;
  db_req_free(b);
  db_req_free(go(d, DBO_EXEC, "INSERT INTO t VALUES (3)", tx));
  db_req_free(go(d, DBO_ROLLBACK, "", tx));
  r = go(d, DBO_QUERY, "SELECT count(*) AS n FROM t", NULL);
  CHECK(r->fail == DBF_NONE && r->cells[0].i == 1);
  db_req_free(r);
  db_unref(d);
  unlink(path);
  char wal[64];
  snprintf(wal, sizeof wal, "%s-wal", path); unlink(wal);
  snprintf(wal, sizeof wal, "%s-shm", path); unlink(wal);
}

TEST(bad_pragma_refused) {
  struct db_pragma pr[] = {{"journal_mode", "wal; DROP TABLE x"}};
  struct db_config cfg = {":memory:", 1, 0, pr, 1, {10, 100, 100, 10}};
  char err[256];
  struct db *d = db_open(&db_sqlite_driver, &cfg, err, sizeof err);
  CHECK(d == NULL);
  CHECK_CONTAINS(err, "not allowed");
  struct db_pragma pr2[] = {{"key", "x"}};
  cfg.pragmas = pr2;
  CHECK(db_open(&db_sqlite_driver, &cfg, err, sizeof err) == NULL);
}

int main(void) {
  RUN(open_memory_and_params);
  RUN(file_and_errors);
  RUN(budgets);
  RUN(interrupt_from_another_thread);
  RUN(transactions_pin_one_connection);
  RUN(bad_pragma_refused);
  return T_DONE();
}
