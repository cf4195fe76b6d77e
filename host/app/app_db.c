/*
** app_db.c — the project's databases (db.sql.sqlite and db.sql.postgres entries) for the sql module: opened at
** start into the host's set (rt service "sql", db/db.h), reopened by a reload when an entry
** changed (calls in flight and handles taken before finish on the old pool, which closes
** when the last of them is released), dropped when an entry is gone.
** Threads: the main thread (start, reload, free); the set itself is locked for Lua's gets.
*/
#include "app_impl.h"
#include "base/log.h"
#include "base/util.h"
#include "db/db.h"
#include "runtime/rt.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* Creates the directories above the file at path (as a queue's data/ is made). */
static void make_parents(const char *path) {
  char *dir = xstrdup(path);
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) break;
    *p = '/';
  }
  free(dir);
}

/* Reads e into cfg (path and pragmas point into pbuf/pr, which the caller frees) and writes
** its fingerprint. 0 / -1 (err). */
static int read_cfg(const struct reg_entry *e, const char *project_dir, struct db_config *cfg,
                    struct db_pragma **pr, char **path, struct buf *fp, char *err, size_t errlen) {
  const char *file = val_str(val_get(e->data, "file"), "");
  if (!*file) { snprintf(err, errlen, "%s: file is required", e->id); return -1; }
  struct buf b;
  buf_init(&b);
  if (strcmp(file, ":memory:") == 0 || file[0] == '/') buf_adds(&b, file);
  else buf_printf(&b, "%s/%s", project_dir, file);
  *path = xstrdup(b.data);
  buf_free(&b);
  if (strcmp(file, ":memory:") != 0) make_parents(*path);
  memset(cfg, 0, sizeof *cfg);
  cfg->path = *path;
  cfg->max_open = (int)val_int(val_path(e->data, "pool.max_open"), 4);
  cfg->busy_timeout_ns = val_duration_ns(val_get(e->data, "busy_timeout"), 5000000000LL);
  cfg->lim = (struct db_limits){
    (size_t)val_int(val_get(e->data, "max_rows"), DB_DEFAULT_MAX_ROWS),
    (size_t)val_size(val_get(e->data, "max_result_bytes"), DB_DEFAULT_MAX_BYTES),
    (size_t)val_size(val_get(e->data, "max_sql_bytes"), DB_DEFAULT_MAX_SQL),
    (size_t)val_int(val_get(e->data, "max_params"), DB_DEFAULT_MAX_PARAMS)};
  if (cfg->max_open < 1 || cfg->max_open > 64 || (int64_t)cfg->lim.max_rows < 1 ||
      (int64_t)cfg->lim.max_params < 0 || cfg->busy_timeout_ns < 0) {
    snprintf(err, errlen, "%s: pool.max_open must be 1..64, max_rows positive, max_params and busy_timeout not negative", e->id);
    return -1;
  }
  const struct val *pm = val_get(e->data, "pragmas");
  size_t n = val_len(pm);
  *pr = xcalloc(n ? n : 1, sizeof **pr);
  cfg->pragmas = *pr;
  buf_printf(fp, "%s|%d|%lld|%zu|%zu|%zu|%zu", cfg->path, cfg->max_open, (long long)cfg->busy_timeout_ns,
             cfg->lim.max_rows, cfg->lim.max_bytes, cfg->lim.max_sql, cfg->lim.max_params);
  for (size_t i = 0; i < n; i++) {
    const struct val *v = val_at(pm, i);
    char *t = val_scalar_text(v);
    if (!t) { snprintf(err, errlen, "%s: pragmas.%s must be a scalar", e->id, val_key_at(pm, i)); return -1; }
    (*pr)[i] = (struct db_pragma){val_key_at(pm, i), t};
    cfg->npragmas = i + 1;
    buf_printf(fp, "|%s=%s", (*pr)[i].name, t);
  }
  cfg->pragmas = *pr;
  return 0;
}

/* Appends key='value' (libpq quoting) to b when the field is set. */
static void dsn_add(struct buf *b, const char *key, const struct val *v) {
  char *t = v ? val_scalar_text(v) : NULL;
  if (!t || !*t) { free(t); return; }
  buf_printf(b, "%s%s='", b->len ? " " : "", key);
  for (const char *p = t; *p; p++) {
    if (*p == '\\' || *p == '\'') buf_adds(b, "\\");
    buf_printf(b, "%c", *p);
  }
  buf_adds(b, "'");
  free(t);
}

