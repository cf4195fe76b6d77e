/*
** registry.c — registry generations (see registry.h): the loader pipeline and the public
** API. registry_load runs on the caller's thread and builds a private generation:
**   scan srcdir (sorted) → read each file (reg_read.c) → entries (file meta merged, flat or
**   data: style, file:// inlined) → ${env:} substituted → -o overrides → kind checks and
**   defaults (reg_kinds.c) → references resolved → .env files read → published (refcount 1, new version).
** After that the generation is immutable; any thread may read it, and registry_ref/unref
** are atomic. The only process-wide state here is the version counter (an atomic).
*/
#include "reg_internal.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCAN_MAX_DEPTH 32

static _Atomic uint64_t last_version;

static char *join(const char *a, const char *b) {
  struct buf out;
  buf_init(&out);
  buf_printf(&out, "%s%s%s", a, *a && *b ? "/" : "", b);
  return buf_steal(&out);
}

/* ---- references and overrides ---- */

/* A dotted field path with no empty segment. */
static int good_path(const char *p) {
  return *p && *p != '.' && p[strlen(p) - 1] != '.' && !strstr(p, "..");
}

int registry_parse_override(const char *spec, struct reg_override *o, char **storage) {
  const char *eq = strchr(spec, '=');
  *storage = NULL;
  if (!eq) return -1;
  char *s = xstrdup(spec);
  s[eq - spec] = '\0';
  char *colon = strrchr(s, ':');
  char *ns_end = strchr(s, ':');
  if (!colon || ns_end == s || ns_end == colon || colon[-1] == ':' || !good_path(colon + 1)) {
    free(s);
    return -1;
  }
  *colon = '\0';
  o->id = s;
  o->path = colon + 1;
  o->value = s + (eq - spec) + 1;
  *storage = s;
  return 0;
}

/* ---- generations ---- */

static uint32_t hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

long reg_gen_find(const struct registry *r, const char *id) {
  if (!r->nslots) return -1;
  for (size_t i = hash(id) & (r->nslots - 1);; i = (i + 1) & (r->nslots - 1)) {
    uint32_t s = r->slots[i];
    if (!s) return -1;
    if (strcmp(r->ents[s - 1].id, id) == 0) return (long)s - 1;
  }
}

static void slot_put(struct registry *r, size_t idx) {
  size_t i = hash(r->ents[idx].id) & (r->nslots - 1);
  while (r->slots[i]) i = (i + 1) & (r->nslots - 1);
  r->slots[i] = (uint32_t)idx + 1;
}

/* Keeps the table at most half full. */
static void rehash(struct registry *r) {
  if ((r->n + 1) * 2 <= r->nslots) return;
  free(r->slots);
  r->nslots = r->nslots ? r->nslots * 2 : 64;
  r->slots = xcalloc(r->nslots, sizeof *r->slots);
  for (size_t i = 0; i < r->n; i++) slot_put(r, i);
}

void reg_ent_free(struct ent *e) {
  free(e->id);
  free(e->ns);
  free(e->name);
  free(e->kind);
  val_free(e->data);
  val_free(e->meta);
}

void reg_gen_put(struct registry *r, struct ent *e, struct diag *d) {
  long old = reg_gen_find(r, e->id);
  if (old >= 0) {
    struct ent *o = &r->ents[old];
    diag_add(d, 0, e->pub.file, e->pub.line, "duplicate entry id %s (also defined at %s:%d); the last definition wins",
             e->id, o->pub.file, o->pub.line);
    reg_ent_free(o);
    *o = *e;
    return;
  }
  rehash(r);
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 32;
    r->ents = xrealloc(r->ents, r->cap * sizeof *r->ents);
  }
  r->ents[r->n] = *e;
  slot_put(r, r->n++);
}

void reg_gen_remove(struct registry *r, size_t i) {
  reg_ent_free(&r->ents[i]);
  memmove(&r->ents[i], &r->ents[i + 1], (r->n - i - 1) * sizeof *r->ents);
  r->n--;
  memset(r->slots, 0, r->nslots * sizeof *r->slots);
  for (size_t k = 0; k < r->n; k++) slot_put(r, k);
}

void reg_gen_free(struct registry *r) {
  for (size_t i = 0; i < r->n; i++) reg_ent_free(&r->ents[i]);
  free(r->ents);
  free(r->slots);
  reg_pool_unref(r->pool);
  free(r);
}

