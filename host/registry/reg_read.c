/*
** reg_read.c — registry file readers: YAML and JSON built from libyaml's event stream
** (aliases resolved, each node's line kept, plain scalars typed like YAML 1.2's core schema),
** and *.registry.lua chunks run in a throw-away sandboxed Lua state (base, string, table,
** math only; instruction, memory and wall-time budgets) whose returned table becomes the
** tree. Every reader builds within the budgets of reg_internal.h (reg_common.c counts them).
** Reentrant: every call owns its parser or lua_State; runs on the loading thread.
*/
#include "reg_internal.h"
#include "base/hmap.h"
#include "value/lpattern.h"
#include "base/util.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#define LUA_HOOK_EVERY 100        /* instructions between hook calls (budgets in reg_internal.h) */
#define LUA_BIG_ALLOC (64u << 10) /* allocations this large also check the clock and stop */

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

/* ---- budgets and files ---- */

/* Names the numbers after a node/byte/depth budget message. */
static void budget_note(char *err, size_t errlen) {
  size_t n = strlen(err);
  if (strstr(err, "budget exceeded") && n + 1 < errlen)
    snprintf(err + n, errlen - n, " [per-file budgets: %ld values, %u MiB of text, %d levels]",
             REG_MAX_NODES, REG_MAX_BYTES >> 20, REG_MAX_DEPTH);
}

/* ---- YAML / JSON ----
** Built from libyaml's event stream rather than its document API: the document loader has
** no depth limit and libyaml's scanner costs O(depth) per token, so 10^5 nested '[' would
** spin for minutes; here the reader stops at the first event past REG_MAX_DEPTH, before
** libyaml has looked much further. Aliases copy the anchored value (charged again). */

struct anchor {
  char *name;
  const struct val *v;   /* owned by the tree being built or by yctx.kept */
  long nodes;      /* what a copy costs */
  size_t bytes;
};

struct yctx {
  yaml_parser_t parser;
  yaml_event_t ev;          /* the current event (owned while has_ev) */
  int has_ev;
  const char *file;
  struct reg_budget *b;
  struct anchor *anchors;
  size_t nanchors, cap;
  struct hmap byname;       /* hash of an anchor's name → its latest index + 1 */
  struct val *kept;         /* merge sources, kept while anchors inside them may be named */
  int *line;
  char *err;
  size_t errlen;
};

static int ev_line(const struct yctx *c) { return (int)c->ev.start_mark.line + 1; }

