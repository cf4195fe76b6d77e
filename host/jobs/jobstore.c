/*
** jobstore.c — see jobstore.h.
**
** Threads: jobstore_open runs on the caller's thread, prepares everything and starts the
** writer. After that the sqlite3 connection and its prepared statements belong to whoever
** holds `db_lock`: the opener during jobstore_load, otherwise the writer thread (the lock is
** never contended in correct use, since load runs before any put; it only makes a misuse
** safe). The pending op list, the op counters and the stats are guarded by `mu`; `work_cv`
** wakes the writer, `done_cv` wakes jobstore_flush.
**
** Group commit: the writer takes the whole pending list at once, applies it in one
** BEGIN IMMEDIATE … COMMIT, then runs the done callbacks in order. Puts that arrive while it
** commits pile up for the next transaction, so throughput is not bound by the commit rate.
** A row that violates a constraint (e.g. an existing id under another seq) fails alone:
** SQLite's default ABORT undoes only that statement and the transaction goes on.
**
** Health (jobstore.h): `broken`, the inode of the open file and the lock fd belong to the
** writer thread (and the opener before it starts); `healthy` is the atomic copy readers see.
*/
#include "jobstore.h"
#include "base/log.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define SCHEMA_VERSION 2

enum op_kind { OP_PUT, OP_DELETE };

/* One queued operation; for a put the row's strings follow in the same allocation. */
struct op {
  struct op *next;
  enum op_kind kind;
  int ok;
  jobstore_done_fn done;
  void *arg;
  struct job_row row;       /* for OP_DELETE only row.seq is set */
};

struct jobstore {
  char *path, *lock_path;
  int synchronous_full;
  sqlite3 *db;
  sqlite3_stmt *upsert, *del;
  pthread_mutex_t db_lock;  /* held while the connection is in use */

  /* the writer's (the opener's before it starts) */
  int lock_fd;              /* flock on lock_path */
  dev_t db_dev;             /* the open file, to compare with stat(path) */
  ino_t db_ino;
  int broken;               /* a fault was seen: ops fail until recover() succeeds */
  int lost;                 /* the file at path went away or was replaced meanwhile */
  int64_t *doubtful;        /* seqs of puts that committed to a file path no longer named */
  size_t ndoubtful, capdoubtful;
  int created;              /* the last open_db created the schema (a new file) */
  int64_t next_check;       /* monotonic ns: next file check or recovery attempt */
  char why[256];            /* the fault last logged */
  _Atomic int healthy;      /* !broken, for any thread */
  void (*event_fn)(void *, int);   /* under mu */
  void *event_arg;

  pthread_mutex_t mu;       /* guards everything below */
  pthread_cond_t work_cv, done_cv;
  struct op *head, *tail;
  uint64_t ops_queued, ops_done;
  struct jobstore_stats stats;
  int stopping;
  pthread_t thread;
};

static const char schema_sql[] =
  "CREATE TABLE jobs ("
  " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,"
  " state INTEGER, priority INTEGER, attempt INTEGER, max_retries INTEGER,"
  " recoveries INTEGER, run_at INTEGER, created_at INTEGER, started_at INTEGER,"
  " finished_at INTEGER, data TEXT, result TEXT, errors TEXT, progress TEXT, idem_key TEXT,"
  " headers TEXT);"
  "INSERT INTO meta(key, value) VALUES('schema_version', 2);";

/* Version 1 → 2: message headers (queue.publish's Wippy headers, a JSON object). */
static const char migrate_2_sql[] =
  "ALTER TABLE jobs ADD COLUMN headers TEXT;"
  "UPDATE meta SET value = 2 WHERE key = 'schema_version';";

#define COLUMNS "seq, id, queue, state, priority, attempt, max_retries, recoveries, run_at," \
  " created_at, started_at, finished_at, data, result, errors, progress, idem_key, headers"

