/*
** db.h — the driver-neutral core of SQL databases (issue 14, wippy-compat.md §3.13): a
** database is a `struct db` (a refcounted pool behind a driver's ops table); work goes to it
** as requests (`struct db_req`: one statement or transaction step, its parameters, and room
** for the result set) that the driver runs on its own threads and hands back through the
** request's `done` callback. The Lua side (lua/lmod_sql.c) builds requests and converts
** results; a driver (db_sqlite.c; later Postgres) knows nothing of Lua.
**
** Threads and ownership:
**  - db_open / db_unref run on any thread that is not one of the pool's own (the last unref
**    stops the pool: queued requests still run, then its threads are joined).
**  - A request is built by its owner, handed over by db_submit, and handed back by exactly
**    one call of `done`, on a pool thread, once the driver no longer touches it. `claim`
**    is the owner's (the same WAITING → POSTED / GONE protocol as http/httpc.h).
**  - db_cancel(d, id) may be called from any thread at any time: it never touches a request
**    the driver has handed back (an id no longer held is ignored). A queued request is
**    failed CANCELED without running, a running statement is interrupted. Transaction ends
**    (commit, rollback) are never interrupted.
**  - A transaction (`struct db_tx`) pins one connection from the BEGIN request's completion
**    until a COMMIT or ROLLBACK request on it completes, whatever the outcome (a failed
**    commit is rolled back); the driver frees it then. Requests on one tx run in the order
**    submitted.
*/
#ifndef TASKHOST_DB_H
#define TASKHOST_DB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum db_vtype { DBV_NULL, DBV_INT, DBV_FLOAT, DBV_TEXT, DBV_BLOB, DBV_BOOL /* i: 0/1 (postgres results) */ };

/* One value: a parameter or a result cell. s is malloc'd (text has a NUL after len bytes). */
struct db_val { int type; int64_t i; double f; char *s; size_t len; };

/* Why a request failed (req->fail); the Lua side maps each to an error kind. */
enum db_fail {
  DBF_NONE, DBF_INVALID, DBF_CONFLICT, DBF_UNAVAILABLE, DBF_NOT_FOUND, DBF_TIMEOUT,
  DBF_CANCELED, DBF_INTERNAL, DBF_TOO_LARGE,
};

enum db_op {
  DBO_QUERY,       /* one statement; rows come back */
  DBO_EXEC,        /* statements (params only with one); last_insert_id, rows_affected */
  DBO_PREPARE,     /* compile one statement and report errors; nothing runs */
  DBO_BEGIN,       /* opens a transaction: req->tx is set on success */
  DBO_COMMIT, DBO_ROLLBACK,
  DBO_SAVEPOINT, DBO_ROLLBACK_TO, DBO_RELEASE,   /* sql holds the savepoint's name */
};

enum db_isolation { DBI_DEFAULT, DBI_READ_UNCOMMITTED, DBI_READ_COMMITTED, DBI_WRITE_COMMITTED,
                    DBI_REPEATABLE_READ, DBI_SNAPSHOT, DBI_SERIALIZABLE, DBI_LINEARIZABLE };

/* Budgets of one database (its entry's fields). */
struct db_limits {
  size_t max_rows;     /* rows of one result */
  size_t max_bytes;    /* bytes of one result (text and blob bytes + 16 per cell) */
  size_t max_sql;      /* bytes of SQL text */
  size_t max_params;   /* parameters of one request */
};
#define DB_DEFAULT_MAX_ROWS 100000
#define DB_DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define DB_DEFAULT_MAX_SQL ((size_t)1 << 20)
#define DB_DEFAULT_MAX_PARAMS 32766      /* SQLite's SQLITE_MAX_VARIABLE_NUMBER default */

struct db_pragma { const char *name, *value; };

struct db_config {
  const char *path;          /* driver's target: a file path (or ":memory:") */
  int max_open;              /* connections (threads) */
  int64_t busy_timeout_ns;
  const struct db_pragma *pragmas; size_t npragmas;
  struct db_limits lim;
};

struct db_tx;
struct db;

