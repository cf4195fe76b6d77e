/*
** val.c — see val.h. Plain data trees: construction, deep copy, reading, and conversion
** to and from Lua values.
** Ownership: a node owns its children, its map keys and its string bytes; `file` and
** `u.str.origin` are borrowed (the registry generation owns those strings). A tree is
** mutated only by whoever builds it; once published, readers on any thread share it.
*/
#include "val.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FROM_LUA_MAX_DEPTH 100   /* deeper tables are refused rather than recursed into */

struct val *val_new(enum val_type t, const char *file, int line) {
  struct val *v = xcalloc(1, sizeof *v);
  v->type = t;
  v->file = file;
  v->line = line;
  return v;
}

struct val *val_new_str(const char *s, size_t len, const char *file, int line) {
  struct val *v = val_new(V_STR, file, line);
  v->u.str.s = xstrndup(s, len);
  v->u.str.len = len;
  return v;
}

static int is_agg(const struct val *v) { return v && (v->type == V_LIST || v->type == V_MAP); }

static void agg_grow(struct val *v) {
  if (v->u.agg.n < v->u.agg.cap) return;
  v->u.agg.cap = v->u.agg.cap ? v->u.agg.cap * 2 : 4;
  v->u.agg.items = xrealloc(v->u.agg.items, v->u.agg.cap * sizeof *v->u.agg.items);
  if (v->type == V_MAP) v->u.agg.keys = xrealloc(v->u.agg.keys, v->u.agg.cap * sizeof(char *));
}

void val_list_push(struct val *list, struct val *item) {
  agg_grow(list);
  list->u.agg.items[list->u.agg.n++] = item;
}

static long map_find(const struct val *map, const char *key) {
  for (size_t i = 0; i < map->u.agg.n; i++)
    if (strcmp(map->u.agg.keys[i], key) == 0) return (long)i;
  return -1;
}

void val_map_set(struct val *map, const char *key, struct val *item) {
  long i = map_find(map, key);
  if (i >= 0) {
    val_free(map->u.agg.items[i]);
    map->u.agg.items[i] = item;
    return;
  }
  agg_grow(map);
  map->u.agg.keys[map->u.agg.n] = xstrdup(key);
  map->u.agg.items[map->u.agg.n++] = item;
}

struct val *val_copy(const struct val *v) {
  if (!v) return NULL;
  struct val *c = val_new(v->type, v->file, v->line);
  if (v->type == V_STR) {
    c->u.str.s = xstrndup(v->u.str.s, v->u.str.len);
    c->u.str.len = v->u.str.len;
    c->u.str.origin = v->u.str.origin;
  } else if (v->type == V_LIST) {
    for (size_t i = 0; i < v->u.agg.n; i++) val_list_push(c, val_copy(v->u.agg.items[i]));
  } else if (v->type == V_MAP) {
    for (size_t i = 0; i < v->u.agg.n; i++) val_map_set(c, v->u.agg.keys[i], val_copy(v->u.agg.items[i]));
  } else {
    c->u = v->u;
  }
  return c;
}

void val_free(struct val *v) {
  if (!v) return;
  if (v->type == V_STR) free(v->u.str.s);
  if (is_agg(v)) {
    for (size_t i = 0; i < v->u.agg.n; i++) {
      val_free(v->u.agg.items[i]);
      if (v->u.agg.keys) free(v->u.agg.keys[i]);
    }
    free(v->u.agg.items);
    free(v->u.agg.keys);
  }
  free(v);
}

/* ---- reading ---- */

const struct val *val_get(const struct val *map, const char *key) {
  if (!map || map->type != V_MAP || !key) return NULL;
  long i = map_find(map, key);
  return i < 0 ? NULL : map->u.agg.items[i];
}

/* One step of a dotted path: a map key, or a decimal index into a list. */
static const struct val *step(const struct val *v, const char *seg, size_t n) {
  if (v && v->type == V_LIST) {
    char *end;
    char tmp[24];
    if (n == 0 || n >= sizeof tmp) return NULL;
    memcpy(tmp, seg, n);
    tmp[n] = '\0';
    unsigned long i = strtoul(tmp, &end, 10);
    return (*end || tmp[0] == '-') ? NULL : val_at(v, i);
  }
  if (!v || v->type != V_MAP) return NULL;
  for (size_t i = 0; i < v->u.agg.n; i++)
    if (strlen(v->u.agg.keys[i]) == n && memcmp(v->u.agg.keys[i], seg, n) == 0)
      return v->u.agg.items[i];
  return NULL;
}