/* A db.sql.postgres entry: dsn, or Wippy's host/port/database/username/password. The
** fingerprint holds the DSN (compared only, never logged). 0 / -1 (err). */
static int read_pg_cfg(const struct reg_entry *e, struct db_config *cfg, char **dsn, struct buf *fp,
                       char *err, size_t errlen) {
  const char *d = val_str(val_get(e->data, "dsn"), "");
  struct buf b;
  buf_init(&b);
  if (*d) buf_adds(&b, d);
  else {
    static const char *const f[][2] = {{"host", "host"}, {"port", "port"}, {"dbname", "database"},
                                       {"user", "username"}, {"password", "password"}};
    for (size_t i = 0; i < countof(f); i++) dsn_add(&b, f[i][0], val_get(e->data, f[i][1]));
  }
  if (!b.len) { buf_free(&b); snprintf(err, errlen, "%s: dsn (or host/database/...) is required", e->id); return -1; }
  *dsn = xstrdup(b.data);
  buf_free(&b);
  memset(cfg, 0, sizeof *cfg);
  cfg->path = *dsn;
  cfg->max_open = (int)val_int(val_path(e->data, "pool.max_open"), 4);
  cfg->lim = (struct db_limits){
    (size_t)val_int(val_get(e->data, "max_rows"), DB_DEFAULT_MAX_ROWS),
    (size_t)val_size(val_get(e->data, "max_result_bytes"), DB_DEFAULT_MAX_BYTES),
    (size_t)val_size(val_get(e->data, "max_sql_bytes"), DB_DEFAULT_MAX_SQL),
    (size_t)val_int(val_get(e->data, "max_params"), 65535)};
  if (cfg->max_open < 1 || cfg->max_open > 64 || (int64_t)cfg->lim.max_rows < 1 ||
      (int64_t)cfg->lim.max_params < 0 || cfg->lim.max_params > 65535) {
    snprintf(err, errlen, "%s: pool.max_open must be 1..64, max_rows positive, max_params 0..65535", e->id);
    return -1;
  }
  buf_printf(fp, "pg|%s|%d|%zu|%zu|%zu|%zu", cfg->path, cfg->max_open, cfg->lim.max_rows,
             cfg->lim.max_bytes, cfg->lim.max_sql, cfg->lim.max_params);
  return 0;
}

static int is_db_kind(const struct reg_entry *e) {
  return is_kind(e, "db.sql.sqlite") || is_kind(e, "db.sql.postgres");
}

/* Opens (or keeps, when its settings did not change) every db entry of gen. 0 / -1 (logged). */
static int open_all(struct app *a, struct registry *gen) {
  int rc = 0;
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (!is_db_kind(e)) continue;
    int pg = is_kind(e, "db.sql.postgres");
    struct db_config cfg = {0};
    struct db_pragma *pr = NULL;
    char *path = NULL, err[512];
    struct buf fp;
    buf_init(&fp);
    if ((pg ? read_pg_cfg(e, &cfg, &path, &fp, err, sizeof err)
            : read_cfg(e, a->rt->project_dir, &cfg, &pr, &path, &fp, err, sizeof err)) == 0) {
      if (!dbset_same(a->dbs, e->id, fp.data)) {
        struct db *d = db_open(pg ? &db_pg_driver : &db_sqlite_driver, &cfg, err, sizeof err);
        if (d) {
          dbset_put(a->dbs, e->id, d, fp.data);
          log_debug("sql: %s open (%s)", e->id, pg ? "postgres" : cfg.path);   /* never the DSN */
        } else {
          log_error("%s: %s", e->id, err);
          rc = -1;
        }
      }
    } else {
      log_error("%s", err);
      rc = -1;
    }
    for (size_t k = 0; pr && k < cfg.npragmas; k++) free((char *)pr[k].value);
    free(pr);
    free(path);
    buf_free(&fp);
  }
  return rc;
}

int app_db_start(struct app *a) {
  a->dbs = dbset_new();
  rt_add_service(a->rt, "sql", a->dbs);
  return open_all(a, a->gen);
}

void app_db_reload(struct app *a, struct registry *gen) {
  if (!a->dbs) return;
  open_all(a, gen);                              /* a failed reopen keeps the old pool */
  for (size_t i = dbset_count(a->dbs); i-- > 0;) {
    const char *id = dbset_id_at(a->dbs, i);
    const struct reg_entry *e = registry_get(gen, id);
    if (!e || !is_db_kind(e)) {
      log_info("reload: %s is gone from the registry: its database closes once released", id);
      dbset_remove(a->dbs, id);
    }
  }
}

void app_db_free(struct app *a) {
  dbset_free(a->dbs);
  a->dbs = NULL;
}
