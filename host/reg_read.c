/*
** reg_read.c — registry file readers: YAML and JSON through libyaml's document API (aliases
** resolved, each node's line kept, plain scalars typed like YAML 1.2's core schema), and
** *.registry.lua chunks run in a throw-away sandboxed Lua state (base, string, table, math
** only; instruction and memory limits, no __gc) whose returned table becomes the tree.
** Reentrant: every call owns its parser or lua_State; runs on the loading thread.
*/
#include "reg_internal.h"
#include "util.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_MAX_DEPTH 64         /* also stops self-referencing aliases (&a [*a]) */
#define YAML_MAX_NODES 1000000    /* values built per file: stops alias bombs */
#define LUA_MEM_LIMIT (64u << 20) /* bytes a registry chunk may allocate */
#define LUA_HOOK_EVERY 1000       /* instructions between hook calls */
#define LUA_MAX_TICKS 10000       /* hook calls before the chunk is stopped (10M instructions) */

/* ---- plain scalar typing ---- */

static int eq_any(const char *s, const char *const *words) {
  for (; *words; words++)
    if (strcmp(s, *words) == 0) return 1;
  return 0;
}

static int span(const char *s, const char *set) { return (int)strspn(s, set); }

static int parse_int(const char *s, int64_t *out) {
  int base = 10;
  const char *digits = s + (*s == '-' || *s == '+');
  const char *set = "0123456789";
  if (strncmp(s, "0x", 2) == 0) { base = 16; digits = s + 2; set = "0123456789abcdefABCDEF"; }
  else if (strncmp(s, "0o", 2) == 0) { base = 8; digits = s + 2; set = "01234567"; }
  if (!*digits || digits[span(digits, set)]) return -1;
  errno = 0;
  long long v = base == 10 ? strtoll(s, NULL, 10) : strtoll(digits, NULL, base);
  if (errno) return -1;
  *out = v;
  return 0;
}

/* [-+]? ( \.[0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?  or .inf / .nan forms */
static int parse_float(const char *s, double *out) {
  static const char *const inf[] = {".inf", ".Inf", ".INF", NULL};
  static const char *const nan_[] = {".nan", ".NaN", ".NAN", NULL};
  const char *p = s + (*s == '-' || *s == '+');
  if (eq_any(p, inf)) { *out = *s == '-' ? -INFINITY : INFINITY; return 0; }
  if (eq_any(s, nan_)) { *out = NAN; return 0; }
  int whole = span(p, "0123456789");
  p += whole;
  int frac = 0;
  if (*p == '.') { frac = span(p + 1, "0123456789"); p += 1 + frac; }
  else if (!whole) return -1;
  if (!whole && !frac) return -1;
  if (*p == 'e' || *p == 'E') {
    p += 1 + (p[1] == '-' || p[1] == '+');
    int exp = span(p, "0123456789");
    if (!exp) return -1;
    p += exp;
  }
  if (*p) return -1;
  *out = strtod(s, NULL);
  return 0;
}

struct val *reg_scalar(const char *s, size_t len, const char *file, int line) {
  static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", NULL};
  static const char *const falses[] = {"false", "False", "FALSE", NULL};
  char tmp[64];
  if (len >= sizeof tmp || memchr(s, '\0', len)) return val_new_str(s, len, file, line);
  memcpy(tmp, s, len);
  tmp[len] = '\0';
  struct val *v;
  if (len == 0 || eq_any(tmp, nulls)) return val_new(V_NULL, file, line);
  if (eq_any(tmp, trues) || eq_any(tmp, falses)) {
    v = val_new(V_BOOL, file, line);
    v->u.b = eq_any(tmp, trues);
    return v;
  }
  int64_t i;
  double d;
  if (parse_int(tmp, &i) == 0) { v = val_new(V_INT, file, line); v->u.i = i; return v; }
  if (parse_float(tmp, &d) == 0) { v = val_new(V_NUM, file, line); v->u.n = d; return v; }
  return val_new_str(s, len, file, line);
}

/* ---- YAML / JSON ---- */

struct yctx {
  yaml_document_t *doc;
  const char *file;
  long budget;     /* nodes still allowed */
  int *line;
  char *err;
  size_t errlen;
};

