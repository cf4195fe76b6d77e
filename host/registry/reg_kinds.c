/*
** reg_kinds.c — the kind descriptions of registry/kinds.yaml (embedded at build time) and
** the check of one entry against them: types, required fields, one_of / starts_with,
** defaults filled in (nested maps created when they hold defaults), strings coerced where
** a scalar type is wanted, durations normalised to strings, bare references qualified.
** The parsed description is the module's only global: built once under pthread_once, then
** read-only from any thread. Checking mutates only the entry being loaded.
*/
#include "reg_internal.h"
#include "base/log.h"
#include "base/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char kinds_yaml[];
extern const size_t kinds_yaml_len;

static pthread_once_t kinds_once = PTHREAD_ONCE_INIT;
static struct val *kinds_root;   /* never freed: lives as long as the process */

static void kinds_init(void) {
  int line = 0;
  char err[256];
  struct reg_budget b;
  reg_budget_init(&b, NULL);
  kinds_root = reg_read_yaml(kinds_yaml, kinds_yaml_len, "registry/kinds.yaml", &b, &line, err, sizeof err);
  if (!kinds_root || kinds_root->type != V_MAP) {
    log_error("registry/kinds.yaml:%d: %s", line, kinds_root ? "not a map" : err);
    abort();   /* a broken embedded description is a build bug */
  }
}

const struct val *registry_kinds(void) {
  pthread_once(&kinds_once, kinds_init);
  return kinds_root;
}

const struct val *reg_kind_spec(const char *kind) {
  return val_get(val_get(registry_kinds(), "kinds"), kind);
}

int registry_kind_known(const char *kind) { return reg_kind_spec(kind) != NULL; }

/* A field spec, with `use: name` replaced by the shared spec it names. */
static const struct val *resolve(const struct val *spec) {
  const char *use = val_str(val_get(spec, "use"), NULL);
  return use ? val_get(val_get(registry_kinds(), "shared"), use) : spec;
}

/* ---- one check ---- */

struct chk {
  struct reg_check *c;
  struct buf path;   /* field being checked, "lifecycle.restart.max_delay" */
  int rc;
};

/* Reports a problem at the value's position (the entry's when the value has none). */
static void problem(struct chk *k, const struct val *at, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static void problem(struct chk *k, const struct val *at, const char *fmt, ...) {
  const char *file = at && at->file ? at->file : k->c->file;
  int line = at && at->line ? at->line : k->c->line;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_add(k->c->d, 1, file, line, "%s: %s", k->c->id, msg);
  k->rc = -1;
}

static const char *a_type(enum val_type t) {
  static const char *const names[] = {"null", "a bool", "an int", "a number", "a string", "a list", "a map"};
  return names[t];
}

/* Replaces a string by its YAML scalar reading when that has the wanted type. */
static int coerce(struct val **slot, enum val_type want) {
  struct val *v = *slot;
  if (v->type != V_STR) return -1;
  struct val *n = reg_scalar(v->u.str.s, v->u.str.len, v->file, v->line);
  if (n->type != want && !(want == V_NUM && n->type == V_INT)) { val_free(n); return -1; }
  val_free(v);
  *slot = n;
  return 0;
}

/* Swaps an empty map for an empty list or back (a Lua {} is both). */
static int empty_as(struct val **slot, enum val_type want) {
  if ((*slot)->type == want) return 0;
  if (val_len(*slot) || ((*slot)->type != V_LIST && (*slot)->type != V_MAP)) return -1;
  struct val *n = val_new(want, (*slot)->file, (*slot)->line);
  val_free(*slot);
  *slot = n;
  return 0;
}

/* Type checkers: 0 fits (possibly after normalising *slot), -1 wrong type, 1 reported. */
static int t_any(struct chk *k, struct val **slot) { return 0; }
static int t_string(struct chk *k, struct val **slot) { return (*slot)->type == V_STR ? 0 : -1; }
static int t_bool(struct chk *k, struct val **slot) { return (*slot)->type == V_BOOL ? 0 : coerce(slot, V_BOOL); }
static int t_list(struct chk *k, struct val **slot) { return empty_as(slot, V_LIST); }
static int t_map(struct chk *k, struct val **slot) { return empty_as(slot, V_MAP); }

static int t_number(struct chk *k, struct val **slot) {
  return (*slot)->type == V_INT || (*slot)->type == V_NUM ? 0 : coerce(slot, V_NUM);
}

static int t_int(struct chk *k, struct val **slot) {
  struct val *v = *slot;
  int64_t i;
  if (v->type == V_NUM && val_num_as_int(v->u.n, &i)) {
    v->type = V_INT;
    v->u.i = i;
  }
  return v->type == V_INT ? 0 : coerce(slot, V_INT);
}

/* Durations end up as strings duration_parse accepts; an integer counts nanoseconds. */
static int t_duration(struct chk *k, struct val **slot) {
  struct val *v = *slot;
  int64_t ns;
  if (v->type == V_INT) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, v->u.i ? "%lldns" : "0", (long long)v->u.i);
    *slot = val_new_str(tmp, strlen(tmp), v->file, v->line);
    val_free(v);
    return 0;
  }
  if (v->type != V_STR) return -1;
  if (duration_parse(v->u.str.s, &ns) == 0) return 0;
  problem(k, v, "%s: invalid duration \"%s\" (expected e.g. \"300ms\", \"1m30s\")", k->path.data, v->u.str.s);
  return 1;
}