/*
** Keys may themselves contain dots ("cors.allow.origins" in router options), so each level
** tries the shortest key first and backtracks to longer ones when the rest does not resolve.
*/
const struct val *val_path(const struct val *v, const char *dotted) {
  if (!v || !dotted) return NULL;
  if (!*dotted) return v;
  for (const char *dot = strchr(dotted, '.');; dot = strchr(dot + 1, '.')) {
    size_t n = dot ? (size_t)(dot - dotted) : strlen(dotted);
    const struct val *child = step(v, dotted, n);
    if (child) {
      const struct val *r = dot ? val_path(child, dot + 1) : child;
      if (r) return r;
    }
    if (!dot) return NULL;
  }
}

const char *val_str(const struct val *v, const char *fallback) {
  return v && v->type == V_STR ? v->u.str.s : fallback;
}

char *val_scalar_text(const struct val *v) {
  char tmp[64];
  if (!v) return NULL;
  switch (v->type) {
  case V_STR: return xstrdup(v->u.str.s);
  case V_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i); break;
  case V_NUM: snprintf(tmp, sizeof tmp, "%.17g", v->u.n); break;
  case V_BOOL: snprintf(tmp, sizeof tmp, "%s", v->u.b ? "true" : "false"); break;
  default: return NULL;
  }
  return xstrdup(tmp);
}