static const char upsert_sql[] =
  "INSERT INTO jobs(" COLUMNS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
  " ?13, ?14, ?15, ?16, ?17, ?18) ON CONFLICT(seq) DO UPDATE SET id = excluded.id,"
  " queue = excluded.queue, state = excluded.state, priority = excluded.priority,"
  " attempt = excluded.attempt, max_retries = excluded.max_retries,"
  " recoveries = excluded.recoveries, run_at = excluded.run_at,"
  " created_at = excluded.created_at, started_at = excluded.started_at,"
  " finished_at = excluded.finished_at, data = excluded.data, result = excluded.result,"
  " errors = excluded.errors, progress = excluded.progress, idem_key = excluded.idem_key,"
  " headers = excluded.headers";

/* ---- opening ----------------------------------------------------------- */

static int fail(struct jobstore *s, char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s: %s%s%s", s->path, what, s->db ? ": " : "",
           s->db ? sqlite3_errmsg(s->db) : "");
  return -1;
}

/* Creates the parent directory of path (one level) when missing. */
static int make_parent(const char *path, char *err, size_t errlen) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path) return 0;
  char *dir = xstrndup(path, (size_t)(slash - path));
  int rc = mkdir(dir, 0755);
  if (rc < 0 && errno != EEXIST) {
    snprintf(err, errlen, "%s: cannot create directory %s: %s", path, dir, strerror(errno));
    free(dir);
    return -1;
  }
  free(dir);
  return 0;
}

static int exec(struct jobstore *s, const char *sql) {
  return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* EXCLUSIVE before WAL: the wal-index stays in heap memory (no -shm file is mapped, so a
** full or read-only file system cannot raise SIGBUS); no memory-mapped I/O either. */
static int set_pragmas(struct jobstore *s, int synchronous_full, char *err, size_t errlen) {
  sqlite3_busy_timeout(s->db, 5000);
  if (exec(s, "PRAGMA locking_mode=EXCLUSIVE") < 0 || exec(s, "PRAGMA mmap_size=0") < 0)
    return fail(s, err, errlen, "PRAGMA locking_mode");
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK)
    return fail(s, err, errlen, "PRAGMA journal_mode");
  const char *mode = sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
  int wal = mode && sqlite3_stricmp(mode, "wal") == 0;
  sqlite3_finalize(st);
  if (!wal) return fail(s, err, errlen, "cannot switch to WAL mode");
  if (exec(s, synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") < 0)
    return fail(s, err, errlen, "PRAGMA synchronous");
  return 0;
}

/* Reads meta.schema_version into *version (0 when the row is missing). */
static int read_version(struct jobstore *s, int *version) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st,
                         NULL) != SQLITE_OK)
    return -1;
  int rc = sqlite3_step(st);
  *version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Creates the schema in a new file, checks the version of an existing one and migrates an
** older one (in the same transaction: all or nothing). */
static int ensure_schema(struct jobstore *s, char *err, size_t errlen) {
  int version;
  if (exec(s, "BEGIN IMMEDIATE") < 0) return fail(s, err, errlen, "cannot begin");
  if (exec(s, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)") < 0 ||
      read_version(s, &version) < 0 || (version == 0 && exec(s, schema_sql) < 0)) {
    fail(s, err, errlen, "cannot create the schema");
    exec(s, "ROLLBACK");
    return -1;
  }
  if (version > SCHEMA_VERSION) {
    snprintf(err, errlen, "%s: schema version %d is newer than this taskhost supports (%d)",
             s->path, version, SCHEMA_VERSION);
    exec(s, "ROLLBACK");
    return -1;
  }
  if (version == 1 && exec(s, migrate_2_sql) < 0) {
    fail(s, err, errlen, "cannot migrate the schema to version 2");
    exec(s, "ROLLBACK");
    return -1;
  }
  s->created = version == 0;
  if (exec(s, "COMMIT") < 0) {
    fail(s, err, errlen, "cannot commit the schema");
    exec(s, "ROLLBACK");
    return -1;
  }
  return 0;
}