static struct val *yfail(struct yctx *c, const yaml_node_t *n, const char *fmt, const char *arg) {
  *c->line = n ? (int)n->start_mark.line + 1 : 0;
  snprintf(c->err, c->errlen, fmt, arg);
  return NULL;
}

static int node_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static struct val *ynode(struct yctx *c, yaml_node_t *n, int depth);

static struct val *yscalar(struct yctx *c, yaml_node_t *n) {
  const char *s = (const char *)n->data.scalar.value;
  size_t len = n->data.scalar.length;
  if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) return reg_scalar(s, len, c->file, node_line(n));
  return val_new_str(s, len, c->file, node_line(n));
}

static struct val *ysequence(struct yctx *c, yaml_node_t *n, int depth) {
  struct val *v = val_new(V_LIST, c->file, node_line(n));
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    struct val *item = ynode(c, yaml_document_get_node(c->doc, *it), depth + 1);
    if (!item) { val_free(v); return NULL; }
    val_list_push(v, item);
  }
  return v;
}

/* `<<: *base` or `<<: [*a, *b]`: keys of the merged maps that the mapping lacks. */
static int ymerge(struct yctx *c, struct val *map, struct val *src, yaml_node_t *at) {
  if (src->type == V_LIST) {
    for (size_t i = 0; i < src->u.agg.n; i++)
      if (ymerge(c, map, src->u.agg.items[i], at) < 0) return -1;
    return 0;
  }
  if (src->type != V_MAP) { yfail(c, at, "%s", "merge key '<<' needs a map or a list of maps"); return -1; }
  for (size_t i = 0; i < src->u.agg.n; i++)
    if (!val_get(map, src->u.agg.keys[i]))
      val_map_set(map, src->u.agg.keys[i], val_copy(src->u.agg.items[i]));
  return 0;
}

static int ypair(struct yctx *c, struct val *map, struct val *merges, yaml_node_pair_t *p, int depth) {
  yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
  if (k->type != YAML_SCALAR_NODE) { yfail(c, k, "%s", "mapping keys must be scalars"); return -1; }
  const char *key = (const char *)k->data.scalar.value;
  struct val *item = ynode(c, yaml_document_get_node(c->doc, p->value), depth + 1);
  if (!item) return -1;
  if (k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(key, "<<") == 0) {
    val_list_push(merges, item);
    return 0;
  }
  if (val_get(map, key)) { val_free(item); yfail(c, k, "mapping key '%s' is already defined", key); return -1; }
  val_map_set(map, key, item);
  return 0;
}

static struct val *ymapping(struct yctx *c, yaml_node_t *n, int depth) {
  struct val *v = val_new(V_MAP, c->file, node_line(n));
  struct val *merges = val_new(V_LIST, c->file, node_line(n));
  int rc = 0;
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; rc == 0 && p < n->data.mapping.pairs.top; p++)
    rc = ypair(c, v, merges, p, depth);
  if (rc == 0) rc = ymerge(c, v, merges, n);
  val_free(merges);
  if (rc == 0) return v;
  val_free(v);
  return NULL;
}

static struct val *ynode(struct yctx *c, yaml_node_t *n, int depth) {
  if (depth > YAML_MAX_DEPTH) return yfail(c, n, "%s", "nested too deeply (recursive alias?)");
  if (--c->budget < 0) return yfail(c, n, "%s", "too many values (alias expansion?)");
  switch (n->type) {
  case YAML_SCALAR_NODE: return yscalar(c, n);
  case YAML_SEQUENCE_NODE: return ysequence(c, n, depth);
  case YAML_MAPPING_NODE: return ymapping(c, n, depth);
  default: return yfail(c, n, "%s", "unexpected YAML node");
  }
}

struct val *reg_read_yaml(const char *text, size_t len, const char *file, int *line, char *err,
                          size_t errlen) {
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    *line = (int)parser.problem_mark.line + 1;
    snprintf(err, errlen, "%s", parser.problem ? parser.problem : "YAML syntax error");
    yaml_parser_delete(&parser);
    return NULL;
  }
  struct yctx c = {&doc, file, YAML_MAX_NODES, line, err, errlen};
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  struct val *v = root ? ynode(&c, root, 0) : val_new(V_NULL, file, 1);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return v;
}

/* ---- *.registry.lua ---- */