void reg_gen_publish(struct registry *r) {
  for (size_t i = 0; i < r->n; i++) {
    struct ent *e = &r->ents[i];
    e->pub.id = e->id;
    e->pub.ns = e->ns;
    e->pub.name = e->name;
    e->pub.kind = e->kind;
    e->pub.data = e->data;
    e->pub.meta = e->meta;
  }
  r->version = atomic_fetch_add(&last_version, 1) + 1;
  atomic_init(&r->refs, 1);
}

const struct reg_entry *registry_get(const struct registry *r, const char *id) {
  long i = r && id ? reg_gen_find(r, id) : -1;
  return i < 0 ? NULL : &r->ents[i].pub;
}

size_t registry_count(const struct registry *r) { return r ? r->n : 0; }

const struct reg_entry *registry_at(const struct registry *r, size_t i) {
  return r && i < r->n ? &r->ents[i].pub : NULL;
}

uint64_t registry_version(const struct registry *r) { return r ? r->version : 0; }

struct registry *registry_ref(struct registry *r) {
  if (r) atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
  return r;
}

void registry_unref(struct registry *r) {
  if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) reg_gen_free(r);
}

/* ---- loading: files ---- */

struct loader {
  struct registry *r;
  struct diag *d;
  const struct reg_opts *opts;
  struct reg_src src;
  size_t inline_left;     /* file:// bytes this load may still inline */
  int64_t lua_deadline;   /* when registry Lua of this load must have finished */
  int stopped;            /* opts->stop said so: the remaining files are not read */
};

/* File name suffix → reader. `strict`: the file exists only to define entries, so a missing
** namespace is an error rather than a sign of a plain data file. */
static const struct reader {
  const char *suffix;
  reg_reader read;
  int strict;
} readers[] = {
  {".registry.lua", reg_read_lua, 1},
  {".yaml", reg_read_yaml, 0},
  {".yml", reg_read_yaml, 0},
  {".json", reg_read_yaml, 0},
};

static const struct reader *reader_for(const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < countof(readers); i++) {
    size_t k = strlen(readers[i].suffix);
    if (n > k && strcmp(name + n - k, readers[i].suffix) == 0) return &readers[i];
  }
  return NULL;
}

struct names {
  char **v;
  size_t n, cap;
};

static void names_push(struct names *s, char *owned) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 32;
    s->v = xrealloc(s->v, s->cap * sizeof *s->v);
  }
  s->v[s->n++] = owned;
}

static int skip_dir(const char *name) { return name[0] == '.' || strcmp(name, "node_modules") == 0; }

/* Collects the registry files under srcdir/rel, as paths relative to srcdir. Symlinks are
** followed (depth-limited); dot-directories and node_modules are skipped. */
static void scan(struct loader *L, const char *rel, struct names *out, int depth) {
  char *dir = join(L->src.dir, rel);
  DIR *dh = opendir(dir);
  if (!dh) diag_add(L->d, 1, dir, 0, "cannot open directory: %s", strerror(errno));
  for (struct dirent *de; dh && (de = readdir(dh));) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char *path = join(rel, de->d_name), *full = join(L->src.dir, path);
    struct stat st;
    int found = stat(full, &st) == 0;
    if (found && S_ISDIR(st.st_mode) && !skip_dir(de->d_name) && depth < SCAN_MAX_DEPTH)
      scan(L, path, out, depth + 1);
    else if (found && !S_ISDIR(st.st_mode) && reader_for(de->d_name))
      names_push(out, xstrdup(path));   /* not a regular file: load_file refuses it */
    free(path);
    free(full);
  }
  if (dh) closedir(dh);
  free(dir);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- loading: entries ---- */

static int structural(const char *key, int single) {
  static const char *const keys[] = {"name", "kind", "meta", "namespace", "version"};
  for (size_t i = 0; i < (single ? 5 : 3); i++)
    if (strcmp(key, keys[i]) == 0) return 1;
  return 0;
}

/* The entry's data: its `data:` map, or every non-structural key (flat style). */
static struct val *entry_data(const struct val *item, int single) {
  const struct val *explicit_data = val_get(item, "data");
  if (explicit_data && explicit_data->type == V_MAP) return val_copy(explicit_data);
  struct val *data = val_new(V_MAP, item->file, item->line);
  for (size_t i = 0; i < val_len(item); i++)
    if (!structural(val_key_at(item, i), single))
      val_map_set(data, val_key_at(item, i), val_copy(val_at(item, i)));
  return data;
}