static struct val *yfail(struct yctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static struct val *yfail(struct yctx *c, const char *fmt, ...) {
  *c->line = c->has_ev ? ev_line(c) : 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  return NULL;
}

static int ynext(struct yctx *c) {
  if (c->has_ev) yaml_event_delete(&c->ev);
  c->has_ev = 0;
  if (yaml_parser_parse(&c->parser, &c->ev)) return c->has_ev = 1, 0;
  *c->line = (int)c->parser.problem_mark.line + 1;
  snprintf(c->err, c->errlen, "%s", c->parser.problem ? c->parser.problem : "YAML syntax error");
  return -1;
}

static void val_cost(const struct val *v, long *nodes, size_t *bytes) {
  ++*nodes;
  if (v->type == V_STR) *bytes += v->u.str.len;
  for (size_t i = 0; i < val_len(v); i++) {
    if (v->type == V_MAP) *bytes += strlen(v->u.agg.keys[i]);
    val_cost(v->u.agg.items[i], nodes, bytes);
  }
}

static struct val *ytake(struct yctx *c, struct val *v, long nodes, size_t bytes) {
  if (reg_budget_take(c->b, nodes, bytes) == 0) return v;
  val_free(v);
  return yfail(c, "%s", nodes > c->b->nodes ? "node budget exceeded (too many values; alias expansion?)"
                                            : "byte budget exceeded (too much text; alias expansion?)");
}

/* Remembers an anchored value (takes `name`); it stays in the tree being built, or in
** c->kept, until the reader returns. */
static uint64_t name_hash(const char *s) {   /* FNV-1a, never 0 */
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h | 1;
}

static void yanchor(struct yctx *c, char *name, const struct val *v, long nodes, size_t bytes) {
  if (c->nanchors == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 8;
    c->anchors = xrealloc(c->anchors, c->cap * sizeof *c->anchors);
  }
  c->anchors[c->nanchors++] = (struct anchor){name, v, nodes, bytes};
  hmap_put(&c->byname, name_hash(name), (void *)(uintptr_t)c->nanchors);
}

/* The latest anchor of that name (a hash collision falls back to a scan). */
static const struct anchor *ylookup(struct yctx *c, const char *name) {
  size_t i = (uintptr_t)hmap_get(&c->byname, name_hash(name));
  if (i && strcmp(c->anchors[i - 1].name, name) == 0) return &c->anchors[i - 1];
  for (i = c->nanchors; i-- > 0;)
    if (strcmp(c->anchors[i].name, name) == 0) return &c->anchors[i];
  return NULL;
}

static struct val *yalias(struct yctx *c) {
  const char *name = (const char *)c->ev.data.alias.anchor;
  const struct anchor *a = ylookup(c, name);
  if (a) return ytake(c, val_copy(a->v), a->nodes, a->bytes);
  return yfail(c, "alias *%s is undefined or refers to a value that contains it", name);
}

static struct val *yscalar(struct yctx *c) {
  const char *s = (const char *)c->ev.data.scalar.value;
  size_t len = c->ev.data.scalar.length;
  int plain = c->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  struct val *v = plain ? reg_scalar(s, len, c->file, ev_line(c)) : val_new_str(s, len, c->file, ev_line(c));
  return ytake(c, v, 1, len);
}

static struct val *ynode(struct yctx *c, int depth);

static struct val *ysequence(struct yctx *c, int depth) {
  struct val *v = val_new(V_LIST, c->file, ev_line(c));
  while (ynext(c) == 0 && c->ev.type != YAML_SEQUENCE_END_EVENT) {
    struct val *item = ynode(c, depth + 1);
    if (!item) break;
    val_list_push(v, item);
  }
  if (c->has_ev && c->ev.type == YAML_SEQUENCE_END_EVENT) return v;
  val_free(v);
  return NULL;
}

/* `<<: *base` or `<<: [*a, *b]`: keys of the merged maps that the mapping lacks. */
static int ymerge(struct yctx *c, struct val *map, const struct val *src) {
  if (src->type == V_LIST) {
    for (size_t i = 0; i < src->u.agg.n; i++)
      if (ymerge(c, map, src->u.agg.items[i]) < 0) return -1;
    return 0;
  }
  if (src->type != V_MAP) { yfail(c, "%s", "merge key '<<' needs a map or a list of maps"); return -1; }
  for (size_t i = 0; i < src->u.agg.n; i++) {
    if (val_get(map, src->u.agg.keys[i])) continue;
    long n = 0;
    size_t bytes = strlen(src->u.agg.keys[i]);
    val_cost(src->u.agg.items[i], &n, &bytes);
    struct val *item = ytake(c, val_copy(src->u.agg.items[i]), n, bytes);
    if (!item) return -1;
    val_map_set(map, src->u.agg.keys[i], item);
  }
  return 0;
}

/* One key/value pair; the current event is the key's. */
static int ypair(struct yctx *c, struct val *map, struct val *merges, int depth) {
  if (c->ev.type != YAML_SCALAR_EVENT) {
    yfail(c, "%s", "mapping keys must be scalars (not aliases)");
    return -1;
  }
  char *key = xstrdup((const char *)c->ev.data.scalar.value);
  int merge = c->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(key, "<<") == 0;
  yaml_mark_t at = c->ev.start_mark;
  struct val *item = NULL;
  if (reg_budget_take(c->b, 0, strlen(key)) < 0) yfail(c, "%s", "byte budget exceeded (too much text)");
  else if (ynext(c) == 0) item = ynode(c, depth + 1);
  int rc = item ? 0 : -1;
  if (item && merge) val_list_push(merges, item);
  else if (item && val_get(map, key)) {
    val_free(item);
    c->ev.start_mark = at;
    yfail(c, "mapping key '%s' is already defined", key);
    rc = -1;
  } else if (item) val_map_set(map, key, item);
  free(key);
  return rc;
}

static struct val *ymapping(struct yctx *c, int depth) {
  struct val *v = val_new(V_MAP, c->file, ev_line(c));
  struct val *merges = val_new(V_LIST, c->file, ev_line(c));
  int rc = 0;
  while (rc == 0 && (rc = ynext(c)) == 0 && c->ev.type != YAML_MAPPING_END_EVENT)
    rc = ypair(c, v, merges, depth);
  if (rc == 0) rc = ymerge(c, v, merges);
  val_list_push(c->kept, merges);
  if (rc == 0) return v;
  val_free(v);
  return NULL;
}

static struct val *ycollection(struct yctx *c, int depth) {
  if (depth >= REG_MAX_DEPTH) return yfail(c, "%s", "depth budget exceeded (nested too deeply)");
  if (reg_budget_take(c->b, 1, 0) < 0) return yfail(c, "%s", "node budget exceeded (too many values)");
  return c->ev.type == YAML_SEQUENCE_START_EVENT ? ysequence(c, depth) : ymapping(c, depth);
}

/* Builds the node whose first event is current; on return the current event is its last. */
static struct val *ynode(struct yctx *c, int depth) {
  const yaml_char_t *anchor = NULL;
  switch (c->ev.type) {
  case YAML_ALIAS_EVENT: return yalias(c);
  case YAML_SCALAR_EVENT: anchor = c->ev.data.scalar.anchor; break;
  case YAML_SEQUENCE_START_EVENT: anchor = c->ev.data.sequence_start.anchor; break;
  case YAML_MAPPING_START_EVENT: anchor = c->ev.data.mapping_start.anchor; break;
  default: return yfail(c, "%s", "unexpected YAML event");
  }
  char *name = anchor ? xstrdup((const char *)anchor) : NULL;   /* the event goes away */
  long nodes = c->b->nodes;
  size_t bytes = c->b->bytes;
  struct val *v = c->ev.type == YAML_SCALAR_EVENT ? yscalar(c) : ycollection(c, depth);
  if (v && name) yanchor(c, name, v, nodes - c->b->nodes, bytes - c->b->bytes);
  else free(name);
  return v;
}

/* The first document's root (a null value for an empty stream). */
static struct val *ydocument(struct yctx *c) {
  while (ynext(c) == 0) {
    if (c->ev.type == YAML_STREAM_END_EVENT) return val_new(V_NULL, c->file, 1);
    if (c->ev.type == YAML_STREAM_START_EVENT || c->ev.type == YAML_DOCUMENT_START_EVENT) continue;
    struct val *root = ynode(c, 0);
    if (root && ynext(c) == 0 && c->ev.type == YAML_DOCUMENT_END_EVENT) return root;
    val_free(root);   /* (anything but the document's end after the root was a syntax error) */
    return NULL;
  }
  return NULL;
}

struct val *reg_read_yaml(const char *text, size_t len, const char *file, struct reg_budget *b,
                          int *line, char *err, size_t errlen) {
  struct yctx c = {.file = file, .b = b, .line = line, .err = err, .errlen = errlen};
  c.kept = val_new(V_LIST, file, 0);
  hmap_init(&c.byname);
  *line = 0;
  yaml_parser_initialize(&c.parser);
  yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
  struct val *v = ydocument(&c);
  if (!v) budget_note(err, errlen);
  if (c.has_ev) yaml_event_delete(&c.ev);
  yaml_parser_delete(&c.parser);
  for (size_t i = 0; i < c.nanchors; i++) free(c.anchors[i].name);
  free(c.anchors);
  hmap_free(&c.byname);
  val_free(c.kept);
  return v;
}

/* ---- *.registry.lua ---- */

/* The budgets of one sandbox; the allocator and the hook share it (lua_getallocf). Once a
** budget trips it stays tripped: the allocator refuses every allocation that grows and the
** hook raises on every following instruction, so a pcall in the chunk that catches the
** first error cannot carry on; the first trip is what gets reported. */
enum sb_trip { SB_OK, SB_MEM, SB_INSNS, SB_WALL, SB_CALL, SB_STOP, SB_DONE /* chunk over: no more Lua */ };

struct sandbox {
  lua_State *L;
  size_t used, limit;
  long ticks;
  int64_t deadline_ns;          /* CLOCK_MONOTONIC */
  enum sb_trip trip;
  int trip_line;                /* where the chunk was when it tripped (0: unknown) */
  int ret_line;                 /* the main chunk's return statement */
  const struct reg_budget *b;
};

static void sb_hook(lua_State *L, lua_Debug *ar);

/* From now on every instruction calls the hook, which raises. */
static void sb_trip(struct sandbox *sb, enum sb_trip why) {
  if (sb->trip == SB_OK) sb->trip = why;
  lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
}

/* The line the innermost Lua function is at. Only reads the call stack (no allocation), so
** the allocator may call it when it refuses: a memory error skips the message handler. */
static int sb_where(lua_State *L) {
  lua_Debug ar;
  for (int lv = 0; lua_getstack(L, lv, &ar); lv++)
    if (lua_getinfo(L, "l", &ar) && ar.currentline > 0) return ar.currentline;
  return 0;
}

/* Which budget, if any, is over now; `tick`: one more hook period of instructions. */
static enum sb_trip sb_check(struct sandbox *sb, int tick) {
  if (sb->trip != SB_OK) return sb->trip;
  if (tick && ++sb->ticks > REG_LUA_INSNS / LUA_HOOK_EVERY) return SB_INSNS;
  if (clock_mono_ns() > sb->deadline_ns) return SB_WALL;
  if (sb->b->stop && sb->b->stop(sb->b->stop_ud)) return SB_STOP;
  return SB_OK;
}

/* May the state grow by `grow` bytes? Tripped: never. After the chunk (SB_DONE) only the
** conversion allocates (the key strings it pushes, bounded by the byte budget): always, so
** that no error can be raised outside a pcall. Big allocations are where C functions
** (string.rep, table.concat) spend their time between hook calls: they check the clock and
** the stop predicate too. */
static enum sb_trip alloc_verdict(struct sandbox *sb, size_t grow) {
  if (sb->trip == SB_DONE) return SB_OK;
  if (sb->trip != SB_OK) return sb->trip;
  if (sb->used + grow > sb->limit) return SB_MEM;
  return sb->L && grow >= LUA_BIG_ALLOC ? sb_check(sb, 0) : SB_OK;
}

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct sandbox *sb = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    sb->used -= osize;
    free(ptr);
    return NULL;
  }
  enum sb_trip t = nsize > osize ? alloc_verdict(sb, nsize - osize) : SB_OK;
  if (t != SB_OK) {
    if (sb->L && sb->trip == SB_OK) sb->trip_line = sb_where(sb->L);
    if (sb->L) sb_trip(sb, t);
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p) sb->used = sb->used - osize + nsize;
  return p;
}