static int prepare(struct jobstore *s, char *err, size_t errlen) {
  if (sqlite3_prepare_v3(s->db, upsert_sql, -1, SQLITE_PREPARE_PERSISTENT, &s->upsert, NULL) !=
          SQLITE_OK ||
      sqlite3_prepare_v3(s->db, "DELETE FROM jobs WHERE seq = ?1", -1, SQLITE_PREPARE_PERSISTENT,
                         &s->del, NULL) != SQLITE_OK)
    return fail(s, err, errlen, "cannot prepare statements");
  return 0;
}

static int same_file(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Holds the flock on lock_path: keeps the current fd while the path still names its file,
** else locks the file there now (created when missing). Boot recovery treats every job left
** running as orphaned, which is only true while this host is the file's one user. */
static int take_lock(struct jobstore *s, char *err, size_t errlen) {
  struct stat held, now;
  if (s->lock_fd >= 0 && fstat(s->lock_fd, &held) == 0 && stat(s->lock_path, &now) == 0 &&
      same_file(&held, &now))
    return 0;
  int fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
    snprintf(err, errlen, "%s: %s", s->lock_path,
             fd >= 0 && errno == EWOULDBLOCK ? "the queue's database is in use by another taskhost"
                                              : strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  if (s->lock_fd >= 0) close(s->lock_fd);
  s->lock_fd = fd;
  return 0;
}

static void close_db(struct jobstore *s) {
  sqlite3_finalize(s->upsert);
  sqlite3_finalize(s->del);
  sqlite3_close(s->db);
  s->upsert = s->del = NULL;
  s->db = NULL;
}

/* Directory, lock, connection, schema, statements; remembers the file's inode. */
static int open_db(struct jobstore *s, char *err, size_t errlen) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  struct stat st;
  if (make_parent(s->path, err, errlen) < 0 || take_lock(s, err, errlen) < 0) return -1;
  if (sqlite3_open_v2(s->path, &s->db, flags, NULL) != SQLITE_OK)
    fail(s, err, errlen, "cannot open");
  else if (sqlite3_db_readonly(s->db, "main") == 1)
    snprintf(err, errlen, "%s: the file is read-only", s->path);
  else if (set_pragmas(s, s->synchronous_full, err, errlen) == 0 &&
           ensure_schema(s, err, errlen) == 0 && prepare(s, err, errlen) == 0) {
    if (stat(s->path, &st) == 0) {
      s->db_dev = st.st_dev;
      s->db_ino = st.st_ino;
      return 0;
    }
    snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
  }
  close_db(s);
  return -1;
}

static void *writer_main(void *arg);

static void destroy(struct jobstore *s) {
  close_db(s);
  if (s->lock_fd >= 0) close(s->lock_fd);
  pthread_mutex_destroy(&s->db_lock);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->work_cv);
  pthread_cond_destroy(&s->done_cv);
  free(s->doubtful);
  free(s->path);
  free(s->lock_path);
  free(s);
}

struct jobstore *jobstore_open(const char *path, int synchronous_full, char *err, size_t errlen) {
  struct jobstore *s = xcalloc(1, sizeof *s);
  s->path = xstrdup(path);
  s->lock_path = xmalloc(strlen(path) + 6);
  sprintf(s->lock_path, "%s.lock", path);
  s->synchronous_full = synchronous_full;
  s->lock_fd = -1;
  atomic_init(&s->healthy, 1);
  pthread_mutex_init(&s->db_lock, NULL);
  pthread_mutex_init(&s->mu, NULL);
  cond_init_monotonic(&s->work_cv);
  cond_init_monotonic(&s->done_cv);
  if (open_db(s, err, errlen) < 0) goto failed;
  s->next_check = clock_mono_ns() + NS_PER_S;
  int rc = pthread_create(&s->thread, NULL, writer_main, s);
  if (rc != 0) {
    snprintf(err, errlen, "%s: cannot start the writer thread: %s", path, strerror(rc));
    goto failed;
  }
  return s;
failed:
  destroy(s);
  return NULL;
}