/* File meta, overlaid with the entry's own meta (entry keys win). */
static struct val *entry_meta(const struct val *file_meta, const struct val *own) {
  struct val *m = file_meta ? val_copy(file_meta) : val_new(V_MAP, NULL, 0);
  for (size_t i = 0; i < val_len(own); i++) val_map_set(m, val_key_at(own, i), val_copy(val_at(own, i)));
  m->file = own ? own->file : NULL;   /* no own meta: problems point at the entry */
  m->line = own ? own->line : 0;
  return m;
}

/* Checks name, kind and meta of an entry map; returns its name or NULL after reporting. */
static const char *entry_name(struct loader *L, const struct val *item, const char *ns) {
  const char *name = val_str(val_get(item, "name"), NULL);
  const char *kind = val_str(val_get(item, "kind"), NULL);
  const struct val *meta = val_get(item, "meta");
  if (!name || !*name) diag_add(L->d, 1, item->file, item->line, "entry in namespace %s has no name", ns);
  else if (strchr(name, ':')) diag_add(L->d, 1, item->file, item->line, "entry name '%s' must not contain ':'", name);
  else if (!kind || !*kind) diag_add(L->d, 1, item->file, item->line, "entry %s:%s has no kind", ns, name);
  else if (meta && meta->type != V_MAP) diag_add(L->d, 1, meta->file, meta->line, "entry %s:%s: meta must be a map", ns, name);
  else return name;
  return NULL;
}

static void add_entry(struct loader *L, const struct val *item, const char *ns,
                      const struct val *file_meta, const char *rel_dir, int single) {
  if (item->type != V_MAP) {
    diag_add(L->d, 1, item->file, item->line, "an entry must be a map, got a %s", val_type_name(item->type));
    return;
  }
  const char *name = entry_name(L, item, ns);
  if (!name) return;
  struct ent e = {0};
  e.ns = xstrdup(ns);
  e.name = xstrdup(name);
  e.id = registry_qualify(ns, name);
  e.kind = xstrdup(val_str(val_get(item, "kind"), ""));
  e.data = entry_data(item, single);
  e.meta = entry_meta(file_meta, val_get(item, "meta"));
  e.pub.file = item->file;
  e.pub.line = item->line;
  e.touched = 1;
  reg_inline_files(e.data, &L->src, rel_dir, L->r->pool, &L->inline_left, L->d);
  reg_gen_put(L->r, &e, L->d);
}

static void add_entries(struct loader *L, const struct val *root, const char *ns, const char *rel_dir) {
  const struct val *entries = val_get(root, "entries"), *meta = val_get(root, "meta");
  if (meta && meta->type != V_MAP) {
    diag_add(L->d, 1, meta->file, meta->line, "file meta must be a map");
    return;
  }
  if (entries && entries->type != V_LIST) {
    diag_add(L->d, 1, entries->file, entries->line, "entries must be a list");
  } else if (entries) {
    for (size_t i = 0; i < val_len(entries); i++) add_entry(L, val_at(entries, i), ns, meta, rel_dir, 0);
  } else if (val_get(root, "name") || val_get(root, "kind")) {
    add_entry(L, root, ns, NULL, rel_dir, 1);
  } else {
    diag_add(L->d, 0, root->file, root->line, "namespace %s: the file defines no entries", ns);
  }
}

/* Turns one parsed file into entries; files without a namespace are data, not definitions. */
static void load_tree(struct loader *L, const struct val *root, const struct reader *rd, const char *rel) {
  const char *ns = val_str(val_get(root, "namespace"), NULL);
  if (!ns || !*ns) {
    if (rd->strict) diag_add(L->d, 1, root->file, 0, "a registry file needs a non-empty namespace");
    return;
  }
  char *rel_dir = xstrdup(rel);
  char *slash = strrchr(rel_dir, '/');
  *(slash ? slash : rel_dir) = '\0';
  add_entries(L, root, ns, rel_dir);
  free(rel_dir);
}

static void load_file(struct loader *L, const char *rel) {
  const char *shown = reg_pool_add(L->r->pool, join(L->src.shown, rel));
  char *full = join(L->src.dir, rel);
  const struct reader *rd = reader_for(rel);
  size_t len;
  int line = 0;
  char err[512];
  char *text = reg_file_read(full, &len, err, sizeof err);
  struct reg_budget b;
  reg_budget_init(&b, L->opts);
  b.lua_deadline_ns = L->lua_deadline;
  struct val *root = text ? rd->read(text, len, shown, &b, &line, err, sizeof err) : NULL;
  if (!root) diag_add(L->d, 1, shown, line, "%s", err);
  if (root && root->type == V_MAP) load_tree(L, root, rd, rel);
  else if (root && rd->strict) diag_add(L->d, 1, shown, 0, "a registry file must hold a map");
  val_free(root);
  free(text);
  free(full);
}

