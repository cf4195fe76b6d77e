/*
** test_reg_change.c — registry_apply: generations built from a base plus create/update/delete
** ops, checked like a load (defaults, qualification, references, file:// inlining), refused
** as a whole with diagnostics, and the lenient replay that drops conflicting ops.
*/
#include "t.h"
#include "registry/registry.h"
#include "base/util.h"
#include "value/val.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char proj[64], src[96];

static void put(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", src, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static struct registry *base(void) {
  strcpy(proj, "/tmp/th-regchange-XXXXXX");
  if (!mkdtemp(proj)) abort();
  snprintf(src, sizeof src, "%s/src", proj);
  mkdir(src, 0755);
  put("app.yaml",
      "namespace: app\n"
      "entries:\n"
      "  - {name: cfg, kind: registry.entry, meta: {type: config}, value: 1}\n"
      "  - {name: worker, kind: process.lua, source: 'return function() end'}\n"
      "  - {name: svc, kind: process.service, process: worker, host: procs}\n"
      "  - {name: procs, kind: process.host}\n");
  put("extra.lua", "return function() return 2 end\n");
  struct reg_opts o = {proj};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  if (registry_load(src, &o, &r, &d) != 0) {
    for (size_t i = 0; i < d.n; i++) printf("  | %s\n", d.items[i]);
    abort();
  }
  diag_free(&d);
  return r;
}

static void done(struct registry *r) {
  char cmd[256];
  registry_unref(r);
  snprintf(cmd, sizeof cmd, "rm -rf %s", proj);
  if (system(cmd) != 0) {}
}

/* An op whose data/meta are parsed from "k=v" pairs (strings; NULL for none). */
static struct reg_op op(enum reg_op_kind k, const char *id, const char *kind, const char *const *kv) {
  struct reg_op o = {k, xstrdup(id), kind ? xstrdup(kind) : NULL, NULL, NULL, xstrdup("src/t.lua"), 7};
  if (!kv) return o;
  o.data = val_new(V_MAP, NULL, 0);
  for (; kv[0]; kv += 2) {
    struct val **dst = strncmp(kv[0], "meta.", 5) == 0 ? &o.meta : &o.data;
    if (!*dst) *dst = val_new(V_MAP, NULL, 0);
    val_map_set(*dst, kv[0] + (dst == &o.meta ? 5 : 0), val_new_str(kv[1], strlen(kv[1]), NULL, 0));
  }
  return o;
}

static void free_ops(struct reg_op *ops, size_t n) {
  for (size_t i = 0; i < n; i++) reg_op_free(&ops[i]);
}

static const char *has(const struct diag *d, const char *needle) {
  for (size_t i = 0; i < d->n; i++)
    if (strstr(d->items[i], needle)) return d->items[i];
  return NULL;
}

static void dump(const struct diag *d) {
  for (size_t i = 0; t_cur_failed && i < d->n; i++) printf("    | %s\n", d->items[i]);
}

TEST(create_update_delete) {
  struct registry *b = base();
  static const char *const ep[] = {"source", "file://extra.lua", "method", "", "meta.type", "job", NULL};
  static const char *const cfg[] = {"value", "2", "meta.type", "config2", NULL};
  struct reg_op ops[] = {
    op(REG_OP_CREATE, "app.x:fn", "function.lua", ep),
    op(REG_OP_UPDATE, "app:cfg", "registry.entry", cfg),
    op(REG_OP_DELETE, "app:svc", NULL, NULL),
  };
  struct reg_opts o = {proj};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, ops, 3, 1, NULL, &r, &d), 0);
  dump(&d);
  CHECK(r != NULL);
  CHECK(registry_version(r) > registry_version(b));
  CHECK_INT(registry_count(r), 4);               /* 4 - svc + fn */
  CHECK(registry_get(r, "app:svc") == NULL);
  CHECK(registry_get(b, "app:svc") != NULL);     /* the base is untouched */
  const struct reg_entry *fn = registry_get(r, "app.x:fn");
  CHECK(fn != NULL);
  CHECK_STR(fn->ns, "app.x");
  CHECK_STR(fn->name, "fn");
  CHECK_STR(fn->file, "src/t.lua");
  CHECK_INT(fn->line, 7);
  CHECK_CONTAINS(val_str(val_get(fn->data, "source"), ""), "return 2");   /* inlined */
  CHECK_INT(val_int(val_path(fn->data, "pool.max_size"), -1), 100);       /* a default */
  CHECK_STR(val_str(val_get(fn->meta, "type"), ""), "job");
  CHECK_STR(registry_at(r, 3)->id, "app.x:fn");  /* appended in load order */
  CHECK_STR(val_str(val_get(registry_get(r, "app:cfg")->data, "value"), ""), "2");
  CHECK_STR(registry_at(r, 0)->id, "app:cfg");   /* updated in place */
  registry_unref(r);
  free_ops(ops, 3);
  diag_free(&d);
  done(b);
}