/* ---- loading ----------------------------------------------------------- */

static void row_from_stmt(sqlite3_stmt *st, struct job_row *r) {
#define TXT(i) ((const char *)sqlite3_column_text(st, i))
  *r = (struct job_row){
    .seq = sqlite3_column_int64(st, 0), .id = TXT(1), .queue = TXT(2),
    .state = sqlite3_column_int(st, 3), .priority = sqlite3_column_int(st, 4),
    .attempt = sqlite3_column_int(st, 5), .max_retries = sqlite3_column_int(st, 6),
    .recoveries = sqlite3_column_int(st, 7), .run_at = sqlite3_column_int64(st, 8),
    .created_at = sqlite3_column_int64(st, 9), .started_at = sqlite3_column_int64(st, 10),
    .finished_at = sqlite3_column_int64(st, 11), .data = TXT(12), .result = TXT(13),
    .errors = TXT(14), .progress = TXT(15), .idem_key = TXT(16),
    .headers = TXT(17),
  };
#undef TXT
}

int jobstore_load(struct jobstore *s, void (*each)(void *arg, const struct job_row *r), void *arg,
                  char *err, size_t errlen) {
  sqlite3_stmt *st;
  int rc, ret = 0;
  pthread_mutex_lock(&s->db_lock);
  if (sqlite3_prepare_v2(s->db, "SELECT " COLUMNS " FROM jobs ORDER BY seq", -1, &st, NULL) !=
      SQLITE_OK) {
    ret = fail(s, err, errlen, "cannot read jobs");
    pthread_mutex_unlock(&s->db_lock);
    return ret;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    struct job_row r;
    row_from_stmt(st, &r);
    each(arg, &r);
  }
  if (rc != SQLITE_DONE) ret = fail(s, err, errlen, "cannot read jobs");
  sqlite3_finalize(st);
  pthread_mutex_unlock(&s->db_lock);
  return ret;
}

/* ---- queueing ---------------------------------------------------------- */

static size_t str_size(const char *p) { return p ? strlen(p) + 1 : 0; }

/* Copies src into the string area at *at; returns the copy (NULL stays NULL). */
static const char *str_copy(char **at, const char *src) {
  if (!src) return NULL;
  size_t n = strlen(src) + 1;
  char *dst = memcpy(*at, src, n);
  *at += n;
  return dst;
}

static struct op *op_new_put(const struct job_row *r) {
  size_t n = str_size(r->id) + str_size(r->queue) + str_size(r->data) + str_size(r->result) +
             str_size(r->errors) + str_size(r->progress) + str_size(r->idem_key) +
             str_size(r->headers);
  struct op *op = xmalloc(sizeof *op + n);
  char *at = (char *)(op + 1);
  op->row = *r;
  op->row.id = str_copy(&at, r->id);
  op->row.queue = str_copy(&at, r->queue);
  op->row.data = str_copy(&at, r->data);
  op->row.result = str_copy(&at, r->result);
  op->row.errors = str_copy(&at, r->errors);
  op->row.progress = str_copy(&at, r->progress);
  op->row.idem_key = str_copy(&at, r->idem_key);
  op->row.headers = str_copy(&at, r->headers);
  op->kind = OP_PUT;
  return op;
}

static void enqueue(struct jobstore *s, struct op *op) {
  op->next = NULL;
  op->ok = 0;
  pthread_mutex_lock(&s->mu);
  if (s->tail) s->tail->next = op;
  else s->head = op;
  s->tail = op;
  s->ops_queued++;
  pthread_cond_signal(&s->work_cv);
  pthread_mutex_unlock(&s->mu);
}

void jobstore_put(struct jobstore *s, const struct job_row *r, jobstore_done_fn done, void *arg) {
  struct op *op = op_new_put(r);
  op->done = done;
  op->arg = arg;
  enqueue(s, op);
}