static int t_ref(struct chk *k, struct val **slot) {
  struct val *v = *slot;
  if (v->type != V_STR) return -1;
  if (!v->u.str.len) { problem(k, v, "%s: empty entry reference", k->path.data); return 1; }
  if (!strchr(v->u.str.s, ':')) {
    char *q = registry_qualify(k->c->ns, v->u.str.s);
    free(v->u.str.s);
    v->u.str.s = q;
    v->u.str.len = strlen(q);
  }
  return 0;
}

static int t_size(struct chk *k, struct val **slot) {
  struct val *v = *slot;
  uint64_t n;
  if ((v->type == V_INT && v->u.i >= 0) || (v->type == V_STR && size_parse(v->u.str.s, &n) == 0)) return 0;
  if (v->type != V_STR && v->type != V_INT) return -1;
  problem(k, v, "%s: invalid size (expected bytes or e.g. \"64MB\", \"512KiB\")", k->path.data);
  return 1;
}

static const struct vtype {
  const char *name, *phrase;
  int (*check)(struct chk *k, struct val **slot);
} vtypes[] = {
  {"any", "anything", t_any},           {"string", "a string", t_string},
  {"int", "an integer", t_int},         {"number", "a number", t_number},
  {"bool", "a boolean", t_bool},        {"duration", "a duration", t_duration},
  {"list", "a list", t_list},           {"map", "a map", t_map},
  {"ref", "an entry id (\"ns:name\")", t_ref},  {"size", "a size", t_size},
};

static const struct vtype *vtype_of(const struct val *spec) {
  const char *name = val_str(val_get(spec, "type"), "any");
  for (size_t i = 0; i < countof(vtypes); i++)
    if (strcmp(vtypes[i].name, name) == 0) return &vtypes[i];
  return &vtypes[0];
}

/* ---- walking data along a spec ---- */

static void check_fields(struct chk *k, const struct val *fields, struct val *map);

static size_t path_push(struct chk *k, const char *fmt, const char *s) {
  size_t mark = k->path.len;
  buf_printf(&k->path, fmt, mark ? "." : "", s);
  return mark;
}

static void path_pop(struct chk *k, size_t mark) {
  k->path.len = mark;
  k->path.data[mark] = '\0';
}

static int scalar_eq(const struct val *a, const struct val *b) {
  if (a->type != b->type) return 0;
  if (a->type == V_STR) return strcmp(a->u.str.s, b->u.str.s) == 0;
  if (a->type == V_INT) return a->u.i == b->u.i;
  if (a->type == V_BOOL) return a->u.b == b->u.b;
  return a->type == V_NULL;
}

static void check_one_of(struct chk *k, const struct val *spec, const struct val *v) {
  const struct val *allowed = val_get(spec, "one_of");
  if (!allowed) return;
  for (size_t i = 0; i < val_len(allowed); i++)
    if (scalar_eq(val_at(allowed, i), v)) return;
  struct buf list;
  buf_init(&list);
  for (size_t i = 0; i < val_len(allowed); i++)
    buf_printf(&list, "%s\"%s\"", i ? ", " : "", val_str(val_at(allowed, i), "?"));
  problem(k, v, "%s must be one of %s", k->path.data, list.data ? list.data : "");
  buf_free(&list);
}

static void check_starts_with(struct chk *k, const struct val *spec, const struct val *v) {
  const char *prefix = val_str(val_get(spec, "starts_with"), NULL);
  if (prefix && v->type == V_STR && strncmp(v->u.str.s, prefix, strlen(prefix)) != 0)
    problem(k, v, "%s must start with \"%s\"", k->path.data, prefix);
}

static void check_value(struct chk *k, const struct val *spec, struct val **slot);