int val_num_as_int(double d, int64_t *out) {
  /* range first: converting a double outside int64_t is undefined behaviour */
  if (!(d >= -0x1p63 && d < 0x1p63) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

int64_t val_int(const struct val *v, int64_t fallback) {
  int64_t i;
  if (v && v->type == V_INT) return v->u.i;
  if (v && v->type == V_NUM && val_num_as_int(v->u.n, &i)) return i;
  return fallback;
}

double val_num(const struct val *v, double fallback) {
  if (v && v->type == V_INT) return (double)v->u.i;
  if (v && v->type == V_NUM) return v->u.n;
  return fallback;
}

int val_bool(const struct val *v, int fallback) { return v && v->type == V_BOOL ? v->u.b : fallback; }

size_t val_len(const struct val *v) { return is_agg(v) ? v->u.agg.n : 0; }

const struct val *val_at(const struct val *v, size_t i) {
  return is_agg(v) && i < v->u.agg.n ? v->u.agg.items[i] : NULL;
}

const char *val_key_at(const struct val *v, size_t i) {
  return v && v->type == V_MAP && i < v->u.agg.n ? v->u.agg.keys[i] : NULL;
}

const char *val_type_name(enum val_type t) {
  static const char *const names[] = {"null", "bool", "int", "number", "string", "list", "map"};
  return (unsigned)t < countof(names) ? names[t] : "?";
}

/* ---- Lua ---- */

void val_push_lua(lua_State *L, const struct val *v) {
  luaL_checkstack(L, 3, "value nested too deeply");
  if (!v) { lua_pushnil(L); return; }
  switch (v->type) {
  case V_NULL: lua_pushnil(L); break;
  case V_BOOL: lua_pushboolean(L, v->u.b); break;
  case V_INT: lua_pushinteger(L, (lua_Integer)v->u.i); break;
  case V_NUM: lua_pushnumber(L, v->u.n); break;
  case V_STR: lua_pushlstring(L, v->u.str.s, v->u.str.len); break;
  case V_LIST:
    lua_createtable(L, (int)v->u.agg.n, 0);
    for (size_t i = 0; i < v->u.agg.n; i++) {
      val_push_lua(L, v->u.agg.items[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case V_MAP:
    lua_createtable(L, 0, (int)v->u.agg.n);
    for (size_t i = 0; i < v->u.agg.n; i++) {
      val_push_lua(L, v->u.agg.items[i]);
      lua_setfield(L, -2, v->u.agg.keys[i]);
    }
    break;
  }
}

/* State of one val_from_lua call. `seen` is a stack index of a table holding the tables on
** the current path (a table reached again while still open is a cycle; shared subtables
** that are not ancestors are fine). `path` names the value being converted, for errors. */
struct from {
  lua_State *L;
  const char *file;
  int seen, depth;
  struct val_limits *lim;
  struct buf path;
  char *err;
  size_t errlen;
};

static struct val *fail(struct from *f, const char *what) {
  snprintf(f->err, f->errlen, "%s: %s", f->path.len ? f->path.data : "value", what);
  return NULL;
}

static struct val *convert(struct from *f, int idx);

/* Takes `nodes` values and `bytes` bytes from the budget; 0, or -1 with err set. */
static int charge(struct from *f, long nodes, size_t bytes) {
  if (!f->lim) return 0;
  char what[96];
  if (nodes > f->lim->nodes) snprintf(what, sizeof what, "node budget exceeded (too many values)");
  else if (bytes > f->lim->bytes) snprintf(what, sizeof what, "byte budget exceeded (too much text)");
  else {
    f->lim->nodes -= nodes;
    f->lim->bytes -= bytes;
    return 0;
  }
  fail(f, what);
  return -1;
}

/* Counts the keys of t into *n; a table is a sequence when they are exactly 1..n (n > 0). */
static int is_sequence(lua_State *L, int t, size_t *n) {
  size_t count = 0;
  lua_Integer max = 0;
  int ints = 1;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    count++;
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) ints = 0;
    else if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
  }
  *n = count;
  return ints && count > 0 && (size_t)max == count;
}

static struct val *convert_list(struct from *f, int t, size_t n) {
  struct val *v = val_new(V_LIST, f->file, 0);
  size_t mark = f->path.len;
  for (size_t i = 1; i <= n; i++) {
    buf_printf(&f->path, "[%zu]", i);
    lua_rawgeti(f->L, t, (lua_Integer)i);
    struct val *item = convert(f, -1);
    lua_pop(f->L, 1);
    f->path.len = mark;
    f->path.data[mark] = '\0';
    if (!item) { val_free(v); return NULL; }
    val_list_push(v, item);
  }
  return v;
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the keys of table t as strings (integer keys in decimal). NULL on a bad key. */
static char **map_keys(struct from *f, int t, size_t n) {
  char **keys = xcalloc(n + 1, sizeof *keys);
  size_t k = 0;
  lua_pushnil(f->L);
  while (lua_next(f->L, t)) {
    lua_pop(f->L, 1);
    size_t len;
    if (lua_type(f->L, -1) == LUA_TSTRING) {
      const char *s = lua_tolstring(f->L, -1, &len);
      if (strlen(s) == len) { keys[k++] = xstrdup(s); continue; }
    } else if (lua_isinteger(f->L, -1)) {
      char tmp[32];
      snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(f->L, -1));
      keys[k++] = xstrdup(tmp);
      continue;
    }
    lua_pop(f->L, 1);
    for (size_t i = 0; i < k; i++) free(keys[i]);
    free(keys);
    return NULL;
  }
  qsort(keys, k, sizeof *keys, cmp_keys);
  return keys;
}

/* Pushes t[key], where key came from map_keys: a string key, else the integer it spells. */
static void get_field(lua_State *L, int t, const char *key) {
  lua_pushstring(L, key);
  if (lua_rawget(L, t) != LUA_TNIL) return;
  lua_pop(L, 1);
  lua_rawgeti(L, t, (lua_Integer)strtoll(key, NULL, 10));
}

static struct val *convert_map(struct from *f, int t, size_t n) {
  char **keys = map_keys(f, t, n);
  if (!keys) return fail(f, "table keys must be strings or integers");
  struct val *v = val_new(V_MAP, f->file, 0);
  size_t mark = f->path.len;
  for (size_t i = 0; i < n && v; i++) {
    if (charge(f, 0, strlen(keys[i])) < 0) { val_free(v); v = NULL; break; }
    if (i > 0 && strcmp(keys[i], keys[i - 1]) == 0) {
      buf_printf(&f->path, ".%s", keys[i]);
      val_free(v);
      v = fail(f, "key given both as a string and as an integer");
      break;
    }
    buf_printf(&f->path, mark ? ".%s" : "%s", keys[i]);
    get_field(f->L, t, keys[i]);
    struct val *item = convert(f, -1);
    lua_pop(f->L, 1);
    f->path.len = mark;
    f->path.data[mark] = '\0';
    if (item) val_map_set(v, keys[i], item);
    else { val_free(v); v = NULL; }
  }
  for (size_t i = 0; i < n; i++) free(keys[i]);
  free(keys);
  return v;
}

static struct val *convert_table(struct from *f, int t) {
  if (f->lim && f->depth >= f->lim->depth) return fail(f, "depth budget exceeded (tables nested too deeply)");
  if (f->depth >= FROM_LUA_MAX_DEPTH) return fail(f, "tables nested too deeply");
  lua_pushvalue(f->L, t);
  if (lua_rawget(f->L, f->seen) != LUA_TNIL) { lua_pop(f->L, 1); return fail(f, "table contains a cycle"); }
  lua_pop(f->L, 1);
  lua_pushvalue(f->L, t);
  lua_pushboolean(f->L, 1);
  lua_rawset(f->L, f->seen);
  f->depth++;
  size_t n;
  int seq = is_sequence(f->L, t, &n);
  struct val *v = charge(f, (long)n, 0) < 0 ? NULL : seq ? convert_list(f, t, n) : convert_map(f, t, n);
  f->depth--;
  lua_pushvalue(f->L, t);
  lua_pushnil(f->L);
  lua_rawset(f->L, f->seen);
  return v;
}

static struct val *convert(struct from *f, int idx) {
  lua_State *L = f->L;
  int t = lua_absindex(L, idx);
  if (!lua_checkstack(L, 6)) return fail(f, "Lua stack exhausted");
  switch (lua_type(L, t)) {
  case LUA_TNIL: return val_new(V_NULL, f->file, 0);
  case LUA_TBOOLEAN: {
    struct val *v = val_new(V_BOOL, f->file, 0);
    v->u.b = lua_toboolean(L, t);
    return v;
  }
  case LUA_TNUMBER: {
    struct val *v = val_new(lua_isinteger(L, t) ? V_INT : V_NUM, f->file, 0);
    if (v->type == V_INT) v->u.i = lua_tointeger(L, t);
    else v->u.n = lua_tonumber(L, t);
    return v;
  }
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, t, &len);
    return charge(f, 0, len) < 0 ? NULL : val_new_str(s, len, f->file, 0);
  }
  case LUA_TTABLE: return convert_table(f, t);
  default: {
    char what[64];
    snprintf(what, sizeof what, "a %s cannot be converted to data", luaL_typename(L, t));
    return fail(f, what);
  }
  }
}

struct val *val_from_lua(lua_State *L, int idx, const char *file, char *err, size_t errlen) {
  return val_from_lua_limited(L, idx, file, NULL, err, errlen);
}

struct val *val_from_lua_limited(lua_State *L, int idx, const char *file, struct val_limits *lim,
                                 char *err, size_t errlen) {
  struct from f = {.L = L, .file = file, .lim = lim, .err = err, .errlen = errlen};
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 4, NULL);
  lua_newtable(L);
  f.seen = lua_gettop(L);
  buf_init(&f.path);
  buf_reserve(&f.path, 64);
  struct val *v = convert(&f, idx);
  buf_free(&f.path);
  lua_pop(L, 1);
  return v;
}