/* ---- ${env:NAME} ---- */


static const struct ent *env_entry(const struct registry *r, const char *name) {
  for (size_t i = 0; i < r->n; i++) {
    const struct ent *e = &r->ents[i];
    if (strcmp(e->kind, "env.variable") != 0) continue;
    if (strcmp(e->id, name) == 0 || strcmp(val_str(val_get(e->data, "variable"), ""), name) == 0) return e;
  }
  return NULL;
}

/* ${env:NAME}: through an env.variable entry naming it (its OS variable, then its default),
** else straight from the OS environment. */
static char *env_lookup(void *ud, const char *name) {
  const struct ent *e = env_entry(ud, name);
  const char *os = getenv(e ? val_str(val_get(e->data, "variable"), e->name) : name);
  if (os) return xstrdup(os);
  return e ? val_scalar_text(val_get(e->data, "default")) : NULL;
}

/* ---- overrides ---- */

/* Sets map[a][b]...[last] = v for the dotted path, creating maps; -1 (v freed) when an
** intermediate value is not a map. */
static int set_path(struct val *map, const char *path, struct val *v) {
  const char *dot;
  while ((dot = strchr(path, '.'))) {
    char *key = xstrndup(path, (size_t)(dot - path));
    const struct val *child = val_get(map, key);
    if (!child || child->type == V_NULL) val_map_set(map, key, val_new(V_MAP, NULL, 0));
    else if (child->type != V_MAP) { free(key); val_free(v); return -1; }
    map = (struct val *)val_get(map, key);
    free(key);
    path = dot + 1;
  }
  val_map_set(map, path, v);
  return 0;
}

static void apply_override(struct loader *L, const struct reg_override *o) {
  long i = reg_gen_find(L->r, o->id);
  if (i < 0) {
    diag_add(L->d, 1, NULL, 0, "override %s:%s: no entry %s", o->id, o->path, o->id);
    return;
  }
  struct ent *e = &L->r->ents[i];
  if (strcmp(o->path, "kind") == 0) {
    free(e->kind);
    e->kind = xstrdup(o->value);
    return;
  }
  int meta = strncmp(o->path, "meta.", 5) == 0;
  struct val *v = reg_scalar(o->value, strlen(o->value), NULL, 0);
  if (set_path(meta ? e->meta : e->data, o->path + (meta ? 5 : 0), v) < 0)
    diag_add(L->d, 1, NULL, 0, "override %s:%s: a value on the way is not a map", o->id, o->path);
}

/* ---- kinds and references ---- */

struct ref {
  size_t ent;
  const struct val *v;
  char *path;
  const struct val *allowed;
};

struct refs {
  struct ref *v;
  size_t n, cap, cur;   /* cur: the entry being checked */
};

static void on_ref(void *ud, const struct val *ref, const char *path, const struct val *allowed) {
  struct refs *rs = ud;
  if (rs->n == rs->cap) {
    rs->cap = rs->cap ? rs->cap * 2 : 32;
    rs->v = xrealloc(rs->v, rs->cap * sizeof *rs->v);
  }
  rs->v[rs->n++] = (struct ref){rs->cur, ref, xstrdup(path), allowed};
}

/* Untouched entries (copied from a base generation) were checked when they were loaded:
** checking them again only fills what is there and reports their references. */
static void check_kinds(struct registry *r, struct diag *d, struct refs *rs) {
  struct diag quiet;
  diag_init(&quiet);
  for (size_t i = 0; i < r->n; i++) {
    struct ent *e = &r->ents[i];
    struct diag *to = e->touched ? d : &quiet;
    const struct val *spec = reg_kind_spec(e->kind);
    if (!spec) {
      diag_add(to, 0, e->pub.file, e->pub.line, "%s: unknown kind %s (kept, not checked)", e->id, e->kind);
      continue;
    }
    struct reg_check c = {to, e->id, e->ns, e->pub.file, e->pub.line, on_ref, rs};
    rs->cur = i;
    reg_check_entry(spec, e->data, e->meta, &c);
  }
  if (quiet.errors) diag_add(d, 1, NULL, 0, "%d problems in entries that were not changed", quiet.errors);
  diag_free(&quiet);
}

static int kind_allowed(const struct val *allowed, const char *kind) {
  for (size_t i = 0; i < val_len(allowed); i++)
    if (strcmp(val_str(val_at(allowed, i), ""), kind) == 0) return 1;
  return val_len(allowed) == 0;
}

