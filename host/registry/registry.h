/*
** registry.h — a registry *generation*: every entry loaded from a project's source dir,
** validated against the kind descriptions of registry/kinds.yaml, immutable once built.
** A generation is built beside the running one (hot reload swaps pointers) and reference
** counted: registry_ref/registry_unref may be called from any thread; everything else reads
** an immutable structure and is safe from any thread.
*/
#ifndef TASKHOST_REGISTRY_H
#define TASKHOST_REGISTRY_H

#include <stddef.h>
#include "diag.h"
#include "value/val.h"

struct reg_entry {
  const char *id;          /* "ns:name" */
  const char *ns;
  const char *name;
  const char *kind;        /* e.g. "process.lua" */
  const struct val *data;  /* V_MAP: flat entry data, defaults of the kind filled in,
                              file:// inlined, ${env:..} resolved, bare refs qualified */
  const struct val *meta;  /* V_MAP (possibly empty): file meta merged with entry meta */
  const char *file;        /* registry file that defined it (path relative to the project) */
  int line;
};

struct reg_override {      /* -o ns:entry:field.path=value */
  const char *id;          /* "ns:entry" */
  const char *path;        /* "addr" or "lifecycle.auto_start" or "meta.x" */
  const char *value;       /* parsed as a YAML scalar: true/false/int/float/string */
};

struct reg_opts {
  const char *project_dir; /* paths in diagnostics and entry->file are relative to it */
  const struct reg_override *overrides;
  size_t n_overrides;
  int (*stop)(void *ud);   /* or NULL; polled while a file loads: nonzero stops the load */
  void *stop_ud;           /* (main.c: a pending SIGINT/SIGTERM) */
};

struct registry;
struct reg_pool;

/* Loads every registry file under `srcdir`. Returns 0 and a generation (refcount 1) when
** there was no error; -1 otherwise (problems in d; *out is NULL). Warnings do not fail. */
int registry_load(const char *srcdir, const struct reg_opts *opts, struct registry **out,
                  struct diag *d);

/* Parses "ns:entry:field.path=value" into an override (pointers into a copy of `spec`
** owned by the caller through *storage, free() it). Returns 0 / -1. */
int registry_parse_override(const char *spec, struct reg_override *o, char **storage);

const struct reg_entry *registry_get(const struct registry *r, const char *id);
size_t registry_count(const struct registry *r);
const struct reg_entry *registry_at(const struct registry *r, size_t i);  /* load order */
uint64_t registry_version(const struct registry *r);

struct registry *registry_ref(struct registry *r);
void registry_unref(struct registry *r);

/* Qualifies a reference found in an entry of namespace `ns`: "relay" → "app:relay";
** "app:relay" is returned as given. Result is malloc'd. */
char *registry_qualify(const char *ns, const char *ref);

/* 1 when entry `id` differs between generations a and b: missing from one, another kind,
** other data or meta (inlined sources included), or — for entries that run Lua — a change
** in an entry it refers to (process, host, imports, func), followed recursively. */
int registry_entry_changed(const struct registry *a, const struct registry *b, const char *id);

/* ---- change sets (reg_change.c) ----
** One operation on a generation, as the registry Lua module's changes:create/update/delete
** make them. Every field is owned (reg_op_free). data may hold file:// strings (relative to
** the source directory's root, inlined by registry_apply). */
enum reg_op_kind { REG_OP_CREATE, REG_OP_UPDATE, REG_OP_DELETE };
struct reg_op {
  enum reg_op_kind op;
  char *id;                /* "ns:name" */
  char *kind;              /* create/update */
  struct val *data, *meta; /* create/update: V_MAP or NULL (empty) */
  char *file;              /* where the op was made ("src/api.lua"), NULL: "<runtime>" */
  int line;
  struct reg_pool *pool;   /* or NULL: the string pool the vals' file and origin strings point
                              into, held by the op (ops made by registry_delta) */
};
#define REG_MAX_OPS 1000   /* operations in one change set */
const char *reg_op_name(enum reg_op_kind k);   /* "create" ... */
void reg_op_free(struct reg_op *o);
void reg_op_copy(struct reg_op *dst, const struct reg_op *src);
/* 0 when id is "ns:name" with both parts non-empty and one ':'; else -1 with err. */
int reg_id_check(const char *id, char *err, size_t errlen);

/* The budget of one change set's entries all told (nodes, bytes, depth): one registry
** file's (REG_MAX_NODES, REG_MAX_BYTES, REG_MAX_DEPTH of reg_internal.h). */
struct val_limits;
void registry_change_limits(struct val_limits *lim);

/* Builds a new generation: base's entries, then ops in order — create appends, update
** replaces an entry of the same kind, delete removes — checked as a load checks (kinds,
** defaults, qualification, every reference of the result resolves; file:// inlined from
** srcdir). strict: an op that conflicts (create of an id that exists, update or delete of
** one that does not, an update changing the kind) is an error; otherwise (runtime changes
** replayed over a new file load) it is skipped with a warning and dropped[i] set (dropped:
** n ints, or NULL). Returns 0 and the generation (refcount 1, a new version), or -1 with
** every problem in d. At most REG_MAX_OPS ops. */
int registry_apply(struct registry *base, const char *srcdir, const struct reg_opts *opts,
                   const struct reg_op *ops, size_t n, int strict, int *dropped,
                   struct registry **out, struct diag *d);

/* The ops that turn generation `from` into `to` (deletes and updates in from's order, then
** creates in to's; an entry that changed kind is deleted and created). Sets *ops (malloc'd,
** each reg_op_free'd by the caller) and returns their count. Strings inlined from files keep
** their origin, so applying the ops does not read the files again; the ops hold `to`'s string
** pool, so they outlive `to`. */
size_t registry_delta(const struct registry *from, const struct registry *to, struct reg_op **ops);

/* The kind descriptions (registry/kinds.yaml), parsed once. */
const struct val *registry_kinds(void);
int registry_kind_known(const char *kind);

/* The linked libyaml's yaml_get_version_string() into buf ("0.2.5"); returns 0 (reg_read.c). */
int registry_yaml_version(char *buf, size_t n);

#endif
