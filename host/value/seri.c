/*
** seri.c — see seri.h. Copies Lua values between independent lua_States through one flat
** byte buffer; this is the message hot path, so packing scalars and small tables allocates
** nothing in Lua and does no table lookups (cycle detection walks a C array holding the
** chain of tables currently being packed: O(depth) per table).
**
** Encoding (one tag byte per value, native byte order — buffers never leave the process):
**   0x00 nil   0x01 false   0x02 true
**   0x03 integer: zigzag LEB128 varint          0x40+v integer v in 0..63
**   0x04 float: 8 raw bytes (keeps -0.0, NaN)
**   0x05 string: varint length, bytes           0x80+n string of n < 128 bytes, bytes
**   0x06 table: varint narr, 4-byte nhash, narr values (t[1..narr]), nhash key/value pairs
**   0x07 error object: five values — message, kind, retryable, details, stack
** Tables and error objects each count one level against the depth limit (SERI_MAX_DEPTH),
** both when packing and when unpacking, so anything packed can be unpacked.
**
** On failure seri_pack leaves both the Lua stack and `out` as they were (nothing appended).
** Error messages name the argument by its absolute stack index (in a C function, the Lua
** argument number) and the field path, e.g. "cannot send a function (argument 3, field
** 'a.cb')"; integer keys print as "[n]", an error object's details as ":details()".
**
** Threads: reentrant, no globals; each call touches only the given state and buffer.
*/
#include "seri.h"
#include "errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SERI_MAX_DEPTH 128

enum {
  T_NIL = 0x00, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_ERROR,
  T_SMALLINT = 0x40,     /* 0x40..0x7f */
  T_SHORTSTR = 0x80,     /* 0x80..0xff */
};
#define SMALLINT_MAX 63
#define SHORTSTR_MAX 127

/* ---- packing ----------------------------------------------------------- */

/* One container on the path being packed. key > 0: stack index of the lua_next key;
** key == 0: array slot `i`; key < 0: an error object's fields. */
struct frame {
  const void *tbl;
  int key;
  int in_key;            /* the key itself (not its value) is being packed */
  lua_Integer i;
};

struct packer {
  lua_State *L;
  struct buf *b;
  int arg, depth;
  char *err;
  size_t errlen;
  struct frame fr[SERI_MAX_DEPTH];
};

static unsigned char *room(struct buf *b, size_t n) {
  buf_reserve(b, n);
  return (unsigned char *)b->data + b->len;
}

static void put_byte(struct buf *b, unsigned char c) {
  *room(b, 1) = c;
  b->len++;
}

static size_t varint(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { p[n++] = (unsigned char)(v | 0x80); v >>= 7; }
  p[n++] = (unsigned char)v;
  return n;
}

static void put_int(struct buf *b, lua_Integer v) {
  unsigned char *p = room(b, 11);
  if (v >= 0 && v <= SMALLINT_MAX) { p[0] = (unsigned char)(T_SMALLINT + v); b->len++; return; }
  uint64_t u = (uint64_t)v;
  p[0] = T_INT;
  b->len += 1 + varint(p + 1, (u << 1) ^ (v < 0 ? UINT64_MAX : 0));
}

static void put_float(struct buf *b, lua_Number d) {
  unsigned char *p = room(b, 1 + sizeof d);
  p[0] = T_FLOAT;
  memcpy(p + 1, &d, sizeof d);
  b->len += 1 + sizeof d;
}

static void put_str(struct buf *b, const char *s, size_t n) {
  unsigned char *p = room(b, 11 + n);
  size_t h = 1;
  if (n <= SHORTSTR_MAX) p[0] = (unsigned char)(T_SHORTSTR + n);
  else { p[0] = T_STR; h += varint(p + 1, n); }
  memcpy(p + h, s, n);
  b->len += h + n;
}

/* Appends one path component for frame f to path[0..*len). */
static void path_add(lua_State *L, const struct frame *f, char *path, size_t cap, size_t *len) {
  char part[80];
  const char *dot = *len ? "." : "";
  if (f->key < 0) snprintf(part, sizeof part, ":details()");
  else if (f->in_key) snprintf(part, sizeof part, "%s(key)", dot);
  else if (f->key == 0) snprintf(part, sizeof part, "[%lld]", (long long)f->i);
  else if (lua_type(L, f->key) == LUA_TSTRING) snprintf(part, sizeof part, "%s%s", dot, lua_tostring(L, f->key));
  else if (lua_isinteger(L, f->key)) snprintf(part, sizeof part, "[%lld]", (long long)lua_tointeger(L, f->key));
  else snprintf(part, sizeof part, "[%s]", luaL_typename(L, f->key));
  size_t n = strlen(part);
  if (*len + n >= cap) n = cap - 1 - *len;
  memcpy(path + *len, part, n);
  *len += n;
  path[*len] = '\0';
}