static void sb_hook(lua_State *L, lua_Debug *ar) {
  void *ud;
  lua_getallocf(L, &ud);
  struct sandbox *sb = ud;
  lua_Debug up;
  if (ar->event == LUA_HOOKRET) {   /* remembers where the main chunk (level 0, nothing above) returns */
    if (!lua_getstack(L, 1, &up) && lua_getinfo(L, "l", ar)) sb->ret_line = ar->currentline;
    return;
  }
  enum sb_trip t = sb_check(sb, 1);
  if (t == SB_OK) return;
  if (!sb->trip_line && lua_getinfo(L, "l", ar)) sb->trip_line = ar->currentline;
  sb_trip(sb, t);
  lua_pushliteral(L, "registry budget exceeded");   /* if even that fails, a memory error */
  lua_error(L);
}

static void sb_budget_message(const struct sandbox *sb, char *err, size_t errlen) {
  switch (sb->trip) {
  case SB_MEM:
    snprintf(err, errlen, "memory budget exceeded (%u MiB for a registry file)", REG_LUA_MEM >> 20);
    break;
  case SB_INSNS:
    snprintf(err, errlen, "instruction budget exceeded (%ld instructions for a registry file; runaway loop?)",
             REG_LUA_INSNS);
    break;
  case SB_WALL:
    snprintf(err, errlen, "wall-time budget exceeded (%d ms of registry Lua per load)", REG_LUA_WALL_MS);
    break;
  case SB_CALL:
    snprintf(err, errlen, "call budget exceeded (a string.rep or table.move call of more than "
             "%.0e estimated steps)", REG_LUA_CALL_STEPS);
    break;
  case SB_STOP: snprintf(err, errlen, "interrupted while loading"); break;
  case SB_OK: case SB_DONE: break;
  }
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

/* setmetatable without __gc: Lua runs finalizers with hooks off, so a finalizer would be
** code no budget could stop. (A __gc added to the metatable later does not count in 5.4.) */
static int sb_setmetatable(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE && (lua_pushliteral(L, "__gc"), lua_rawget(L, 2)) != LUA_TNIL)
    return luaL_error(L, "__gc metamethods are not allowed in a registry file");
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* C functions one call of which could outlast every budget (the hook runs only between Lua
** instructions, and these loop without allocating) are wrapped: their arguments are
** checked against REG_LUA_CALL_STEPS first. (String patterns need no such estimate: their
** matcher, lpattern.c, polls the budgets while it backtracks; see sb_pattern_guard.) */
/* Refuses the call and trips the sandbox (a pcall around the call does not help). */
static void refuse_call(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  struct sandbox *sb = ud;
  if (sb->trip == SB_OK) sb->trip_line = sb_where(L);
  sb_trip(sb, SB_CALL);
  luaL_error(L, "call budget exceeded");
}

static void check_rep(lua_State *L) {
  if ((double)luaL_checkinteger(L, 2) > REG_LUA_CALL_STEPS / 16) refuse_call(L);
}

static void check_move(lua_State *L) {
  lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
  if (e >= f && (double)e - (double)f > REG_LUA_CALL_STEPS / 16) refuse_call(L);
}

static const struct guard {
  const char *lib, *name;
  void (*check)(lua_State *L);
} guards[] = {
  {"string", "rep", check_rep}, {"table", "move", check_move},
};

static int sb_guarded(lua_State *L) {
  const struct guard *g = lua_touserdata(L, lua_upvalueindex(2));
  g->check(L);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

static void sb_guard_all(lua_State *L) {
  for (size_t i = 0; i < countof(guards); i++) {
    lua_getglobal(L, guards[i].lib);
    lua_getfield(L, -1, guards[i].name);
    lua_pushlightuserdata(L, (void *)&guards[i]);
    lua_pushcclosure(L, sb_guarded, 2);
    lua_setfield(L, -2, guards[i].name);
    lua_pop(L, 1);
  }
}

/* The pattern functions are lpattern.c's: while one backtracks, the wall-time budget and
** the stop predicate are checked as the hook checks them (a trip raises as the hook does),
** and no call may take more than REG_LUA_CALL_STEPS steps (there is no process to ask). */
static void sb_pattern_poll(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  struct sandbox *sb = ud;
  enum sb_trip t = sb_check(sb, 0);
  if (t == SB_OK) return;
  if (!sb->trip_line) sb->trip_line = sb_where(L);
  sb_trip(sb, t);
  luaL_error(L, "registry budget exceeded");
}

static const struct lpattern_guard sb_pattern_guard = {sb_pattern_poll, (long)REG_LUA_CALL_STEPS};

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
  lua_getglobal(L, LUA_STRLIBNAME);
  lpattern_install(L, &sb_pattern_guard);
  lua_pop(L, 1);
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, sb_setmetatable, 1);
  lua_setglobal(L, "setmetatable");
  sb_guard_all(L);
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
  lua_sethook(L, sb_hook, LUA_MASKCOUNT | LUA_MASKRET, LUA_HOOK_EVERY);
  return lua_pcall(L, 0, 1, 1) == LUA_OK ? 0 : -1;
}

