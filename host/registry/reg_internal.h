/*
** reg_internal.h — what the parts of the registry loader share. Not for use outside it.
**   reg_read.c    file text → val tree (YAML/JSON through libyaml, *.registry.lua sandboxed)
**   reg_interp.c  file:// inlining and ${env:NAME|default} substitution in entry data
**   reg_kinds.c   registry/kinds.yaml: type checks, defaults, reference qualification
**   reg_common.c  the string pool, registry_qualify, budgets, reg_file_read (used by all)
**   registry.c    scanning, entries, overrides, generations, the public API
** All of it runs on the thread calling registry_load; nothing here is shared between loads
** except the parsed kinds description (immutable after pthread_once).
*/
#ifndef TASKHOST_REG_INTERNAL_H
#define TASKHOST_REG_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "registry.h"
#include "value/val.h"

/* Strings generations own for their whole life: file paths shown in vals and diagnostics,
** origins of file:// text. Refcounted: a generation built from another by a change set
** (reg_change.c) shares its base's pool, as the entries it copies point into it. Strings are
** added only by the thread building a generation (they never move; readers read only them). */
struct reg_pool {
  atomic_int refs;
  char **s;
  size_t n, cap;
};
struct reg_pool *reg_pool_new(void);
const char *reg_pool_add(struct reg_pool *p, char *owned);   /* takes ownership */
struct reg_pool *reg_pool_ref(struct reg_pool *p);
void reg_pool_unref(struct reg_pool *p);

struct reg_src;

/* ---- generations (registry.c; reg_change.c builds them from change sets) ---- */

/* An entry while loading and after: `pub` is what readers see; reg_gen_publish points its
** fields at the owned ones below. `touched`: loaded, created or updated by this build (so
** checked and reported by it; entries copied from a base generation are not). */
struct ent {
  struct reg_entry pub;
  char *id, *ns, *name, *kind;
  struct val *data, *meta;
  int touched;
};

struct registry {
  atomic_int refs;
  uint64_t version;
  struct ent *ents;       /* load order */
  size_t n, cap;
  uint32_t *slots;        /* id hash table: index + 1, 0 = empty; size a power of two */
  size_t nslots;
  struct reg_pool *pool;  /* file paths and origins the vals point at */
};

long reg_gen_find(const struct registry *r, const char *id);        /* index or -1 */
/* Adds an entry (taking its contents); a duplicate id replaces the earlier one in place
** (a warning in d). */
void reg_gen_put(struct registry *r, struct ent *e, struct diag *d);
void reg_gen_remove(struct registry *r, size_t i);                   /* keeps load order */
void reg_ent_free(struct ent *e);
void reg_gen_free(struct registry *r);
/* Gives r its version (refcount 1); r is immutable afterwards. */
void reg_gen_publish(struct registry *r);
/* The checks after entries are in place, as a load does them: kinds (defaults, qualified
** references; problems of untouched entries are not reported again), references, then the
** .env files of touched env.storage.file entries. */
void reg_gen_check(struct registry *r, const struct reg_opts *opts, struct diag *d);
/* Where srcdir is and how diagnostics show it (strings kept in r's pool). 0 / -1 (in d). */
int reg_gen_src(struct registry *r, const char *srcdir, const struct reg_opts *opts,
                struct reg_src *src, struct diag *d);

/* ---- budgets ----
** What loading may cost, whichever reader builds the tree; all counted while values are
** built (a reader stops at the first value over budget), never checked afterwards. The
** largest real registry file (examples/, tests/fixtures/) is ~1.5 KiB, ~200 values, 6 levels
** deep, and runs well under 10^4 Lua instructions. */
#define REG_MAX_FILE_BYTES (16u << 20)    /* size of one registry file or file:// target */
#define REG_MAX_NODES 200000L             /* values built from one file (aliases, shared tables) */
#define REG_MAX_BYTES (32u << 20)         /* string and key bytes built from one file */
#define REG_MAX_DEPTH 64                  /* nesting of lists and maps in one file */
#define REG_MAX_INLINE_BYTES (256u << 20) /* file:// text inlined by one load, all entries */
#define REG_LUA_MEM (64u << 20)           /* bytes a *.registry.lua may allocate */
#define REG_LUA_INSNS 10000000L           /* VM instructions a *.registry.lua may run */
#define REG_LUA_WALL_MS 2000              /* wall time all *.registry.lua of a load may run */
#define REG_LUA_CALL_STEPS 1e9            /* steps of one string.find/match/gmatch/gsub (counted
                                             by lpattern.c), or estimated steps of one string.rep
                                             or table.move call (C: no hook inside) */

