/* test_jobstore.c — durable job rows in SQLite (host/jobs/jobstore.c): schema, round trips,
** upserts, deletes, done callbacks, per-row failures, group commit under concurrency. */
#define _GNU_SOURCE
#include "t.h"
#include "jobs/jobstore.h"
#include "base/util.h"

#include <ftw.h>
#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_jobstore.XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(p);
}

static void remove_tmpdir(void) { nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A path inside the temp dir; static storage, one at a time. */
static const char *tpath(const char *name) {
  static char p[256];
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  return p;
}

static struct jobstore *must_open(const char *path) {
  char err[512] = "";
  struct jobstore *s = jobstore_open(path, 0, err, sizeof err);
  if (!s) printf("  open %s: %s\n", path, err);
  return s;
}

/* Loaded rows, deep-copied. */
struct rows {
  struct job_row *v;
  size_t n, cap;
};

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static void collect(void *arg, const struct job_row *r) {
  struct rows *rs = arg;
  if (rs->n == rs->cap) {
    rs->cap = rs->cap ? rs->cap * 2 : 16;
    rs->v = xrealloc(rs->v, rs->cap * sizeof *rs->v);
  }
  struct job_row *c = &rs->v[rs->n++];
  *c = *r;
  c->id = dup_or_null(r->id);
  c->queue = dup_or_null(r->queue);
  c->data = dup_or_null(r->data);
  c->result = dup_or_null(r->result);
  c->errors = dup_or_null(r->errors);
  c->progress = dup_or_null(r->progress);
  c->idem_key = dup_or_null(r->idem_key);
  c->headers = dup_or_null(r->headers);
}

static void rows_free(struct rows *rs) {
  for (size_t i = 0; i < rs->n; i++) {
    struct job_row *r = &rs->v[i];
    free((char *)r->id); free((char *)r->queue); free((char *)r->data);
    free((char *)r->result); free((char *)r->errors); free((char *)r->progress);
    free((char *)r->idem_key); free((char *)r->headers);
  }
  free(rs->v);
  memset(rs, 0, sizeof *rs);
}

/* Reopens path and loads every row into rs. */
static void reload(const char *path, struct rows *rs) {
  char err[512] = "";
  struct jobstore *s = must_open(path);
  if (!s) return;
  CHECK_INT(jobstore_load(s, collect, rs, err, sizeof err), 0);
  jobstore_close(s);
}

static int str_eq(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

static int row_eq(const struct job_row *a, const struct job_row *b) {
  return a->seq == b->seq && str_eq(a->id, b->id) && str_eq(a->queue, b->queue) &&
         a->state == b->state && a->priority == b->priority && a->attempt == b->attempt &&
         a->max_retries == b->max_retries && a->recoveries == b->recoveries &&
         a->run_at == b->run_at && a->created_at == b->created_at &&
         a->started_at == b->started_at && a->finished_at == b->finished_at &&
         str_eq(a->data, b->data) && str_eq(a->result, b->result) &&
         str_eq(a->errors, b->errors) && str_eq(a->progress, b->progress) &&
         str_eq(a->idem_key, b->idem_key) && str_eq(a->headers, b->headers);
}

static struct job_row simple_row(int64_t seq, const char *id) {
  return (struct job_row){.seq = seq, .id = id, .queue = "app:jobs", .state = 1,
                          .created_at = 1700000000000 + seq, .data = "{}"};
}

/* Records done callbacks: which index, in which order, with what ok. */
struct calls {
  pthread_mutex_t mu;
  int order[4096], ok[4096], n;
};

struct call_arg { struct calls *c; int idx; };

static void record(void *arg, int ok) {
  struct call_arg *a = arg;
  pthread_mutex_lock(&a->c->mu);
  a->c->order[a->c->n] = a->idx;
  a->c->ok[a->c->n] = ok;
  a->c->n++;
  pthread_mutex_unlock(&a->c->mu);
}

/* ---- tests ------------------------------------------------------------- */

TEST(open_creates_dir_and_schema) {
  const char *path = tpath("sub/jobs.db");
  struct jobstore *s = must_open(path);
  CHECK(s != NULL);
  jobstore_close(s);
  struct stat st;
  CHECK_INT(stat(tpath("sub"), &st), 0);
  CHECK(S_ISDIR(st.st_mode));
  sqlite3 *db;
  CHECK_INT(sqlite3_open_v2(tpath("sub/jobs.db"), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *q;
  CHECK_INT(sqlite3_prepare_v2(db, "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),"
                               " (SELECT count(*) FROM jobs)", -1, &q, NULL), SQLITE_OK);
  CHECK_INT(sqlite3_step(q), SQLITE_ROW);
  CHECK_INT(sqlite3_column_int(q, 0), 2);
  CHECK_INT(sqlite3_column_int(q, 1), 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

TEST(round_trip_all_fields) {
  const char *path = tpath("rt.db");
  struct job_row in[3] = {
    {.seq = 7, .id = "j-7", .queue = "app:jobs", .state = 3, .priority = -2, .attempt = 2,
     .max_retries = 5, .recoveries = 1, .run_at = 1700000000123, .created_at = 1700000000001,
     .started_at = 1700000000050, .finished_at = 1700000000099, .data = "{\"a\":1}",
     .result = "{\"ok\":true}", .errors = "[{\"attempt\":1,\"at\":1,\"error\":\"x\"}]",
     .progress = "{\"pct\":50}", .idem_key = "key-ü", .headers = "{\"trace\":\"t-1\"}"},
    {.seq = 2, .id = "j-2", .queue = "q2", .data = "null"},      /* NULL strings, zero times */
    {.seq = 9000000000LL, .id = "j-big", .queue = "q", .state = 9, .run_at = -1, .data = ""},
  };
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  for (int i = 0; i < 3; i++) jobstore_put(s, &in[i], NULL, NULL);
  jobstore_close(s);

  struct rows rs = {0};
  reload(path, &rs);
  CHECK_INT(rs.n, 3);
  if (rs.n == 3) {
    CHECK(row_eq(&rs.v[0], &in[1]));      /* seq order: 2, 7, 9000000000 */
    CHECK(row_eq(&rs.v[1], &in[0]));
    CHECK(row_eq(&rs.v[2], &in[2]));
    CHECK(rs.v[0].result == NULL && rs.v[0].errors == NULL && rs.v[0].idem_key == NULL &&
          rs.v[0].headers == NULL);
    CHECK_STR(rs.v[2].data, "");
  }
  rows_free(&rs);
}

TEST(upsert_updates_in_place) {
  const char *path = tpath("upsert.db");
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct job_row r = simple_row(1, "u-1");
  jobstore_put(s, &r, NULL, NULL);
  jobstore_flush(s);
  r.state = 4;
  r.result = "{\"n\":42}";
  r.errors = "[]";
  r.finished_at = 123;
  jobstore_put(s, &r, NULL, NULL);
  jobstore_close(s);

  struct rows rs = {0};
  reload(path, &rs);
  CHECK_INT(rs.n, 1);
  if (rs.n == 1) {
    CHECK(row_eq(&rs.v[0], &r));
    CHECK_INT(rs.v[0].state, 4);
    CHECK_STR(rs.v[0].result, "{\"n\":42}");
    CHECK_STR(rs.v[0].errors, "[]");
  }
  rows_free(&rs);
}

TEST(delete_removes) {
  const char *path = tpath("delete.db");
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct job_row a = simple_row(1, "d-1"), b = simple_row(2, "d-2"), c = simple_row(3, "d-3");
  jobstore_put(s, &a, NULL, NULL);
  jobstore_put(s, &b, NULL, NULL);
  jobstore_put(s, &c, NULL, NULL);
  jobstore_delete(s, 2);
  jobstore_delete(s, 99);                    /* absent: not an error */
  jobstore_flush(s);
  struct jobstore_stats st;
  jobstore_stats(s, &st);
  CHECK_INT(st.failures, 0);
  jobstore_close(s);

  struct rows rs = {0};
  reload(path, &rs);
  CHECK_INT(rs.n, 2);
  if (rs.n == 2) { CHECK_INT(rs.v[0].seq, 1); CHECK_INT(rs.v[1].seq, 3); }
  rows_free(&rs);
}

TEST(done_callbacks_once_in_order) {
  enum { N = 3000 };
  static struct calls c;
  static struct call_arg args[N];
  memset(&c, 0, sizeof c);
  pthread_mutex_init(&c.mu, NULL);
  struct jobstore *s = must_open(tpath("calls.db"));
  if (!s) { CHECK(0); return; }
  char id[32];
  for (int i = 0; i < N; i++) {
    args[i] = (struct call_arg){&c, i};
    snprintf(id, sizeof id, "c-%d", i);
    struct job_row r = simple_row(i + 1, id);
    jobstore_put(s, &r, record, &args[i]);
  }
  jobstore_flush(s);
  CHECK_INT(c.n, N);                         /* flush returns after the callbacks ran */
  int in_order = 1, all_ok = 1;
  for (int i = 0; i < c.n; i++) {
    if (c.order[i] != i) in_order = 0;
    if (c.ok[i] != 1) all_ok = 0;
  }
  CHECK(in_order);
  CHECK(all_ok);
  jobstore_close(s);
  CHECK_INT(c.n, N);                         /* and nothing more after close */
  pthread_mutex_destroy(&c.mu);
}

/* The first put's callback holds the writer until the test has queued the rest, so they
** all land in one batch. */
static sem_t gate, entered;
static void wait_gate(void *arg, int ok) { sem_post(&entered); sem_wait(&gate); }

TEST(duplicate_id_fails_alone) {
  const char *path = tpath("dup.db");
  static struct calls c;
  static struct call_arg args[4];
  memset(&c, 0, sizeof c);
  pthread_mutex_init(&c.mu, NULL);
  sem_init(&gate, 0, 0);
  sem_init(&entered, 0, 0);
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct job_row first = simple_row(1, "first");
  jobstore_put(s, &first, wait_gate, NULL);
  sem_wait(&entered);                        /* the writer is now parked in the callback */
  struct job_row batch[4] = {simple_row(2, "a"), simple_row(3, "a"), simple_row(4, "b"),
                            simple_row(1, "b")};   /* last: seq 1 renamed to b's id */
  for (int i = 0; i < 4; i++) {
    args[i] = (struct call_arg){&c, i};
    jobstore_put(s, &batch[i], record, &args[i]);
  }
  sem_post(&gate);
  jobstore_flush(s);
  CHECK_INT(c.n, 4);
  for (int i = 0; i < c.n && i < 4; i++) CHECK_INT(c.order[i], i);
  CHECK_INT(c.ok[0], 1);
  CHECK_INT(c.ok[1], 0);                     /* same id "a" under another seq */
  CHECK_INT(c.ok[2], 1);
  CHECK_INT(c.ok[3], 0);                     /* update of seq 1 to an id taken by seq 4 */
  struct jobstore_stats st;
  jobstore_stats(s, &st);
  CHECK_INT(st.transactions, 2);
  CHECK_INT(st.rows, 3);
  CHECK_INT(st.failures, 2);
  jobstore_close(s);
  sem_destroy(&gate);
  sem_destroy(&entered);
  pthread_mutex_destroy(&c.mu);

  struct rows rs = {0};
  reload(path, &rs);
  CHECK_INT(rs.n, 3);
  if (rs.n == 3) {
    CHECK_STR(rs.v[0].id, "first");
    CHECK_STR(rs.v[1].id, "a");
    CHECK_INT(rs.v[1].seq, 2);
    CHECK_STR(rs.v[2].id, "b");
  }
  rows_free(&rs);
}

enum { THREADS = 4, PER_THREAD = 5000 };
struct writer_arg { struct jobstore *s; int t; };

static void *put_many(void *arg) {
  struct writer_arg *w = arg;
  char id[32];
  for (int i = 0; i < PER_THREAD; i++) {
    int64_t seq = (int64_t)w->t * PER_THREAD + i + 1;
    snprintf(id, sizeof id, "t%d-%d", w->t, i);
    struct job_row r = simple_row(seq, id);
    jobstore_put(w->s, &r, NULL, NULL);
  }
  return NULL;
}

TEST(concurrent_puts_batch) {
  const char *path = tpath("conc.db");
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  pthread_t th[THREADS];
  struct writer_arg wa[THREADS];
  for (int t = 0; t < THREADS; t++) {
    wa[t] = (struct writer_arg){s, t};
    pthread_create(&th[t], NULL, put_many, &wa[t]);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  jobstore_flush(s);
  struct jobstore_stats st;
  jobstore_stats(s, &st);
  printf("  %d threads: %llu rows in %llu transactions, %llu failures\n", THREADS,
         (unsigned long long)st.rows, (unsigned long long)st.transactions,
         (unsigned long long)st.failures);
  CHECK_INT(st.rows, THREADS * PER_THREAD);
  CHECK_INT(st.failures, 0);
  CHECK(st.transactions >= 1 && st.transactions < st.rows);
  jobstore_close(s);

  struct rows rs = {0};
  reload(path, &rs);
  CHECK_INT(rs.n, THREADS * PER_THREAD);
  int ordered = 1;
  for (size_t i = 0; i < rs.n; i++) if (rs.v[i].seq != (int64_t)i + 1) ordered = 0;
  CHECK(ordered);
  rows_free(&rs);
}

TEST(newer_schema_refused) {
  const char *path = tpath("newer.db");
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  jobstore_close(s);
  sqlite3 *db;
  CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
  CHECK_INT(sqlite3_exec(db, "UPDATE meta SET value = 3 WHERE key = 'schema_version'", NULL,
                         NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  char err[512] = "";
  s = jobstore_open(path, 1, err, sizeof err);
  CHECK(s == NULL);
  CHECK_CONTAINS(err, path);
  CHECK_CONTAINS(err, "newer");
  jobstore_close(s);
}

/* A version 1 file (before message headers) is migrated in place: its rows load with no
** headers, new rows keep theirs, and the file says version 2. */
TEST(version_1_migrated) {
  const char *path = tpath("v1.db");
  sqlite3 *db;
  CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
  CHECK_INT(sqlite3_exec(db,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);"
    "INSERT INTO meta VALUES('schema_version', 1);"
    "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,"
    " state INTEGER, priority INTEGER, attempt INTEGER, max_retries INTEGER,"
    " recoveries INTEGER, run_at INTEGER, created_at INTEGER, started_at INTEGER,"
    " finished_at INTEGER, data TEXT, result TEXT, errors TEXT, progress TEXT, idem_key TEXT);"
    "INSERT INTO jobs(seq, id, queue, state, data) VALUES(1, 'old', 'app:jobs', 0, '{}');",
    NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct job_row r = simple_row(2, "new");
  r.headers = "{\"k\":\"v\"}";
  jobstore_put(s, &r, NULL, NULL);
  jobstore_close(s);
  struct rows rs = {0};
  reload(path, &rs);
  CHECK_INT(rs.n, 2);
  if (rs.n == 2) {
    CHECK_STR(rs.v[0].id, "old");
    CHECK(rs.v[0].headers == NULL);
    CHECK(row_eq(&rs.v[1], &r));
  }
  rows_free(&rs);
  CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *q;
  CHECK_INT(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &q,
                               NULL), SQLITE_OK);
  CHECK_INT(sqlite3_step(q), SQLITE_ROW);
  CHECK_INT(sqlite3_column_int(q, 0), 2);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

TEST(open_error_names_path) {
  char err[512] = "";
  struct jobstore *s = jobstore_open("/proc/no/such/dir/jobs.db", 0, err, sizeof err);
  CHECK(s == NULL);
  CHECK_CONTAINS(err, "/proc/no/such/dir/jobs.db: ");
  jobstore_close(s);
}

TEST(close_null) {
  jobstore_close(NULL);
  CHECK(1);
}

/* No memory-mapped -shm file (a storage fault must be an error, not SIGBUS); the WAL is in
** use, and a second host is refused by the lock file. */
TEST(exclusive_wal_has_no_shm_file) {
  char path[256], aux[300];
  snprintf(path, sizeof path, "%s", tpath("excl.db"));
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct job_row r = simple_row(1, "x-1");
  jobstore_put(s, &r, NULL, NULL);
  jobstore_flush(s);
  struct stat st;
  snprintf(aux, sizeof aux, "%s-wal", path);
  CHECK_INT(stat(aux, &st), 0);
  snprintf(aux, sizeof aux, "%s-shm", path);
  CHECK(stat(aux, &st) != 0);
  char err[512] = "";
  struct jobstore *other = jobstore_open(path, 0, err, sizeof err);
  CHECK(other == NULL);
  CHECK_CONTAINS(err, "in use by another taskhost");
  jobstore_close(other);
  CHECK(jobstore_healthy(s));
  jobstore_close(s);
}

/* The owner's side of recovery: records events; on a rewrite puts its rows (1 and 3). */
struct owner {
  struct jobstore *s;
  pthread_mutex_t mu;
  int events[16], n;
};

static void owner_event(void *arg, int event) {
  struct owner *o = arg;
  pthread_mutex_lock(&o->mu);
  if (o->n < 16) o->events[o->n++] = event;
  pthread_mutex_unlock(&o->mu);
  if (event == JOBSTORE_HEALTHY) return;
  struct job_row a = simple_row(1, "kept-1"), b = simple_row(3, "kept-3");
  jobstore_put(o->s, &a, NULL, NULL);
  jobstore_put(o->s, &b, NULL, NULL);
}

static void set_flag(void *arg, int ok) { *(int *)arg = ok; }

/* Bounded wait (a hang detector, not a timing assertion) for the store to be healthy. */
static int wait_healthy(struct jobstore *s) {
  for (int i = 0; i < 1000 && !jobstore_healthy(s); i++) usleep(20 * 1000);
  return jobstore_healthy(s);
}

TEST(removed_file_fails_then_recovers_with_the_owners_rows) {
  char path[256], aux[300];
  snprintf(path, sizeof path, "%s", tpath("gone/jobs.db"));
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct owner o = {.s = s};
  pthread_mutex_init(&o.mu, NULL);
  jobstore_on_event(s, owner_event, &o);
  struct job_row r1 = simple_row(1, "kept-1"), r2 = simple_row(2, "lost-2");
  int ok1 = -1, ok2 = -1;
  jobstore_put(s, &r1, set_flag, &ok1);
  jobstore_flush(s);
  CHECK_INT(ok1, 1);
  remove(path);                                  /* rm -rf of the directory */
  snprintf(aux, sizeof aux, "%s-wal", path);
  remove(aux);
  snprintf(aux, sizeof aux, "%s.lock", path);
  remove(aux);
  rmdir(tpath("gone"));
  jobstore_put(s, &r2, set_flag, &ok2);          /* commits to the unlinked file: not ok */
  jobstore_flush(s);
  CHECK_INT(ok2, 0);
  CHECK_INT(jobstore_healthy(s), 0);
  CHECK(wait_healthy(s));                        /* it made the directory and file again */
  pthread_mutex_lock(&o.mu);
  CHECK_INT(o.n, 2);
  CHECK_INT(o.events[0], JOBSTORE_REWRITE_ALL);
  CHECK_INT(o.events[1], JOBSTORE_HEALTHY);
  pthread_mutex_unlock(&o.mu);
  struct stat st;
  CHECK_INT(stat(aux, &st), 0);                  /* the lock is held again */
  jobstore_close(s);
  struct rows rs = {0};
  reload(path, &rs);
  CHECK_INT(rs.n, 2);
  if (rs.n == 2) {
    CHECK_STR(rs.v[0].id, "kept-1");
    CHECK_STR(rs.v[1].id, "kept-3");
  }
  rows_free(&rs);
  pthread_mutex_destroy(&o.mu);
}

/* A put that reached a file the path no longer named is reported failed, and is gone from
** that file once it is back and the store has recovered. */
TEST(failed_put_does_not_resurface_when_the_file_comes_back) {
  char path[256], away[300];
  snprintf(path, sizeof path, "%s", tpath("back.db"));
  snprintf(away, sizeof away, "%s.away", path);
  struct jobstore *s = must_open(path);
  if (!s) { CHECK(0); return; }
  struct owner o = {.s = s};
  pthread_mutex_init(&o.mu, NULL);
  jobstore_on_event(s, owner_event, &o);
  struct job_row r1 = simple_row(1, "kept-1"), r2 = simple_row(2, "refused-2");
  int ok1 = -1, ok2 = -1;
  jobstore_put(s, &r1, set_flag, &ok1);
  jobstore_flush(s);
  CHECK_INT(rename(path, away), 0);
  jobstore_put(s, &r2, set_flag, &ok2);
  jobstore_flush(s);
  CHECK_INT(ok2, 0);
  CHECK_INT(rename(away, path), 0);              /* the same file is back */
  CHECK(wait_healthy(s));
  jobstore_close(s);
  struct rows rs = {0};
  reload(path, &rs);
  int refused = 0;
  for (size_t i = 0; i < rs.n; i++) refused += strcmp(rs.v[i].id, "refused-2") == 0;
  CHECK_INT(refused, 0);
  CHECK_INT(ok1, 1);
  CHECK_INT(rs.n, 2);                            /* kept-1 and the owner's kept-3 */
  rows_free(&rs);
  pthread_mutex_destroy(&o.mu);
}

TEST(throughput) {
  enum { N = 200000 };
  struct jobstore *s = must_open(tpath("bench.db"));
  if (!s) { CHECK(0); return; }
  char id[32];
  int64_t t0 = clock_mono_ns();
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "bench-%d", i);
    struct job_row r = simple_row(i + 1, id);
    r.data = "{\"user\":42,\"action\":\"send-email\",\"to\":\"someone@example.com\"}";
    jobstore_put(s, &r, NULL, NULL);
  }
  jobstore_flush(s);
  double secs = (double)(clock_mono_ns() - t0) / NS_PER_S;
  struct jobstore_stats st;
  jobstore_stats(s, &st);
  printf("  %d puts + flush: %.0f rows/s, %llu transactions\n", N, N / secs,
         (unsigned long long)st.transactions);
  CHECK_INT(st.rows, N);
  jobstore_close(s);
}

int main(void) {
  make_tmpdir();
  RUN(open_creates_dir_and_schema);
  RUN(round_trip_all_fields);
  RUN(upsert_updates_in_place);
  RUN(delete_removes);
  RUN(done_callbacks_once_in_order);
  RUN(duplicate_id_fails_alone);
  RUN(concurrent_puts_batch);
  RUN(newer_schema_refused);
  RUN(version_1_migrated);
  RUN(open_error_names_path);
  RUN(close_null);
  RUN(exclusive_wal_has_no_shm_file);
  RUN(removed_file_fails_then_recovers_with_the_owners_rows);
  RUN(failed_put_does_not_resurface_when_the_file_comes_back);
  RUN(throughput);
  remove_tmpdir();
  return T_DONE();
}
