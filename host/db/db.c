/*
** db.c — requests, database references and the host's set of databases (db.h).
** Threads: a request belongs to whoever holds it (db.h's hand-off); a db's refcount is
** atomic; the set is guarded by its own lock.
*/
#include "db.h"
#include "base/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct db *db_open(const struct db_driver *drv, const struct db_config *cfg, char *err, size_t errlen) {
  void *pool = drv->open(cfg, err, errlen);
  if (!pool) return NULL;
  struct db *d = xcalloc(1, sizeof *d);
  d->drv = drv;
  d->pool = pool;
  d->lim = cfg->lim;
  atomic_store(&d->refs, 1);
  return d;
}

void db_ref(struct db *d) { atomic_fetch_add(&d->refs, 1); }

static _Thread_local int on_pool_thread;
void db_mark_pool_thread(void) { on_pool_thread = 1; }

static void close_db(struct db *d) {
  d->drv->close(d->pool);
  free(d);
}

static void *closer_main(void *arg) { close_db(arg); return NULL; }

/* The last reference dropped on one of the pool's own threads (a request freed in its done
** callback) cannot join that thread: a detached thread closes the pool instead. */
void db_unref(struct db *d) {
  if (!d || atomic_fetch_sub(&d->refs, 1) != 1) return;
  pthread_t th;
  if (on_pool_thread && pthread_create(&th, NULL, closer_main, d) == 0) { pthread_detach(th); return; }
  close_db(d);
}

struct db_req *db_req_new(int op, const char *sql, size_t len) {
  struct db_req *r = xcalloc(1, sizeof *r);
  r->op = op;
  r->sql = xmalloc(len + 1);
  memcpy(r->sql, sql, len);
  r->sql[len] = '\0';
  r->sql_len = len;
  return r;
}

static void free_vals(struct db_val *v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i].s);
  free(v);
}

void db_req_clear_result(struct db_req *r) {
  for (int i = 0; i < r->ncols; i++) free(r->cols[i]);
  free(r->cols);
  free_vals(r->cells, r->nrows * (size_t)r->ncols);
  r->cols = NULL;
  r->cells = NULL;
  r->ncols = 0;
  r->nrows = r->capcells = 0;
}

void db_req_free(struct db_req *r) {
  if (!r) return;
  db_req_clear_result(r);
  free_vals(r->params, r->nparams);
  if (r->names)
    for (size_t i = 0; i < r->nparams; i++) free(r->names[i]);
  free(r->names);
  free(r->sql);
  struct db *d = r->db;
  free(r);
  db_unref(d);
}

void db_req_fail(struct db_req *r, int fail, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
  va_end(ap);
  r->fail = fail;
}

void db_submit(struct db *d, struct db_req *r) {
  r->db = d;
  db_ref(d);                          /* the request's: dropped by db_req_free */
  r->id = atomic_fetch_add(&d->next_id, 1) + 1;
  if (r->sql_len > d->lim.max_sql) {
    db_req_fail(r, DBF_INVALID, "sql: the statement is %zu bytes, over the budget of %zu (max_sql)",
                r->sql_len, d->lim.max_sql);
  } else if (r->nparams > d->lim.max_params) {
    db_req_fail(r, DBF_INVALID, "sql: %zu parameters, over the budget of %zu (max_params)",
                r->nparams, d->lim.max_params);
  } else {
    d->drv->submit(d->pool, r);
    return;
  }
  r->done(r);
}

void db_cancel(struct db *d, uint64_t id) { d->drv->cancel(d->pool, id); }

void db_stats(struct db *d, struct db_stats *st) {
  memset(st, 0, sizeof *st);
  d->drv->stats(d->pool, st);
}

/* ---- the set ---- */

struct dbent { char *id; char *fp; struct db *d; };
struct dbset {
  pthread_mutex_t lock;
  struct dbent *v;
  size_t n, cap;
};

struct dbset *dbset_new(void) {
  struct dbset *s = xcalloc(1, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  return s;
}

void dbset_free(struct dbset *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n; i++) {
    db_unref(s->v[i].d);
    free(s->v[i].id);
    free(s->v[i].fp);
  }
  free(s->v);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static struct dbent *find(struct dbset *s, const char *id) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i].id, id) == 0) return &s->v[i];
  return NULL;
}

void dbset_put(struct dbset *s, const char *id, struct db *d, const char *fingerprint) {
  struct db *old = NULL;
  pthread_mutex_lock(&s->lock);
  struct dbent *e = find(s, id);
  if (!e) {
    if (s->n == s->cap) s->v = xrealloc(s->v, (s->cap = s->cap ? s->cap * 2 : 4) * sizeof *s->v);
    e = &s->v[s->n++];
    e->id = xstrdup(id);
    e->fp = NULL;
    e->d = NULL;
  }
  old = e->d;
  e->d = d;
  free(e->fp);
  e->fp = xstrdup(fingerprint);
  pthread_mutex_unlock(&s->lock);
  db_unref(old);                      /* handles and requests keep it until they end */
}

int dbset_same(struct dbset *s, const char *id, const char *fingerprint) {
  pthread_mutex_lock(&s->lock);
  struct dbent *e = find(s, id);
  int same = e && strcmp(e->fp, fingerprint) == 0;
  pthread_mutex_unlock(&s->lock);
  return same;
}

void dbset_remove(struct dbset *s, const char *id) {
  pthread_mutex_lock(&s->lock);
  struct dbent *e = find(s, id);
  struct db *old = NULL;
  if (e) {
    old = e->d;
    free(e->id);
    free(e->fp);
    *e = s->v[--s->n];
  }
  pthread_mutex_unlock(&s->lock);
  db_unref(old);
}

struct db *dbset_get(struct dbset *s, const char *id) {
  pthread_mutex_lock(&s->lock);
  struct dbent *e = find(s, id);
  struct db *d = e ? e->d : NULL;
  if (d) db_ref(d);
  pthread_mutex_unlock(&s->lock);
  return d;
}

size_t dbset_count(struct dbset *s) {
  pthread_mutex_lock(&s->lock);
  size_t n = s->n;
  pthread_mutex_unlock(&s->lock);
  return n;
}

const char *dbset_id_at(struct dbset *s, size_t i) { return i < s->n ? s->v[i].id : NULL; }