static void check_children(struct chk *k, const struct val *spec, struct val *v) {
  const struct val *items = val_get(spec, "items"), *values = val_get(spec, "values");
  if (v->type == V_LIST && items) {
    for (size_t i = 0; i < v->u.agg.n; i++) {
      char idx[24];
      snprintf(idx, sizeof idx, "%zu", i);
      size_t mark = k->path.len;
      buf_printf(&k->path, "[%s]", idx);
      check_value(k, resolve(items), &v->u.agg.items[i]);
      path_pop(k, mark);
    }
  }
  if (v->type != V_MAP) return;
  if (val_get(spec, "fields")) check_fields(k, val_get(spec, "fields"), v);
  for (size_t i = 0; values && i < v->u.agg.n; i++) {
    size_t mark = path_push(k, "%s%s", v->u.agg.keys[i]);
    check_value(k, resolve(values), &v->u.agg.items[i]);
    path_pop(k, mark);
  }
}

/* A string the spec's `keywords` list takes as it is (not as a reference). */
static int is_keyword(const struct val *spec, const struct val *v) {
  const struct val *words = val_get(spec, "keywords");
  for (size_t i = 0; i < val_len(words); i++)
    if (scalar_eq(val_at(words, i), v)) return 1;
  return 0;
}

static void check_value(struct chk *k, const struct val *spec, struct val **slot) {
  if (is_keyword(spec, *slot)) return;
  const struct vtype *t = vtype_of(spec);
  int r = t->check(k, slot);
  if (r < 0) problem(k, *slot, "%s must be %s, got %s", k->path.data, t->phrase, a_type((*slot)->type));
  if (r) return;
  check_one_of(k, spec, *slot);
  check_starts_with(k, spec, *slot);
  check_children(k, spec, *slot);
  if (t->check == t_ref && k->c->on_ref)
    k->c->on_ref(k->c->ud, *slot, k->path.data, val_get(spec, "refs"));
}

/* True when filling the defaults of spec (a map with fields) would put something in it. */
static int has_defaults(const struct val *spec) {
  const struct val *fields = val_get(spec, "fields");
  for (size_t i = 0; i < val_len(fields); i++) {
    const struct val *f = resolve(val_at(fields, i));
    if (val_get(f, "default") || has_defaults(f)) return 1;
  }
  return 0;
}

/* A default value, copied and stamped with the entry's file (line 0: synthetic). */
static void restamp(struct val *v, const char *file) {
  v->file = file;
  v->line = 0;
  for (size_t i = 0; i < val_len(v); i++) restamp(v->u.agg.items[i], file);
}

static struct val *stamp(const struct val *dflt, const char *file) {
  struct val *v = val_copy(dflt);
  restamp(v, file);
  return v;
}

/* The value of an absent field: its default, a map of nested defaults, or NULL. */
static struct val *absent(struct chk *k, const struct val *spec, const struct val *map) {
  const struct val *dflt = val_get(spec, "default");
  if (dflt) return stamp(dflt, k->c->file);
  if (val_bool(val_get(spec, "required"), 0)) {
    problem(k, map, "missing required field %s", k->path.data);
    return NULL;
  }
  if (!has_defaults(spec)) return NULL;
  struct val *v = val_new(V_MAP, k->c->file, 0);
  check_fields(k, val_get(spec, "fields"), v);
  return v;
}

static struct val **slot_of(struct val *map, const char *key) {
  for (size_t i = 0; i < map->u.agg.n; i++)
    if (strcmp(map->u.agg.keys[i], key) == 0) return &map->u.agg.items[i];
  return NULL;
}

/* A null value counts as absent (so `prefix:` with nothing gets the default). */
static void check_fields(struct chk *k, const struct val *fields, struct val *map) {
  for (size_t i = 0; i < val_len(fields); i++) {
    const char *name = val_key_at(fields, i);
    const struct val *spec = resolve(val_at(fields, i));
    size_t mark = path_push(k, "%s%s", name);
    struct val **slot = slot_of(map, name);
    if (slot && (*slot)->type != V_NULL) {
      check_value(k, spec, slot);
    } else {
      struct val *v = absent(k, spec, map);
      if (v) val_map_set(map, name, v);
    }
    path_pop(k, mark);
  }
}

int reg_check_entry(const struct val *spec, struct val *data, struct val *meta,
                    struct reg_check *c) {
  struct chk k = {c, {0}, 0};
  buf_init(&k.path);
  buf_reserve(&k.path, 64);
  check_fields(&k, val_get(spec, "fields"), data);
  buf_adds(&k.path, "meta");
  check_fields(&k, val_get(spec, "meta"), meta);
  buf_free(&k.path);
  return k.rc;
}