static void check_ref(struct registry *r, struct diag *d, const struct ref *rf) {
  const struct ent *from = &r->ents[rf->ent];
  const char *file = rf->v->line ? rf->v->file : from->pub.file;
  int line = rf->v->line ? rf->v->line : from->pub.line;
  long t = reg_gen_find(r, rf->v->u.str.s);
  if (t < 0) {
    diag_add(d, 1, file, line, "%s: %s '%s' not found", from->id, rf->path, rf->v->u.str.s);
    return;
  }
  if (kind_allowed(rf->allowed, r->ents[t].kind)) return;
  struct buf want;
  buf_init(&want);
  for (size_t i = 0; i < val_len(rf->allowed); i++)
    buf_printf(&want, "%s%s", i ? " or " : "", val_str(val_at(rf->allowed, i), "?"));
  diag_add(d, 1, file, line, "%s: %s '%s' is a %s, expected %s", from->id, rf->path,
           rf->v->u.str.s, r->ents[t].kind, want.data);
  buf_free(&want);
}

static void check_refs(struct registry *r, struct diag *d, struct refs *rs) {
  for (size_t i = 0; i < rs->n; i++) {
    check_ref(r, d, &rs->v[i]);
    free(rs->v[i].path);
  }
  free(rs->v);
}

void reg_gen_check(struct registry *r, const struct reg_opts *opts, struct diag *d) {
  struct refs rs = {0};
  check_kinds(r, d, &rs);
  check_refs(r, d, &rs);
  for (size_t i = 0; i < r->n; i++)
    if (r->ents[i].touched && strcmp(r->ents[i].kind, "env.storage.file") == 0)
      reg_load_env_file(r->ents[i].data, opts, r->pool, d);
}

/* ---- the pipeline ---- */

/* Where srcdir is and how to show it: relative to the project when it lies inside. */
int reg_gen_src(struct registry *r, const char *srcdir, const struct reg_opts *opts,
                struct reg_src *src, struct diag *d) {
  char real[PATH_MAX], proj[PATH_MAX];
  if (!realpath(srcdir, real)) {
    diag_add(d, 1, srcdir, 0, "cannot open the source directory: %s", strerror(errno));
    return -1;
  }
  const char *pd = opts ? opts->project_dir : NULL;
  size_t n = pd && realpath(pd, proj) ? strlen(proj) : 0;
  const char *shown = srcdir;
  if (n && strcmp(real, proj) == 0) shown = "";
  else if (n && strncmp(real, proj, n) == 0 && real[n] == '/') shown = real + n + 1;
  char *copy = xstrdup(shown);
  size_t k = strlen(copy);
  while (k > 1 && copy[k - 1] == '/') copy[--k] = '\0';
  src->dir = srcdir;
  src->real = reg_pool_add(r->pool, xstrdup(real));
  src->shown = reg_pool_add(r->pool, copy);
  return 0;
}

static void load_all(struct loader *L) {
  struct names files = {0};
  scan(L, "", &files, 0);
  qsort(files.v, files.n, sizeof *files.v, cmp_names);
  const struct reg_opts *o = L->opts;
  struct reg_budget first;
  reg_budget_init(&first, o);
  L->lua_deadline = first.lua_deadline_ns;
  for (size_t i = 0; i < files.n; i++) {
    if (!L->stopped && o && o->stop && o->stop(o->stop_ud)) {
      diag_add(L->d, 1, L->src.shown, 0, "interrupted while loading");
      L->stopped = 1;
    }
    if (!L->stopped) load_file(L, files.v[i]);
    free(files.v[i]);
  }
  free(files.v);
}

static void resolve(struct loader *L) {
  for (size_t i = 0; i < L->r->n; i++) reg_subst_env(L->r->ents[i].data, env_lookup, L->r, L->d);
  for (size_t i = 0; L->opts && i < L->opts->n_overrides; i++) apply_override(L, &L->opts->overrides[i]);
  reg_gen_check(L->r, L->opts, L->d);
}

int registry_load(const char *srcdir, const struct reg_opts *opts, struct registry **out,
                  struct diag *d) {
  int errors = d->errors;
  struct loader L = {xcalloc(1, sizeof *L.r), d, opts, {0}, REG_MAX_INLINE_BYTES, 0, 0};
  *out = NULL;
  registry_kinds();
  L.r->pool = reg_pool_new();
  if (reg_gen_src(L.r, srcdir, opts, &L.src, d) == 0) {
    load_all(&L);
    resolve(&L);
  }
  if (d->errors > errors) {
    reg_gen_free(L.r);
    return -1;
  }
  reg_gen_publish(L.r);
  *out = L.r;
  return 0;
}