void jobstore_put_all(struct jobstore *s, const struct job_row *rows, size_t n,
                      jobstore_done_fn done, void *const *args) {
  struct op *first = NULL, *last = NULL;
  for (size_t i = 0; i < n; i++) {
    struct op *op = op_new_put(&rows[i]);
    op->done = done;
    op->arg = args ? args[i] : NULL;
    op->next = NULL;
    op->ok = 0;
    if (last) last->next = op;
    else first = op;
    last = op;
  }
  if (!first) return;
  pthread_mutex_lock(&s->mu);           /* one splice: the writer takes all or none of them */
  if (s->tail) s->tail->next = first;
  else s->head = first;
  s->tail = last;
  s->ops_queued += n;
  pthread_cond_signal(&s->work_cv);
  pthread_mutex_unlock(&s->mu);
}

int jobstore_healthy(struct jobstore *s) { return atomic_load(&s->healthy); }

void jobstore_on_event(struct jobstore *s, void (*fn)(void *arg, int event), void *arg) {
  pthread_mutex_lock(&s->mu);
  s->event_fn = fn;
  s->event_arg = arg;
  pthread_mutex_unlock(&s->mu);
}

void jobstore_delete(struct jobstore *s, int64_t seq) {
  struct op *op = xcalloc(1, sizeof *op);
  op->kind = OP_DELETE;
  op->row.seq = seq;
  enqueue(s, op);
}

