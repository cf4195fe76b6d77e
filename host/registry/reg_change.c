/*
** reg_change.c — a generation built from another plus a change set (registry_apply in
** registry.h): the base's entries are copied in load order, then each op creates (appended),
** updates (replaced in place, same kind) or deletes (removed) one entry; created and updated
** entries get the load's treatment — file:// inlined (relative to the source directory's
** root), kinds checked with defaults filled and bare references qualified — and every
** reference of the whole generation must resolve. ${env:} is not substituted in op data: it
** comes from Lua, which reads the environment itself, and text copied from an entry (a
** source already inlined) must stay as it is.
** Threads: runs on the caller's thread (the app's main thread); the base is only read. The
** new generation shares the base's string pool, to which this build adds (reg_internal.h).
*/
#include "reg_internal.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
  [REG_OP_CREATE] = "create", [REG_OP_UPDATE] = "update", [REG_OP_DELETE] = "delete",
};

const char *reg_op_name(enum reg_op_kind k) { return op_names[k]; }

void reg_op_free(struct reg_op *o) {
  free(o->id);
  free(o->kind);
  val_free(o->data);
  val_free(o->meta);
  free(o->file);
  reg_pool_unref(o->pool);
  memset(o, 0, sizeof *o);
}

void reg_op_copy(struct reg_op *dst, const struct reg_op *src) {
  *dst = (struct reg_op){src->op, xstrdup(src->id), src->kind ? xstrdup(src->kind) : NULL,
                         src->data ? val_copy(src->data) : NULL,
                         src->meta ? val_copy(src->meta) : NULL,
                         src->file ? xstrdup(src->file) : NULL, src->line,
                         src->pool ? reg_pool_ref(src->pool) : NULL};
}

void registry_change_limits(struct val_limits *lim) {
  *lim = (struct val_limits){REG_MAX_NODES, REG_MAX_BYTES, REG_MAX_DEPTH};
}

int reg_id_check(const char *id, char *err, size_t errlen) {
  const char *colon = id ? strchr(id, ':') : NULL;
  if (!colon || colon == id || !colon[1] || strchr(colon + 1, ':'))
    snprintf(err, errlen, "entry id '%s' must be namespace:name (one ':', both parts non-empty)", id ? id : "");
  else
    return 0;
  return -1;
}

/* A copy of a base entry (its strings live in the shared pool). */
static void copy_base(struct registry *r, const struct ent *b, struct diag *d) {
  struct ent e = {.pub = b->pub};
  e.id = xstrdup(b->id);
  e.ns = xstrdup(b->ns);
  e.name = xstrdup(b->name);
  e.kind = xstrdup(b->kind);
  e.data = val_copy(b->data);
  e.meta = val_copy(b->meta);
  reg_gen_put(r, &e, d);
}

struct build {
  struct registry *r;
  struct diag *d;
  struct reg_src src;
  size_t inline_left;
  const char *file;   /* the op being applied: where it was made (in the pool) */
  int line;
};

/* Why op o cannot apply to the entries so far, or NULL. */
static const char *conflict(const struct build *b, const struct reg_op *o, long at) {
  if (o->op == REG_OP_CREATE && at >= 0) return "an entry with this id already exists";
  if (o->op != REG_OP_CREATE && at < 0) return "no entry has this id";
  if (o->op == REG_OP_UPDATE && strcmp(b->r->ents[at].kind, o->kind) != 0)
    return "an update cannot change the entry's kind";
  return NULL;
}

/* Points the file and origin strings of v (from another generation's pool) at copies in
** pool, so the entry does not depend on the pool it came from. */
static void reintern(struct val *v, struct reg_pool *pool) {
  if (v->file) v->file = reg_pool_add(pool, xstrdup(v->file));
  if (v->type == V_STR && v->u.str.origin) v->u.str.origin = reg_pool_add(pool, xstrdup(v->u.str.origin));
  for (size_t i = 0; i < val_len(v); i++) reintern(v->u.agg.items[i], pool);
}

/* The entry an op creates or updates: its own data and meta (no file meta), positions of
** values without one (made from Lua) at the op. 0, or -1 after reporting. */
static int make_ent(struct build *b, const struct reg_op *o, struct ent *e) {
  if (!o->kind || !*o->kind) { diag_add(b->d, 1, b->file, b->line, "%s %s: the entry has no kind", reg_op_name(o->op), o->id); return -1; }
  if (o->data && o->data->type != V_MAP) { diag_add(b->d, 1, b->file, b->line, "%s %s: data must be a map", reg_op_name(o->op), o->id); return -1; }
  if (o->meta && o->meta->type != V_MAP) { diag_add(b->d, 1, b->file, b->line, "%s %s: meta must be a map", reg_op_name(o->op), o->id); return -1; }
  const char *colon = strchr(o->id, ':');
  *e = (struct ent){.touched = 1};
  e->id = xstrdup(o->id);
  e->ns = xstrndup(o->id, (size_t)(colon - o->id));
  e->name = xstrdup(colon + 1);
  e->kind = xstrdup(o->kind);
  e->data = o->data ? val_copy(o->data) : val_new(V_MAP, b->file, b->line);
  e->meta = o->meta ? val_copy(o->meta) : val_new(V_MAP, b->file, b->line);
  e->pub.file = b->file;
  e->pub.line = b->line;
  if (o->pool && o->pool != b->r->pool) {
    reintern(e->data, b->r->pool);
    reintern(e->meta, b->r->pool);
  }
  return reg_inline_files(e->data, &b->src, "", b->r->pool, &b->inline_left, b->d) == 0 ? 0 : 1;
}