/* Formats "cannot send <what> (argument N[, field 'path'])" into P->err. Returns -1. */
static int fail(struct packer *P, const char *what) {
  char path[256] = "";
  size_t len = 0;
  for (int i = 0; i < P->depth; i++) path_add(P->L, &P->fr[i], path, sizeof path, &len);
  if (len) snprintf(P->err, P->errlen, "cannot send %s (argument %d, field '%s')", what, P->arg, path);
  else snprintf(P->err, P->errlen, "cannot send %s (argument %d)", what, P->arg);
  return -1;
}

static int pack(struct packer *P, int idx);

/* Pushes a frame for a new container, refusing cycles and excessive depth. */
static int enter(struct packer *P, const void *tbl, int key) {
  for (int i = 0; i < P->depth; i++)
    if (P->fr[i].tbl == tbl && tbl) return fail(P, "a table with a cycle");
  if (P->depth == SERI_MAX_DEPTH) return fail(P, "a value nested deeper than 128 levels");
  if (!lua_checkstack(P->L, 8)) return fail(P, "a value nested too deeply for the Lua stack");
  struct frame *f = &P->fr[P->depth++];
  f->tbl = tbl;
  f->key = key;
  f->in_key = 0;
  f->i = 0;
  return 0;
}

static int pack_array(struct packer *P, int idx, lua_Integer n) {
  struct frame *f = &P->fr[P->depth - 1];
  for (lua_Integer i = 1; i <= n; i++) {
    f->i = i;
    lua_rawgeti(P->L, idx, i);
    if (pack(P, lua_gettop(P->L)) < 0) return -1;
    lua_pop(P->L, 1);
  }
  return 0;
}

/* Packs every pair except the array part t[1..n]; returns how many, or -1. */
static int64_t pack_hash(struct packer *P, int idx, lua_Integer n) {
  lua_State *L = P->L;
  struct frame *f = &P->fr[P->depth - 1];
  int64_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (lua_isinteger(L, -2)) {
      lua_Integer k = lua_tointeger(L, -2);
      if (k >= 1 && k <= n) { lua_pop(L, 1); continue; }
    }
    f->key = top - 1;
    f->in_key = 1;
    if (pack(P, top - 1) < 0) return -1;
    f->in_key = 0;
    if (pack(P, top) < 0) return -1;
    lua_pop(L, 1);
    count++;
  }
  return count;
}

static int pack_table(struct packer *P, int idx) {
  if (enter(P, lua_topointer(P->L, idx), 0) < 0) return -1;
  lua_Integer n = (lua_Integer)lua_rawlen(P->L, idx);
  unsigned char *p = room(P->b, 15);
  p[0] = T_TABLE;
  size_t at = P->b->len + 1 + varint(p + 1, (uint64_t)n);
  P->b->len = at + 4;                           /* nhash, patched below */
  if (pack_array(P, idx, n) < 0) return -1;
  int64_t nhash = pack_hash(P, idx, n);
  if (nhash < 0) return -1;
  if (nhash > UINT32_MAX) return fail(P, "a table with more than 2^32 entries");
  uint32_t h = (uint32_t)nhash;
  memcpy(P->b->data + at, &h, 4);
  P->depth--;
  return 0;
}

static int pack_error(struct packer *P, int idx) {
  if (enter(P, NULL, -1) < 0) return -1;
  put_byte(P->b, T_ERROR);
  errors_push_fields(P->L, idx);
  int top = lua_gettop(P->L);
  for (int i = top - 4; i <= top; i++)
    if (pack(P, i) < 0) return -1;
  lua_pop(P->L, 5);
  P->depth--;
  return 0;
}

/* idx must be absolute. */
static int pack(struct packer *P, int idx) {
  lua_State *L = P->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: put_byte(P->b, T_NIL); return 0;
  case LUA_TBOOLEAN: put_byte(P->b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); return 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) put_int(P->b, lua_tointeger(L, idx));
    else put_float(P->b, lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    put_str(P->b, s, n);
    return 0;
  }
  case LUA_TTABLE: return pack_table(P, idx);
  case LUA_TUSERDATA: return errors_is(L, idx) ? pack_error(P, idx) : fail(P, "a userdata");
  case LUA_TLIGHTUSERDATA: return fail(P, "a light userdata");
  case LUA_TFUNCTION: return fail(P, "a function");
  case LUA_TTHREAD: return fail(P, "a thread");
  default: return fail(P, "a value of unknown type");
  }
}

