/*
** val.h — an immutable tree of plain data (maps, lists, scalars) with source positions.
** It is what registry files (YAML, JSON, Lua tables) become, and what entry data is read from.
** Ownership: a tree is built once by the loader, then read-only; any thread may read it.
** Maps keep insertion order (key order in the file).
*/
#ifndef TASKHOST_VAL_H
#define TASKHOST_VAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct lua_State lua_State;

enum val_type { V_NULL, V_BOOL, V_INT, V_NUM, V_STR, V_LIST, V_MAP };

struct val {
  enum val_type type;
  int line;                  /* 1-based line in `file`, 0 if synthetic */
  const char *file;          /* file the value came from (shared string, not owned), or NULL */
  union {
    int b;                   /* V_BOOL */
    int64_t i;               /* V_INT */
    double n;                /* V_NUM */
    struct {                 /* V_STR */
      char *s;
      size_t len;
      const char *origin;    /* for strings inlined from file://: that file's path, else NULL */
    } str;
    struct {                 /* V_LIST, V_MAP: items[i]; keys[i] for maps (NULL for lists) */
      struct val **items;
      char **keys;
      size_t n, cap;
    } agg;
  } u;
};

/* Construction (used by the loader and by tests). */
struct val *val_new(enum val_type t, const char *file, int line);
struct val *val_new_str(const char *s, size_t len, const char *file, int line);
void val_list_push(struct val *list, struct val *item);
void val_map_set(struct val *map, const char *key, struct val *item);  /* replaces an existing key */
struct val *val_copy(const struct val *v);
void val_free(struct val *v);

/* Reading. All accessors accept NULL and return the fallback. */
const struct val *val_get(const struct val *map, const char *key);
const struct val *val_path(const struct val *v, const char *dotted);   /* "lifecycle.auto_start" */
const char *val_str(const struct val *v, const char *fallback);         /* only for V_STR */
int64_t val_int(const struct val *v, int64_t fallback);                 /* V_INT, integral V_NUM */
/* A scalar as text (strings as they are, numbers in decimal, true/false), malloc'd; NULL for
** null, lists and maps. */
char *val_scalar_text(const struct val *v);
/* 1 with *out = d when d is integral and within int64_t (NaN, ±inf and 2^63 are not), else 0. */
int val_num_as_int(double d, int64_t *out);
double val_num(const struct val *v, double fallback);                   /* V_INT or V_NUM */
int val_bool(const struct val *v, int fallback);                        /* V_BOOL */
/* A duration string ("300ms", "1m30s"; kinds.yaml rewrites integers as strings) in ns;
** fallback when v is missing, not a string or not a duration. */
int64_t val_duration_ns(const struct val *v, int64_t fallback);
/* A size: an integer of bytes or a string such as "64MB", "512KiB" (size_parse); fallback
** when v is missing or not a size. */
uint64_t val_size(const struct val *v, uint64_t fallback);
size_t val_len(const struct val *v);                                    /* items in list/map, else 0 */
const struct val *val_at(const struct val *v, size_t i);
const char *val_key_at(const struct val *v, size_t i);
const char *val_type_name(enum val_type t);
/* Deep equality of contents (types, scalars, strings, items; map keys in any order);
** where values came from (file, line) does not matter. NULL equals NULL only. */
int val_equal(const struct val *a, const struct val *b);

/* Pushes the value onto a Lua stack as plain data (maps → tables, lists → sequences). */
void val_push_lua(lua_State *L, const struct val *v);
/* Builds a tree from the Lua value at `idx`; NULL and a message in err on functions,
** userdata, cycles or non-string/non-integer keys. */
struct val *val_from_lua(lua_State *L, int idx, const char *file, char *err, size_t errlen);

/* Budgets of one conversion, checked while the tree is built (a DAG of shared subtables
** expands into a tree, so the Lua size says nothing): `nodes` values and `bytes` of strings
** and keys still allowed (counted down), `depth` levels of tables. */
struct val_limits {
  long nodes;
  size_t bytes;
  int depth;
};
/* val_from_lua within *lim (NULL: the defaults of val_from_lua). A budget that runs out is
** named in err ("... node budget ..."). */
struct val *val_from_lua_limited(lua_State *L, int idx, const char *file, struct val_limits *lim,
                                 char *err, size_t errlen);

#endif