/* Allocator state of a sandbox; also reached from the hook through lua_getallocf. */
struct sandbox {
  size_t used, limit;
  long ticks;
};

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct sandbox *sb = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    sb->used -= osize;
    free(ptr);
    return NULL;
  }
  if (nsize > osize && sb->used + (nsize - osize) > sb->limit) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) sb->used = sb->used - osize + nsize;
  return p;
}

static void sb_hook(lua_State *L, lua_Debug *ar) {
  void *ud;
  lua_getallocf(L, &ud);
  if (++((struct sandbox *)ud)->ticks > LUA_MAX_TICKS)
    luaL_error(L, "instruction limit exceeded (runaway registry file?)");
}

/* Message handler: make sure a string error starts with ":<line>: " (the chunk is named
** "=", so Lua's own positions look like that); other error values get a description. */
static int sb_msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    msg = lua_tostring(L, -1);
  }
  if (msg[0] == ':' && msg[1] >= '0' && msg[1] <= '9') return 1;
  lua_Debug ar;
  for (int lv = 0; lua_getstack(L, lv, &ar); lv++) {
    lua_getinfo(L, "l", &ar);
    if (ar.currentline > 0) { lua_pushfstring(L, ":%d: %s", ar.currentline, msg); return 1; }
  }
  return 1;
}

/* setmetatable refusing a metatable with __gc: Lua runs finalizers with hooks off (and some
** only in lua_close), so a finalizer would escape the instruction limit. */
static int sb_setmetatable(lua_State *L) {
  if (lua_istable(L, 2)) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "__gc metamethods are not allowed here");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Protected: opens the allowed libraries and strips what could touch the outside world. */
static int sb_open(lua_State *L) {
  static const luaL_Reg libs[] = {
    {LUA_GNAME, luaopen_base}, {LUA_STRLIBNAME, luaopen_string},
    {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
  };
  static const char *const banned[] = {"dofile", "loadfile", "load", "print", "collectgarbage",
                                       "require", "loadstring"};
  for (size_t i = 0; i < countof(libs); i++) {
    luaL_requiref(L, libs[i].name, libs[i].func, 1);
    lua_pop(L, 1);
  }
  for (size_t i = 0; i < countof(banned); i++) {
    lua_pushnil(L);
    lua_setglobal(L, banned[i]);
  }
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, sb_setmetatable, 1);
  lua_setglobal(L, "setmetatable");
  return 0;
}

/* Splits ":<line>: message" into *line and err. */
static void lua_message(const char *msg, int *line, char *err, size_t errlen) {
  char *end;
  *line = 0;
  if (msg[0] == ':') {
    long ln = strtol(msg + 1, &end, 10);
    if (end != msg + 1 && end[0] == ':' && end[1] == ' ') { *line = (int)ln; msg = end + 2; }
  }
  snprintf(err, errlen, "%s", msg);
}

static int sb_run(lua_State *L, const char *text, size_t len) {
  lua_pushcfunction(L, sb_msgh);
  lua_pushcfunction(L, sb_open);
  if (lua_pcall(L, 0, 0, 1) != LUA_OK) return -1;
  if (luaL_loadbufferx(L, text, len, "=", "t") != LUA_OK) return -1;
  lua_sethook(L, sb_hook, LUA_MASKCOUNT, LUA_HOOK_EVERY);
  int rc = lua_pcall(L, 0, 1, 1);
  lua_sethook(L, NULL, 0, 0);
  return rc == LUA_OK ? 0 : -1;
}

struct val *reg_read_lua(const char *text, size_t len, const char *file, int *line, char *err,
                         size_t errlen) {
  struct sandbox sb = {0, LUA_MEM_LIMIT, 0};
  lua_State *L = lua_newstate(sb_alloc, &sb);
  if (!L) { *line = 0; snprintf(err, errlen, "cannot create a Lua state"); return NULL; }
  struct val *v = NULL;
  *line = 0;
  if (sb_run(L, text, len) < 0) {
    const char *msg = lua_tostring(L, -1);
    lua_message(msg ? msg : "not enough memory", line, err, errlen);
  } else if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "a registry file must return a table (got %s)", luaL_typename(L, -1));
  } else {
    v = val_from_lua(L, -1, file, err, errlen);
  }
  lua_close(L);
  return v;
}