TEST(qualifies_references) {
  struct registry *b = base();
  static const char *const svc[] = {"process", "worker", "host", "app:procs", NULL};
  struct reg_op ops[] = {op(REG_OP_CREATE, "app:svc2", "process.service", svc)};
  struct reg_opts o = {proj};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, ops, 1, 1, NULL, &r, &d), 0);
  dump(&d);
  const struct reg_entry *e = registry_get(r, "app:svc2");
  CHECK(e != NULL);
  CHECK_STR(val_str(val_get(e->data, "process"), ""), "app:worker");
  CHECK(val_bool(val_path(e->data, "lifecycle.auto_start"), 1) == 0);
  registry_unref(r);
  free_ops(ops, 1);
  diag_free(&d);
  done(b);
}

TEST(refused_with_every_problem) {
  struct registry *b = base();
  static const char *const bad_ref[] = {"process", "nope", "host", "procs", NULL};
  static const char *const cfg[] = {"value", "2", NULL};
  struct reg_op ops[] = {
    op(REG_OP_CREATE, "app:cfg", "registry.entry", cfg),           /* exists */
    op(REG_OP_UPDATE, "app:ghost", "registry.entry", cfg),         /* missing */
    op(REG_OP_UPDATE, "app:cfg", "process.host", cfg),             /* kind change */
    op(REG_OP_CREATE, "app:s", "process.service", bad_ref),        /* dangling reference */
    op(REG_OP_CREATE, "nocolon", "registry.entry", cfg),           /* bad id */
    op(REG_OP_CREATE, "app:f", "function.lua", cfg),               /* no source */
    op(REG_OP_DELETE, "app:worker", NULL, NULL),                   /* svc still refers to it */
  };
  struct reg_opts o = {proj};
  struct registry *r = (struct registry *)1;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, ops, 7, 1, NULL, &r, &d), -1);
  CHECK(r == NULL);
  CHECK(has(&d, "src/t.lua:7: create app:cfg: an entry with this id already exists"));
  CHECK(has(&d, "update app:ghost: no entry has this id"));
  CHECK(has(&d, "cannot change the entry's kind"));
  CHECK(has(&d, "'app:nope' not found"));
  CHECK(has(&d, "must be namespace:name"));
  CHECK(has(&d, "source"));
  CHECK(has(&d, "app:svc: process 'app:worker' not found"));
  dump(&d);
  free_ops(ops, 7);
  diag_free(&d);
  done(b);
}

TEST(lenient_replay_drops_conflicts) {
  struct registry *b = base();
  static const char *const cfg[] = {"value", "3", NULL};
  struct reg_op ops[] = {
    op(REG_OP_CREATE, "app:cfg", "registry.entry", cfg),     /* the files define it now */
    op(REG_OP_DELETE, "app:gone", NULL, NULL),               /* the files removed it */
    op(REG_OP_CREATE, "app:new", "registry.entry", cfg),     /* still applies */
  };
  int dropped[3] = {0};
  struct reg_opts o = {proj};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, ops, 3, 0, dropped, &r, &d), 0);
  CHECK_INT(d.errors, 0);
  CHECK_INT(d.warnings, 2);
  CHECK_INT(dropped[0], 1);
  CHECK_INT(dropped[1], 1);
  CHECK_INT(dropped[2], 0);
  CHECK(registry_get(r, "app:new") != NULL);
  CHECK_INT(val_int(val_get(registry_get(r, "app:cfg")->data, "value"), -1), 1);   /* the file's */
  dump(&d);
  registry_unref(r);
  free_ops(ops, 3);
  diag_free(&d);
  done(b);
}

TEST(file_escape_and_budget) {
  struct registry *b = base();
  static const char *const esc[] = {"source", "file://../../etc/passwd", NULL};
  struct reg_op ops[] = {op(REG_OP_CREATE, "app:f", "function.lua", esc)};
  struct reg_opts o = {proj};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, ops, 1, 1, NULL, &r, &d), -1);
  CHECK(has(&d, "escapes the source directory"));
  diag_free(&d);
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, ops, REG_MAX_OPS + 1, 1, NULL, &r, &d), -1);  /* not read */
  CHECK(has(&d, "at most 1000 operations"));
  free_ops(ops, 1);
  diag_free(&d);
  done(b);
}