void jobstore_flush(struct jobstore *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t target = s->ops_queued;
  while (s->ops_done < target) pthread_cond_wait(&s->done_cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

/* ---- the writer -------------------------------------------------------- */

static void bind_row(sqlite3_stmt *st, const struct job_row *r) {
  const char *texts[] = {r->id, r->queue};
  const char *tail[] = {r->data, r->result, r->errors, r->progress, r->idem_key, r->headers};
  const int64_t ints[] = {r->state, r->priority, r->attempt, r->max_retries, r->recoveries,
                          r->run_at, r->created_at, r->started_at, r->finished_at};
  sqlite3_bind_int64(st, 1, r->seq);
  for (int i = 0; i < 2; i++) sqlite3_bind_text(st, 2 + i, texts[i], -1, SQLITE_STATIC);
  for (int i = 0; i < 9; i++) sqlite3_bind_int64(st, 4 + i, ints[i]);
  for (int i = 0; i < 6; i++) sqlite3_bind_text(st, 13 + i, tail[i], -1, SQLITE_STATIC);
}

/* Runs one op inside the open transaction. Returns 0, or -1 (logged). */
static int apply(struct jobstore *s, const struct op *op) {
  sqlite3_stmt *st = op->kind == OP_PUT ? s->upsert : s->del;
  if (op->kind == OP_PUT) bind_row(st, &op->row);
  else sqlite3_bind_int64(st, 1, op->row.seq);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc == SQLITE_DONE) return 0;
  log_error("jobstore %s: %s of job seq %lld (id %s) failed: %s", s->path,
            op->kind == OP_PUT ? "write" : "delete", (long long)op->row.seq,
            op->row.id ? op->row.id : "-", sqlite3_errmsg(s->db));
  return -1;
}

/* 0 while path and lock_path name the files held and the file system is writable; else -1
** with the reason in why. */
static int check_files(struct jobstore *s, char *why, size_t n) {
  struct stat st, held;
  struct statvfs vfs;
  if (stat(s->path, &st) != 0 || st.st_dev != s->db_dev || st.st_ino != s->db_ino) {
    s->lost = 1;
    snprintf(why, n, "the database file is gone or was replaced");
  } else if (fstat(s->lock_fd, &held) != 0 || stat(s->lock_path, &st) != 0 || !same_file(&held, &st))
    snprintf(why, n, "the lock file %s is gone or was replaced", s->lock_path);
  else if (statvfs(s->path, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
    snprintf(why, n, "the file system is read-only");
  else
    return 0;
  return -1;
}

/* A put reported failed may still sit in that file, which may come back (an unmount, a
** rename): recover() deletes it there before the owner writes its rows again. */
static void note_doubtful(struct jobstore *s, const struct op *list) {
  for (const struct op *op = list; op; op = op->next) {
    if (op->kind != OP_PUT) continue;
    if (s->ndoubtful == s->capdoubtful) {
      s->capdoubtful = s->capdoubtful ? s->capdoubtful * 2 : 64;
      s->doubtful = xrealloc(s->doubtful, s->capdoubtful * sizeof *s->doubtful);
    }
    s->doubtful[s->ndoubtful++] = op->row.seq;
  }
}

/* Recovery's first statements: every row goes (wipe: the owner writes them all again), or
** the doubtful ones. 0 / -1. */
static int clear_rows(struct jobstore *s, int wipe) {
  if (wipe) return exec(s, "DELETE FROM jobs");
  struct op del = {.kind = OP_DELETE};
  for (size_t i = 0; i < s->ndoubtful; i++) {
    del.row.seq = s->doubtful[i];
    if (apply(s, &del) < 0) return -1;
  }
  return 0;
}

enum { BATCH_OK, BATCH_FAILED, BATCH_ORPHANED };

/* Applies a batch in one transaction; sets each op's ok. clear: 0, or 1 + wipe for
** clear_rows first. BATCH_OK when it committed onto the file path names; BATCH_FAILED (not
** committed) or BATCH_ORPHANED (committed to a file path no longer names) with the reason in
** why. */
static int write_batch(struct jobstore *s, struct op *list, int clear, char *why, size_t n) {
  pthread_mutex_lock(&s->db_lock);
  int committed = exec(s, "BEGIN IMMEDIATE") == 0;
  if (!committed) snprintf(why, n, "cannot begin: %s", sqlite3_errmsg(s->db));
  if (committed && clear && clear_rows(s, clear - 1) < 0) {
    committed = 0;
    snprintf(why, n, "cannot clear rows: %s", sqlite3_errmsg(s->db));
  }
  for (struct op *op = list; op && committed; op = op->next) {
    op->ok = apply(s, op) == 0;
    /* An I/O error or the like may have rolled the whole transaction back. */
    if (!op->ok && sqlite3_get_autocommit(s->db)) {
      committed = 0;
      snprintf(why, n, "write failed: %s", sqlite3_errmsg(s->db));
    }
  }
  if (committed && exec(s, "COMMIT") < 0) {
    snprintf(why, n, "commit failed: %s", sqlite3_errmsg(s->db));
    committed = 0;
  }
  if (!committed && !sqlite3_get_autocommit(s->db)) exec(s, "ROLLBACK");
  pthread_mutex_unlock(&s->db_lock);
  if (!committed) return BATCH_FAILED;
  return check_files(s, why, n) == 0 ? BATCH_OK : BATCH_ORPHANED;
}

/* Reports and frees a processed batch, then counts it. */
static void finish_batch(struct jobstore *s, struct op *list, int committed) {
  uint64_t n = 0, written = 0;
  while (list) {
    struct op *op = list;
    list = op->next;
    int ok = committed && op->ok;
    written += ok;
    n++;
    if (op->done) op->done(op->arg, ok);
    free(op);
  }
  pthread_mutex_lock(&s->mu);
  s->stats.rows += written;
  s->stats.failures += n - written;
  s->stats.transactions += committed;
  s->ops_done += n;
  pthread_cond_broadcast(&s->done_cv);
  pthread_mutex_unlock(&s->mu);
}

static void go_broken(struct jobstore *s, const char *why) {
  if (!s->broken) {
    log_error("jobstore %s: %s: new jobs are refused (503 / UNAVAILABLE) until it is writable "
              "again; the jobs are kept in memory", s->path, why);
  } else if (strcmp(why, s->why) != 0) {
    log_warn("jobstore %s: still not writable: %s", s->path, why);
  }
  snprintf(s->why, sizeof s->why, "%s", why);
  s->broken = 1;
  atomic_store(&s->healthy, 0);
  s->next_check = clock_mono_ns() + NS_PER_S;
}

static void raise_event(struct jobstore *s, int event) {
  pthread_mutex_lock(&s->mu);
  void (*fn)(void *, int) = s->event_fn;
  void *arg = s->event_arg;
  pthread_mutex_unlock(&s->mu);
  if (fn) fn(arg, event);
}

static struct op *take_pending(struct jobstore *s) {
  pthread_mutex_lock(&s->mu);
  struct op *list = s->head;
  s->head = s->tail = NULL;
  pthread_mutex_unlock(&s->mu);
  return list;
}

/* Reopens and writes everything the owner holds again; healthy once that has committed. */
static void recover(struct jobstore *s) {
  char err[512];
  pthread_mutex_lock(&s->db_lock);
  close_db(s);
  int rc = open_db(s, err, sizeof err);
  pthread_mutex_unlock(&s->db_lock);
  if (rc < 0) { go_broken(s, err); return; }
  int all = s->lost || s->created;
  raise_event(s, all ? JOBSTORE_REWRITE_ALL : JOBSTORE_REWRITE_FAILED);
  struct op *list = take_pending(s);
  size_t n = 0;
  for (struct op *op = list; op; op = op->next) n++;
  int rc2 = write_batch(s, list, 1 + all, err, sizeof err), ok = rc2 == BATCH_OK;
  if (rc2 == BATCH_ORPHANED) note_doubtful(s, list);
  if (ok) {
    s->ndoubtful = 0;
    s->broken = s->lost = 0;
    atomic_store(&s->healthy, 1);
    log_info("jobstore %s: writable again (%zu rows written); accepting jobs", s->path, n);
  }
  finish_batch(s, list, ok);
  if (ok) raise_event(s, JOBSTORE_HEALTHY);
  else go_broken(s, err);
}

/* Once a second: the file check while healthy, a recovery attempt while not. */
static void maintain(struct jobstore *s) {
  char why[256];
  if (clock_mono_ns() < s->next_check) return;
  s->next_check = clock_mono_ns() + NS_PER_S;
  if (s->broken) recover(s);
  else if (check_files(s, why, sizeof why) < 0) go_broken(s, why);
}

static void process(struct jobstore *s, struct op *list) {
  char why[256] = "";
  int rc = s->broken ? BATCH_FAILED : write_batch(s, list, 0, why, sizeof why);
  if (rc == BATCH_ORPHANED) note_doubtful(s, list);
  if (rc != BATCH_OK && !s->broken) go_broken(s, why);
  finish_batch(s, list, rc == BATCH_OK);
}

static void *writer_main(void *arg) {
  struct jobstore *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    struct timespec tick = ns_timespec(s->next_check);
    while (!s->head && !s->stopping && clock_mono_ns() < s->next_check)
      pthread_cond_timedwait(&s->work_cv, &s->mu, &tick);
    if (!s->head && s->stopping) break;
    struct op *list = s->head;
    s->head = s->tail = NULL;
    pthread_mutex_unlock(&s->mu);
    if (list) process(s, list);
    maintain(s);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- closing and stats ------------------------------------------------- */

void jobstore_close(struct jobstore *s) {
  if (!s) return;
  jobstore_flush(s);
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_cond_signal(&s->work_cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  if (s->broken)
    log_error("jobstore %s: closed while not writable (%s): changes since then are not on disk",
              s->path, s->why);
  destroy(s);
}

void jobstore_stats(struct jobstore *s, struct jobstore_stats *out) {
  pthread_mutex_lock(&s->mu);
  *out = s->stats;
  pthread_mutex_unlock(&s->mu);
}
