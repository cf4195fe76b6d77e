/*
** reg_interp.c — interpolation in entry data, done by the loader before validation:
**   file://rel/path   → text of the file, relative to the registry file's directory;
**   file:///abs/path  → text of the file, relative to the source directory root;
**   ${env:NAME} and ${env:NAME|default} inside strings → the variable's value.
** A file path that leaves the source directory (lexically, or through a symlink) is refused.
** Inlined text keeps its origin (path relative to the project) for later error messages and
** is never scanned for placeholders. After validation, an env.storage.file's .env file
** (file_path, relative to the project, not confined to the source directory) becomes its
** data.values. Runs on the loading thread; the tree is still private.
*/
#include "reg_internal.h"
#include "base/util.h"
#include "envfile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_PREFIX "file://"
#define ENV_OPEN "${env:"

/* ---- file:// ---- */

struct inl {
  const struct reg_src *src;
  const char *rel_dir;
  struct reg_pool *pool;
  size_t *budget;
  struct diag *d;
  int rc;
};

/* Appends the components of `path` to `out` (a '/'-joined relative path), resolving "." and
** "..". Returns -1 when ".." would climb above the root. */
static int push_parts(struct buf *out, const char *path) {
  while (*path) {
    size_t n = strcspn(path, "/");
    if (n == 2 && strncmp(path, "..", 2) == 0) {
      if (out->len == 0) return -1;
      char *slash = strrchr(out->data, '/');
      out->len = slash ? (size_t)(slash - out->data) : 0;
      out->data[out->len] = '\0';
    } else if (n > 0 && !(n == 1 && path[0] == '.')) {
      if (out->len) buf_addc(out, '/');
      buf_add(out, path, n);
    }
    path += n + (path[n] == '/');
  }
  return 0;
}

/* The lexically normalised path of `ref` relative to srcdir, or NULL if it escapes. */
static char *normalise(const char *rel_dir, const char *ref) {
  struct buf b;
  buf_init(&b);
  buf_reserve(&b, strlen(rel_dir) + strlen(ref) + 2);
  if (ref[0] != '/' && push_parts(&b, rel_dir) < 0) { buf_free(&b); return NULL; }
  if (push_parts(&b, ref) < 0) { buf_free(&b); return NULL; }
  return buf_steal(&b);
}

static char *join(const char *a, const char *b) {
  struct buf out;
  buf_init(&out);
  buf_printf(&out, "%s%s%s", a, *a && *b ? "/" : "", b);
  return buf_steal(&out);
}

/* True when the real path of `full` lies inside the real source directory. */
static int inside(const char *real_root, const char *full) {
  char real[PATH_MAX];
  if (!realpath(full, real)) return -1;
  size_t n = strlen(real_root);
  return strncmp(real, real_root, n) == 0 && real[n] == '/';
}

static void inline_one(struct inl *c, struct val *v) {
  char *rel = normalise(c->rel_dir, v->u.str.s + strlen(FILE_PREFIX));
  if (!rel || !*rel) {
    diag_add(c->d, 1, v->file, v->line, "%s escapes the source directory", v->u.str.s);
    c->rc = -1;
    free(rel);
    return;
  }
  char *full = join(c->src->dir, rel);
  size_t len = 0;
  char *text = NULL, err[256];
  int in = inside(c->src->real, full);
  if (in == 0) diag_add(c->d, 1, v->file, v->line, "%s escapes the source directory", v->u.str.s);
  else if (in < 0) diag_add(c->d, 1, v->file, v->line, "cannot read %s: %s", v->u.str.s, strerror(errno));
  else if (!(text = reg_file_read(full, &len, err, sizeof err)))
    diag_add(c->d, 1, v->file, v->line, "%s: %s", v->u.str.s, err);
  else if (len > *c->budget) {
    diag_add(c->d, 1, v->file, v->line, "%s: refused: over the inline budget (%u MiB of file:// text "
             "per load)", v->u.str.s, REG_MAX_INLINE_BYTES >> 20);
    free(text);
    text = NULL;
  }
  if (text) *c->budget -= len;
  if (text) {
    free(v->u.str.s);
    v->u.str.s = text;
    v->u.str.len = len;
    v->u.str.origin = reg_pool_add(c->pool, join(c->src->shown, rel));
  } else {
    c->rc = -1;
  }
  free(full);
  free(rel);
}

static void inline_walk(struct inl *c, struct val *v) {
  if (v->type == V_STR && !v->u.str.origin && strncmp(v->u.str.s, FILE_PREFIX, strlen(FILE_PREFIX)) == 0)
    inline_one(c, v);
  for (size_t i = 0; i < val_len(v); i++) inline_walk(c, v->u.agg.items[i]);
}