/* After the chunk no Lua code may run again: any (there is no __gc, see sb_setmetatable)
** would raise at its first instruction. The collector is stopped: nothing it frees matters
** before lua_close, and the conversion's allocations are not refused (alloc_verdict). */
static void sb_finish(struct sandbox *sb) {
  lua_gc(sb->L, LUA_GCSTOP);
  sb_trip(sb, SB_DONE);
}

/* The returned table as a tree, within the file's node/byte/depth budget. */
static struct val *sb_convert(struct sandbox *sb, struct reg_budget *b, const char *file, int *line,
                              char *err, size_t errlen) {
  struct val_limits lim = {b->nodes, b->bytes, REG_MAX_DEPTH};
  struct val *v = val_from_lua_limited(sb->L, -1, file, &lim, err, errlen);
  b->nodes = lim.nodes;
  b->bytes = lim.bytes;
  if (!v) *line = sb->ret_line;
  if (!v) budget_note(err, errlen);
  return v;
}

struct val *reg_read_lua(const char *text, size_t len, const char *file, struct reg_budget *b,
                         int *line, char *err, size_t errlen) {
  struct sandbox sb = {.limit = REG_LUA_MEM, .b = b};
  sb.deadline_ns = b->lua_deadline_ns;
  lua_State *L = lua_newstate(sb_alloc, &sb);
  if (!L) { *line = 0; snprintf(err, errlen, "cannot create a Lua state"); return NULL; }
  sb.L = L;
  struct val *v = NULL;
  *line = 0;
  int rc = sb_run(L, text, len);
  enum sb_trip tripped = sb.trip;
  sb_finish(&sb);
  if (rc < 0 || tripped != SB_OK) {
    const char *msg = rc < 0 ? lua_tostring(L, -1) : NULL;
    lua_message(msg ? msg : "not enough memory", line, err, errlen);
    if (tripped != SB_OK) {
      *line = sb.trip_line ? sb.trip_line : *line;
      sb_budget_message(&sb, err, errlen);
    }
  } else if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "a registry file must return a table (got %s)", luaL_typename(L, -1));
  } else {
    v = sb_convert(&sb, b, file, line, err, errlen);
  }
  lua_close(L);
  return v;
}

int registry_yaml_version(char *buf, size_t n) {
  snprintf(buf, n, "%s", yaml_get_version_string());
  return 0;
}