/* Applies one op. strict: a conflict is an error; else it is skipped with a warning and
** *dropped set. Returns -1 when the op failed (an error was reported). */
static int apply_op(struct build *b, const struct reg_op *o, int strict, int *dropped) {
  b->file = reg_pool_add(b->r->pool, xstrdup(o->file && *o->file ? o->file : "<runtime>"));
  b->line = o->line;
  char err[256];
  if (reg_id_check(o->id, err, sizeof err) != 0) { diag_add(b->d, 1, b->file, b->line, "%s", err); return -1; }
  long at = reg_gen_find(b->r, o->id);
  const char *why = conflict(b, o, at);
  if (why) {
    diag_add(b->d, strict, b->file, b->line, "%s %s: %s%s", reg_op_name(o->op), o->id, why,
             strict ? "" : "; the runtime change is dropped (the files changed it)");
    if (dropped) *dropped = 1;
    return strict ? -1 : 0;
  }
  if (o->op == REG_OP_DELETE) { reg_gen_remove(b->r, (size_t)at); return 0; }
  struct ent e;
  int rc = make_ent(b, o, &e);
  if (rc < 0) return -1;
  if (o->op == REG_OP_CREATE) {
    reg_gen_put(b->r, &e, b->d);
  } else {
    reg_ent_free(&b->r->ents[at]);
    b->r->ents[at] = e;
  }
  return rc == 0 ? 0 : -1;
}

int registry_apply(struct registry *base, const char *srcdir, const struct reg_opts *opts,
                   const struct reg_op *ops, size_t n, int strict, int *dropped,
                   struct registry **out, struct diag *d) {
  int errors = d->errors;
  *out = NULL;
  registry_kinds();
  struct build b = {xcalloc(1, sizeof *b.r), d, {0}, REG_MAX_INLINE_BYTES, NULL, 0};
  b.r->pool = reg_pool_ref(base->pool);
  for (size_t i = 0; i < registry_count(base); i++) copy_base(b.r, &base->ents[i], d);
  if (n > REG_MAX_OPS) diag_add(d, 1, NULL, 0, "a change set holds at most %d operations, this one %zu", REG_MAX_OPS, n);
  else if (reg_gen_src(b.r, srcdir, opts, &b.src, d) == 0)
    for (size_t i = 0; i < n; i++) apply_op(&b, &ops[i], strict, dropped ? &dropped[i] : NULL);
  if (n <= REG_MAX_OPS) reg_gen_check(b.r, opts, d);
  if (d->errors > errors) {
    reg_gen_free(b.r);
    return -1;
  }
  reg_gen_publish(b.r);
  *out = b.r;
  return 0;
}

/* ---- deltas ---- */

static void push_op(struct reg_op **ops, size_t *n, enum reg_op_kind k, const struct reg_entry *e,
                    struct reg_pool *pool) {
  *ops = xrealloc(*ops, (*n + 1) * sizeof **ops);
  struct reg_op *o = &(*ops)[(*n)++];
  *o = (struct reg_op){k, xstrdup(e->id)};
  if (k == REG_OP_DELETE) return;
  o->pool = reg_pool_ref(pool);           /* the vals point into it */
  o->file = e->file ? xstrdup(e->file) : NULL;   /* where the entry was defined */
  o->line = e->line;
  o->kind = xstrdup(e->kind);
  o->data = val_copy(e->data);
  o->meta = val_copy(e->meta);
}

size_t registry_delta(const struct registry *from, const struct registry *to, struct reg_op **ops) {
  size_t n = 0;
  *ops = NULL;
  for (size_t i = 0; i < registry_count(from); i++) {
    const struct reg_entry *a = registry_at(from, i), *b = registry_get(to, a->id);
    if (!b || strcmp(a->kind, b->kind) != 0) push_op(ops, &n, REG_OP_DELETE, a, NULL);
    else if (!val_equal(a->data, b->data) || !val_equal(a->meta, b->meta)) push_op(ops, &n, REG_OP_UPDATE, b, to->pool);
  }
  for (size_t i = 0; i < registry_count(to); i++) {
    const struct reg_entry *b = registry_at(to, i), *a = registry_get(from, b->id);
    if (!a || strcmp(a->kind, b->kind) != 0) push_op(ops, &n, REG_OP_CREATE, b, to->pool);
  }
  return n;
}