int reg_inline_files(struct val *v, const struct reg_src *src, const char *rel_dir,
                     struct reg_pool *pool, size_t *budget, struct diag *d) {
  struct inl c = {src, rel_dir, pool, budget, d, 0};
  if (v) inline_walk(&c, v);
  return c.rc;
}

/* ---- ${env:NAME|default} ---- */

struct env {
  reg_env_fn lookup;
  void *ud;
  struct diag *d;
  int rc;
};

/* Expands one placeholder starting at p (just after "${env:"); returns the position after
** its closing brace, or NULL after reporting a problem. */
static const char *expand(struct env *c, const struct val *v, const char *p, struct buf *out) {
  const char *end = strchr(p, '}');
  if (!end) {
    diag_add(c->d, 1, v->file, v->line, "unterminated ${env:...} placeholder in \"%s\"", v->u.str.s);
    return NULL;
  }
  const char *bar = memchr(p, '|', (size_t)(end - p));
  char *name = xstrndup(p, (size_t)((bar ? bar : end) - p));
  char *value = *name ? c->lookup(c->ud, name) : NULL;
  if (value) buf_adds(out, value);
  else if (bar) buf_add(out, bar + 1, (size_t)(end - bar - 1));
  else if (!*name) diag_add(c->d, 1, v->file, v->line, "empty variable name in ${env:}");
  else diag_add(c->d, 1, v->file, v->line, "environment variable %s is not set and has no default", name);
  int ok = value || bar;
  free(value);
  free(name);
  return ok ? end + 1 : NULL;
}

static void subst_one(struct env *c, struct val *v) {
  struct buf out;
  buf_init(&out);
  const char *p = v->u.str.s, *q;
  while (p && (q = strstr(p, ENV_OPEN))) {
    buf_add(&out, p, (size_t)(q - p));
    p = expand(c, v, q + strlen(ENV_OPEN), &out);
  }
  if (!p) {
    c->rc = -1;
    buf_free(&out);
    return;
  }
  buf_adds(&out, p);
  free(v->u.str.s);
  v->u.str.len = out.len;
  v->u.str.s = buf_steal(&out);
}

static void subst_walk(struct env *c, struct val *v) {
  if (v->type == V_STR && !v->u.str.origin && strstr(v->u.str.s, ENV_OPEN)) subst_one(c, v);
  for (size_t i = 0; i < val_len(v); i++) subst_walk(c, v->u.agg.items[i]);
}

int reg_subst_env(struct val *v, reg_env_fn lookup, void *ud, struct diag *d) {
  struct env c = {lookup, ud, d, 0};
  if (v) subst_walk(&c, v);
  return c.rc;
}

/* ---- env.storage.file ---- */

struct envfile_ctx {
  struct val *values;
  struct reg_budget b;
  const char *shown;
};

static int put_env(void *ud, const char *key, const char *value, int line) {
  struct envfile_ctx *c = ud;
  size_t n = strlen(value);
  if (reg_budget_take(&c->b, 2, strlen(key) + n) != 0) return -1;
  val_map_set(c->values, key, val_new_str(value, n, c->shown, line));
  return 0;
}

int reg_load_env_file(struct val *data, const struct reg_opts *opts, struct reg_pool *pool,
                      struct diag *d) {
  const char *rel = val_str(val_get(data, "file_path"), NULL);
  if (!rel) return -1;   /* the kind check said so already */
  const char *pd = opts && opts->project_dir ? opts->project_dir : ".";
  char *full = rel[0] == '/' ? xstrdup(rel) : join(pd, rel);
  const char *shown = reg_pool_add(pool, xstrdup(rel));
  char err[256];
  size_t len;
  char *text = reg_file_read(full, &len, err, sizeof err);
  free(full);
  if (!text) {
    diag_add(d, 1, shown, 0, "env.storage.file: %s", err);
    return -1;
  }
  struct envfile_ctx c = {val_new(V_MAP, shown, 1), {0}, shown};
  reg_budget_init(&c.b, opts);
  int line;
  int rc = envfile_parse(text, len, put_env, &c, &line, err, sizeof err);
  free(text);
  if (rc != 0) {
    if (strcmp(err, "stopped") == 0) snprintf(err, sizeof err, "over the registry file budget (values or bytes)");
    diag_add(d, 1, shown, line, "%s", err);
    val_free(c.values);
    return -1;
  }
  val_map_set(data, "values", c.values);
  return 0;
}