/* A generation built from another outlives it: it shares the strings its entries point at. */
TEST(outlives_its_base) {
  struct registry *b = base();
  struct reg_opts o = {proj};
  struct registry *r = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, NULL, 0, 1, NULL, &r, &d), 0);
  registry_unref(b);
  const struct reg_entry *e = registry_get(r, "app:cfg");
  CHECK_STR(e->file, "src/app.yaml");
  CHECK_STR(val_get(e->data, "value")->file, "src/app.yaml");
  diag_free(&d);
  done(r);
}

/* delta(r, b) applied to r gives back b's entries: a rollback. */
TEST(delta_rolls_back) {
  struct registry *b = base();
  static const char *const fn[] = {"source", "file://extra.lua", "method", "", NULL};
  static const char *const cfg[] = {"value", "5", NULL};
  struct reg_op ops[] = {
    op(REG_OP_CREATE, "app:fn", "function.lua", fn),
    op(REG_OP_UPDATE, "app:cfg", "registry.entry", cfg),
    op(REG_OP_DELETE, "app:svc", NULL, NULL),
  };
  struct reg_opts o = {proj};
  struct registry *r = NULL, *back = NULL;
  struct diag d;
  diag_init(&d);
  CHECK_INT(registry_apply(b, src, &o, ops, 3, 1, NULL, &r, &d), 0);
  dump(&d);
  if (!r) abort();
  struct reg_op *delta;
  size_t n = registry_delta(r, b, &delta);
  CHECK_INT(n, 3);
  CHECK_INT(delta[0].op, REG_OP_UPDATE);   /* app:cfg, in r's order */
  CHECK_INT(delta[1].op, REG_OP_DELETE);   /* app:fn */
  CHECK_INT(delta[2].op, REG_OP_CREATE);   /* app:svc */
  CHECK_INT(registry_delta(b, b, &(struct reg_op *){NULL}), 0);
  CHECK_INT(registry_apply(r, src, &o, delta, n, 1, NULL, &back, &d), 0);
  dump(&d);
  CHECK_INT(registry_count(back), registry_count(b));
  for (size_t i = 0; back && i < registry_count(b); i++) {
    const struct reg_entry *x = registry_at(b, i), *y = registry_get(back, x->id);
    CHECK(y != NULL);
    CHECK(y && val_equal(x->data, y->data) && val_equal(x->meta, y->meta));
  }
  free_ops(delta, n);
  free(delta);
  registry_unref(back);
  registry_unref(r);
  free_ops(ops, 3);
  diag_free(&d);
  done(b);
}

/* Ops made by registry_delta outlive the generation they came from (another string pool),
** and so does the generation they build. */
TEST(delta_outlives_its_source) {
  struct registry *b = base(), *other = NULL, *r = NULL;
  struct reg_opts o = {proj};
  struct diag d;
  diag_init(&d);
  put("app.yaml", "namespace: app\nentries:\n  - {name: cfg, kind: registry.entry, meta: {type: config}, value: 7}\n"
                  "  - {name: lib, kind: library.lua, source: file://extra.lua}\n");
  CHECK_INT(registry_load(src, &o, &other, &d), 0);   /* a new pool */
  struct reg_op *delta;
  size_t n = registry_delta(b, other, &delta);
  registry_unref(other);
  CHECK_INT(registry_apply(b, src, &o, delta, n, 1, NULL, &r, &d), 0);
  dump(&d);
  free_ops(delta, n);
  free(delta);
  const struct reg_entry *lib = r ? registry_get(r, "app:lib") : NULL;
  CHECK(lib != NULL);
  CHECK_STR(lib ? val_get(lib->data, "source")->u.str.origin : NULL, "src/extra.lua");
  CHECK_STR(lib ? lib->file : NULL, "src/app.yaml");   /* where the target defined it */
  CHECK_INT(val_int(val_get(registry_get(r, "app:cfg")->data, "value"), 0), 7);
  CHECK_INT(registry_count(r), 2);
  registry_unref(r);
  diag_free(&d);
  done(b);
}

int main(void) {
  RUN(create_update_delete);
  RUN(qualifies_references);
  RUN(refused_with_every_problem);
  RUN(lenient_replay_drops_conflicts);
  RUN(file_escape_and_budget);
  RUN(outlives_its_base);
  RUN(delta_rolls_back);
  RUN(delta_outlives_its_source);
  return T_DONE();
}