struct db_req {
  /* ---- the request: set by the owner, freed by db_req_free ---- */
  int op;                      /* enum db_op */
  char *sql; size_t sql_len;
  struct db_val *params; size_t nparams;
  char **names;                /* NULL: positional; else each param's name (":id", "@id", "$id" or bare) */
  struct db_tx *tx;            /* run on this transaction's connection (NULL: any); BEGIN: out */
  int isolation, read_only;    /* BEGIN */
  /* ---- the owner's ---- */
  void (*done)(struct db_req *r);   /* a pool thread; takes the request back */
  void *ud;
  uint64_t pid, session;
  _Atomic int claim;
  /* ---- the result: written by the pool thread, read by the owner after done ---- */
  int ncols; char **cols;
  struct db_val *cells; size_t nrows, capcells;  /* nrows * ncols cells, row-major */
  int64_t last_insert_id, rows_affected;
  int fail;                    /* enum db_fail */
  char errmsg[512];
  /* ---- the driver's ---- */
  struct db *db;               /* set by db_submit, which takes a reference db_req_free drops */
  uint64_t id;                 /* set by db_submit: what db_cancel names */
  _Atomic int abandoned;       /* db_cancel: do not start / stop */
  void *running_on;            /* the driver's connection while it runs (under its lock) */
  struct db_req *next;
};

struct db_stats {
  int max_open, open, in_use, idle;   /* connections: configured, open, running or pinned, free */
  long queued;                        /* requests waiting for a connection */
  long long served;                   /* requests finished */
};

/* A driver: opens pools of connections and runs requests on them. */
struct db_driver {
  const char *name;            /* "sqlite" */
  void *(*open)(const struct db_config *cfg, char *err, size_t errlen);
  void (*submit)(void *pool, struct db_req *r);
  void (*cancel)(void *pool, uint64_t id);   /* the request with that id, if still held */
  void (*stats)(void *pool, struct db_stats *st);
  void (*close)(void *pool);   /* runs what is queued, joins the threads, frees */
};

extern const struct db_driver db_sqlite_driver;
extern const struct db_driver db_pg_driver;   /* db_pg.c: PostgreSQL on libpq */

/* The linked library's version, as it reports it at run time, into buf ("3.40.1", "15.5");
** `taskhost version` prints them. Return 0. Any thread. */
int db_sqlite_version(char *buf, size_t n);   /* sqlite3_libversion() (db_sqlite.c) */
int db_pg_version(char *buf, size_t n);       /* PQlibVersion() (db_pg.c) */

struct db {
  const struct db_driver *drv;
  void *pool;
  struct db_limits lim;
  _Atomic int refs;
  _Atomic uint64_t next_id;
};

/* Opens a database with one reference. NULL (err) when the driver cannot open it. */
struct db *db_open(const struct db_driver *drv, const struct db_config *cfg, char *err, size_t errlen);
void db_ref(struct db *d);
void db_unref(struct db *d);

struct db_req *db_req_new(int op, const char *sql, size_t len);
void db_req_free(struct db_req *r);
/* Frees the result (rows, columns) of r, keeping the request. */
void db_req_clear_result(struct db_req *r);
/* Sets r failed with the message. */
void db_req_fail(struct db_req *r, int fail, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Hands r to the driver (done will be called, also for a request refused at once: SQL or
** params over the budget). Sets r->db. */
void db_submit(struct db *d, struct db_req *r);
void db_cancel(struct db *d, uint64_t id);
/* Drivers call it on each of their threads (db_unref there defers the close). */
void db_mark_pool_thread(void);

/* For drivers: a FIFO of requests through r->next (head *h, tail *t; the caller's lock). */
static inline void db_reqq_push(struct db_req **h, struct db_req **t, struct db_req *r) {
  r->next = NULL;
  if (*t) (*t)->next = r;
  else *h = r;
  *t = r;
}
static inline struct db_req *db_reqq_pop(struct db_req **h, struct db_req **t) {
  struct db_req *r = *h;
  if (!r) return NULL;
  *h = r->next;
  if (!*h) *t = NULL;
  r->next = NULL;
  return r;
}
/* A request a driver may drop unrun (or interrupt) when its caller went away: not the
** transaction boundaries, which keep a pinned connection's state right. */
static inline int db_req_interruptible(const struct db_req *r) {
  return r->op != DBO_BEGIN && r->op != DBO_COMMIT && r->op != DBO_ROLLBACK;
}
void db_stats(struct db *d, struct db_stats *st);

/* ---- the databases of a host, by entry id (the app fills it; Lua looks ids up) ---------
** Locked; any thread. put replaces (the old database loses the set's reference: calls in
** flight on it finish there); get returns a new reference or NULL. */
struct dbset;
struct dbset *dbset_new(void);
void dbset_free(struct dbset *s);    /* drops every database's reference */
void dbset_put(struct dbset *s, const char *id, struct db *d, const char *fingerprint);
/* The fingerprint the entry was opened with (to tell whether a reload changed it), or NULL. */
int dbset_same(struct dbset *s, const char *id, const char *fingerprint);
void dbset_remove(struct dbset *s, const char *id);
struct db *dbset_get(struct dbset *s, const char *id);
size_t dbset_count(struct dbset *s);
const char *dbset_id_at(struct dbset *s, size_t i);   /* main thread only (the app's) */

#endif