int val_equal(const struct val *a, const struct val *b) {
  if (!a || !b) return a == b;
  if (a->type != b->type) {
    if ((a->type == V_INT || a->type == V_NUM) && (b->type == V_INT || b->type == V_NUM))
      return val_num(a, 0) == val_num(b, 0);
    return 0;
  }
  switch (a->type) {
  case V_NULL: return 1;
  case V_BOOL: return a->u.b == b->u.b;
  case V_INT: return a->u.i == b->u.i;
  case V_NUM: return a->u.n == b->u.n;
  case V_STR: return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
  case V_LIST:
    if (a->u.agg.n != b->u.agg.n) return 0;
    for (size_t i = 0; i < a->u.agg.n; i++)
      if (!val_equal(a->u.agg.items[i], b->u.agg.items[i])) return 0;
    return 1;
  case V_MAP:
    if (a->u.agg.n != b->u.agg.n) return 0;
    for (size_t i = 0; i < a->u.agg.n; i++)
      if (!val_equal(a->u.agg.items[i], val_get(b, a->u.agg.keys[i]))) return 0;
    return 1;
  }
  return 0;
}

uint64_t val_size(const struct val *v, uint64_t fallback) {
  uint64_t n;
  if (v && v->type == V_INT) return v->u.i >= 0 ? (uint64_t)v->u.i : fallback;
  const char *s = val_str(v, NULL);
  return s && size_parse(s, &n) == 0 ? n : fallback;
}

int64_t val_duration_ns(const struct val *v, int64_t fallback) {
  const char *s = val_str(v, NULL);
  int64_t ns;
  return s && duration_parse(s, &ns) == 0 ? ns : fallback;
}