/* The budget of one file while a reader builds it (counted down), the load's deadline for
** Lua and its stop predicate (polled while Lua runs; nonzero stops it as "interrupted").
** reg_budget_init starts a fresh deadline; a load keeps one for all its files. */
struct reg_budget {
  long nodes;
  size_t bytes;
  int64_t lua_deadline_ns;   /* CLOCK_MONOTONIC */
  int (*stop)(void *ud);
  void *stop_ud;
};
void reg_budget_init(struct reg_budget *b, const struct reg_opts *o);
/* Takes n values and `bytes` bytes; -1 (nothing taken) when either would run out. */
int reg_budget_take(struct reg_budget *b, long n, size_t bytes);

/* Reads a registry file or file:// target: refuses what is not a regular file (a FIFO, a
** device, a socket: opened O_NONBLOCK and checked with fstat, so nothing can block) and
** files over REG_MAX_FILE_BYTES. malloc'd text (NUL-terminated) or NULL with err set. */
char *reg_file_read(const char *path, size_t *len, char *err, size_t errlen);

/* ---- reg_read.c ---- */

/* Types a plain scalar like YAML 1.2's core schema (as go-yaml v3 does): null, bool, int
** (decimal, 0x, 0o), float (incl. .inf/.nan), else string. */
struct val *reg_scalar(const char *s, size_t len, const char *file, int line);

/* A file reader: returns the file's tree (every node stamped with `file`), or NULL with the
** 1-based line of the problem in *line (0 if unknown) and a message in err.
** Every value built is taken from *b; over budget the reader stops at once. */
typedef struct val *(*reg_reader)(const char *text, size_t len, const char *file,
                                  struct reg_budget *b, int *line, char *err, size_t errlen);
struct val *reg_read_yaml(const char *text, size_t len, const char *file, struct reg_budget *b,
                          int *line, char *err, size_t errlen);
struct val *reg_read_lua(const char *text, size_t len, const char *file, struct reg_budget *b,
                         int *line, char *err, size_t errlen);

/* ---- reg_interp.c ---- */

struct reg_src {
  const char *dir;     /* srcdir as the caller gave it (used to open files) */
  const char *real;    /* realpath(srcdir), for the symlink escape check */
  const char *shown;   /* srcdir relative to the project ("src"), "" when it is the project */
};

/* Replaces every "file://..." string in v by that file's text; rel_dir is the directory of
** the registry file relative to srcdir ("" at the root). *budget: bytes the load may still
** inline (counted down). Problems go to d. 0 / -1. */
int reg_inline_files(struct val *v, const struct reg_src *src, const char *rel_dir,
                     struct reg_pool *pool, size_t *budget, struct diag *d);

/* Looks up ${env:NAME}: a malloc'd value, or NULL when NAME has no value. */
typedef char *(*reg_env_fn)(void *ud, const char *name);
/* Substitutes ${env:NAME} / ${env:NAME|default} in every string of v that was not inlined
** from a file. Problems go to d. 0 / -1. */
int reg_subst_env(struct val *v, reg_env_fn lookup, void *ud, struct diag *d);
/* env.storage.file: reads data.file_path (relative to the project directory) within one
** file's budget and sets data.values to its .env assignments (strings stamped with the
** file's path and line); a malformed line is an error at file:line. 0 / -1. */
int reg_load_env_file(struct val *data, const struct reg_opts *opts, struct reg_pool *pool,
                      struct diag *d);

/* ---- reg_kinds.c ---- */

/* The spec of a kind ({doc, fields, meta}), or NULL for a kind kinds.yaml does not know. */
const struct val *reg_kind_spec(const char *kind);

/* Called for every reference found while checking an entry; `allowed` is the refs list of
** the field spec (NULL: any kind); `path` names the field ("meta.server", "imports.json"). */
typedef void (*reg_ref_fn)(void *ud, const struct val *ref, const char *path,
                           const struct val *allowed);

struct reg_check {
  struct diag *d;
  const char *id, *ns;   /* the entry being checked */
  const char *file;      /* its registry file (shown path) and line, for values without one */
  int line;
  reg_ref_fn on_ref;
  void *ud;
};

/* Checks data and meta of one entry against its kind spec: types, required fields, one_of;
** fills defaults (nested too); qualifies bare references with c->ns and reports each
** reference through c->on_ref. Problems go to c->d. Returns 0 / -1. */
int reg_check_entry(const struct val *spec, struct val *data, struct val *meta,
                    struct reg_check *c);

#endif