int seri_pack(lua_State *L, int first, int n, struct buf *out, char *err, size_t errlen) {
  struct packer P;
  int top = lua_gettop(L);
  size_t start = out->len;
  first = lua_absindex(L, first);
  P.L = L;
  P.b = out;
  P.depth = 0;
  P.err = err;
  P.errlen = errlen;
  for (int i = 0; i < n; i++) {
    P.arg = first + i;
    if (pack(&P, first + i) < 0) {
      lua_settop(L, top);
      out->len = start;
      if (out->data) out->data[start] = '\0';
      return -1;
    }
  }
  if (out->data) out->data[out->len] = '\0';
  return 0;
}

/* ---- unpacking --------------------------------------------------------- */

/* All reads are bounds-checked; any malformed input makes the reader return -1. */
struct reader {
  const unsigned char *p, *end;
  int depth;
};

static size_t left(const struct reader *r) { return (size_t)(r->end - r->p); }

static int get_varint(struct reader *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    unsigned char c = *r->p++;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) { *v = x; return 0; }
  }
  return -1;
}

static int get_str(lua_State *L, struct reader *r, uint64_t n) {
  if (n > left(r)) return -1;
  lua_pushlstring(L, (const char *)r->p, (size_t)n);
  r->p += n;
  return 0;
}

static int get_int(lua_State *L, struct reader *r) {
  uint64_t u;
  if (get_varint(r, &u) < 0) return -1;
  lua_pushinteger(L, (lua_Integer)((u >> 1) ^ (0 - (u & 1))));
  return 0;
}

static int get_float(lua_State *L, struct reader *r) {
  lua_Number d;
  if (left(r) < sizeof d) return -1;
  memcpy(&d, r->p, sizeof d);
  r->p += sizeof d;
  lua_pushnumber(L, d);
  return 0;
}

static int unpack(lua_State *L, struct reader *r);

static int valid_key(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL) return 0;
  if (t == LUA_TNUMBER && !lua_isinteger(L, idx)) return !isnan(lua_tonumber(L, idx));
  return 1;
}

static int get_pairs(lua_State *L, struct reader *r, int t, uint32_t nhash) {
  for (uint32_t j = 0; j < nhash; j++) {
    if (unpack(L, r) < 0 || !valid_key(L, -1)) return -1;
    if (unpack(L, r) < 0) return -1;
    lua_rawset(L, t);
  }
  return 0;
}

static int get_table(lua_State *L, struct reader *r) {
  uint64_t narr;
  uint32_t nhash;
  if (r->depth >= SERI_MAX_DEPTH || !lua_checkstack(L, 8)) return -1;
  if (get_varint(r, &narr) < 0 || left(r) < 4) return -1;
  memcpy(&nhash, r->p, 4);
  r->p += 4;
  if (narr > left(r) || nhash > left(r) / 2 || narr > INT32_MAX) return -1;  /* ≥ 1 byte each */
  lua_createtable(L, (int)narr, (int)nhash);
  int t = lua_gettop(L);
  r->depth++;
  for (lua_Integer i = 1; i <= (lua_Integer)narr; i++) {
    if (unpack(L, r) < 0) return -1;
    lua_rawseti(L, t, i);
  }
  if (get_pairs(L, r, t, nhash) < 0) return -1;
  r->depth--;
  return 0;
}

static int get_error(lua_State *L, struct reader *r) {
  if (r->depth >= SERI_MAX_DEPTH || !lua_checkstack(L, 8)) return -1;
  r->depth++;
  for (int i = 0; i < 5; i++)
    if (unpack(L, r) < 0) return -1;
  r->depth--;
  return errors_build(L);
}

/* Pushes one value (or returns -1, possibly leaving garbage the caller clears). */
static int unpack(lua_State *L, struct reader *r) {
  if (r->p >= r->end) return -1;
  unsigned tag = *r->p++;
  if (tag >= T_SHORTSTR) return get_str(L, r, tag - T_SHORTSTR);
  if (tag >= T_SMALLINT) { lua_pushinteger(L, (lua_Integer)(tag - T_SMALLINT)); return 0; }
  uint64_t n;
  switch (tag) {
  case T_NIL: lua_pushnil(L); return 0;
  case T_FALSE: lua_pushboolean(L, 0); return 0;
  case T_TRUE: lua_pushboolean(L, 1); return 0;
  case T_INT: return get_int(L, r);
  case T_FLOAT: return get_float(L, r);
  case T_STR: return get_varint(r, &n) < 0 ? -1 : get_str(L, r, n);
  case T_TABLE: return get_table(L, r);
  case T_ERROR: return get_error(L, r);
  default: return -1;
  }
}

int seri_unpack(lua_State *L, const void *data, size_t len) {
  if (len == 0) return 0;
  struct reader r = {data, (const unsigned char *)data + len, 0};
  int base = lua_gettop(L), n = 0;
  while (r.p < r.end) {
    if (!lua_checkstack(L, 2) || unpack(L, &r) < 0) {
      lua_settop(L, base);
      return -1;
    }
    n++;
  }
  return n;
}
