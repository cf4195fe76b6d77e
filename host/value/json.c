/*
** json.c — see json.h; wippy semantics (wippy-compat.md §3.8, §9 item 13).
**
** Decoding goes through lua-cjson 2.1.0 (static lib): each lua_State lazily gets one cjson
** instance (decode_max_depth 128, decode_invalid_numbers off so NaN/Infinity/hex are
** rejected as Go's encoding/json does) whose `decode` is cached in the registry. The result
** is fixed up in one walk:
**   - cjson.null → nil. Object members with null are absent; array elements with null
**     become holes ([1,null,3] → {1, nil, 3}: # is unreliable and re-encoding such a
**     table fails as "sparse").
**   - cjson 2.1.0 pushes every number as a float; integral floats within ±2^53 become Lua
**     integers. Limitation: 5.0 also decodes to the integer 5, and integers beyond 2^53
**     arrive already rounded by cjson.
** Input containing a NUL byte is rejected (cjson would stop reading at it).
**
** Encoding is done here in C (cjson 2.1.0 encodes {} as an object and loses large integers):
** nil → null; integers exact (%lld); floats in the shortest of %.15g/%.16g/%.17g that reads
** back exactly, so integral floats print without a fraction (3.0 → 3, as Go prints
** float64); NaN/±Inf → null; strings per RFC 8259 (", \ and control bytes escaped — \n \r \t
** short forms, others \u00XX; '/' and bytes ≥ 0x80 verbatim); empty table → []; sequence
** 1..n → array; all string keys → object (lua_next order); anything else → error; cycles
** and depth > 128 → error; error objects → their message; functions, threads and other
** userdata → null. Tables are read raw (metatables ignored).
**
** Threads: reentrant; the only state is the per-lua_State cjson instance in its registry.
** (luaopen_cjson rewrites lua-cjson's process-wide decimal-point cache via fpconv_init;
** every writer stores the same '.', so concurrent first use from two states is benign.)
** Number formatting assumes the C locale for LC_NUMERIC, as Lua itself does.
*/
#include "json.h"
#include "errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 128
#define MAX_EXACT_INT 9007199254740992.0     /* 2^53 */

int luaopen_cjson(lua_State *L);

/* The address is the registry key of the cached cjson.decode; the value is never used. */
static const char decoder_key = 'j';

/* ---- encoding ---------------------------------------------------------- */

struct enc {
  lua_State *L;
  struct buf *b;
  int depth;
  char *err;
  size_t errlen;
  const void *path[JSON_MAX_DEPTH];   /* tables being encoded, outermost first */
};

static int encode(struct enc *E, int idx);

static int fail(struct enc *E, const char *msg) {
  snprintf(E->err, E->errlen, "%s", msg);
  return -1;
}

static void put_integer(struct buf *b, lua_Integer v) {
  char tmp[24];
  size_t n;
  const char *p = i64_dec((long long)v, tmp, &n);
  buf_add(b, p, n);
}

static void put_float(struct buf *b, lua_Number d) {
  if (!isfinite(d)) { buf_add(b, "null", 4); return; }
  char tmp[32];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, (double)d);
    if (strtod(tmp, NULL) == d) break;
  }
  buf_add(b, tmp, (size_t)n);
}

/* 1 for the bytes a JSON string must escape: control characters, '"' and '\\'. */
static const unsigned char must_escape[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

/* Writes the escape for c at o; returns the end. */
static char *escape_byte(char *o, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  *o++ = '\\';
  switch (c) {
  case '"': *o++ = '"'; break;
  case '\\': *o++ = '\\'; break;
  case '\n': *o++ = 'n'; break;
  case '\r': *o++ = 'r'; break;
  case '\t': *o++ = 't'; break;
  default:
    memcpy(o, "u00", 3);
    o[3] = hex[c >> 4];
    o[4] = hex[c & 15];
    o += 5;
  }
  return o;
}

/* 1 when none of the 8 bytes in w needs escaping: none below 0x20, none '"' or '\\'.
** Standard SWAR tests; they can misfire only next to a byte that really matches, so
** "plain" is always exact. */
static int plain_word(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
  uint64_t hits = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) |
                  ((backslash - ones) & ~backslash);
  return (hits & highs) == 0;
}

/* Escapes straight into reserved space, 8 plain bytes at a time, a chunk at a time so a
** long string never reserves six times its size at once. */
void json_put_string(struct buf *b, const char *s, size_t n) {
  enum { CHUNK = 4096 };
  buf_addc(b, '"');
  while (n > 0) {
    size_t take = n < CHUNK ? n : CHUNK, i = 0;
    buf_reserve(b, 6 * take + 1);
    char *o = b->data + b->len;
    while (i < take) {
      uint64_t w;
      for (; i + 8 <= take; i += 8, o += 8) {
        memcpy(&w, s + i, 8);
        if (!plain_word(w)) break;
        memcpy(o, &w, 8);
      }
      for (size_t stop = i + 8 < take ? i + 8 : take; i < stop; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!must_escape[c]) *o++ = (char)c;
        else o = escape_byte(o, c);
      }
    }
    b->len = (size_t)(o - b->data);
    s += take;
    n -= take;
  }
  buf_addc(b, '"');
}

/* Tables whose first key (in lua_next order) is a string are objects, written in one pass
** that fails at the first key of another type. Others must be sequences 1..n: one pass
** counts the keys and checks each is an integer in 1..#t. An empty table is an array. */
static const char mixed_keys[] = "cannot encode a table with mixed or sparse keys";

static int is_sequence(lua_State *L, int idx, lua_Integer *n) {
  lua_Integer count = 0, len = (lua_Integer)lua_rawlen(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1 || k > len) { lua_pop(L, 1); return 0; }
    count++;
  }
  *n = count;
  return count == len;
}

static int encode_array(struct enc *E, int idx) {
  lua_Integer n;
  if (!is_sequence(E->L, idx, &n)) return fail(E, mixed_keys);
  buf_addc(E->b, '[');
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) buf_addc(E->b, ',');
    lua_rawgeti(E->L, idx, i);
    if (encode(E, lua_gettop(E->L)) < 0) return -1;
    lua_pop(E->L, 1);
  }
  buf_addc(E->b, ']');
  return 0;
}

/* Entered with the first key and value pushed by lua_next. */
static int encode_object(struct enc *E, int idx) {
  lua_State *L = E->L;
  buf_addc(E->b, '{');
  do {
    if (lua_type(L, -2) != LUA_TSTRING) return fail(E, mixed_keys);
    size_t klen;
    const char *k = lua_tolstring(L, -2, &klen);      /* a string: no conversion */
    json_put_string(E->b, k, klen);
    buf_addc(E->b, ':');
    if (encode(E, lua_gettop(L)) < 0) return -1;
    lua_pop(L, 1);
    buf_addc(E->b, ',');
  } while (lua_next(L, idx));
  E->b->data[E->b->len - 1] = '}';                   /* replaces the last ',' */
  return 0;
}

static int encode_table(struct enc *E, int idx) {
  lua_State *L = E->L;
  const void *t = lua_topointer(L, idx);
  for (int i = 0; i < E->depth; i++)
    if (E->path[i] == t) return fail(E, "cannot encode a table with a cycle");
  if (E->depth == JSON_MAX_DEPTH) return fail(E, "cannot encode a table nested deeper than 128 levels");
  if (!lua_checkstack(L, 4)) return fail(E, "cannot encode: Lua stack exhausted");
  E->path[E->depth++] = t;
  int rc;
  lua_pushnil(L);
  if (!lua_next(L, idx)) {
    buf_add(E->b, "[]", 2);
    rc = 0;
  } else if (lua_type(L, -2) == LUA_TSTRING) {
    rc = encode_object(E, idx);
  } else {
    lua_pop(L, 2);
    rc = encode_array(E, idx);
  }
  if (rc == 0) E->depth--;
  return rc;
}

static void put_error(struct enc *E, int idx) {
  const char *msg = errors_message(E->L, idx);
  json_put_string(E->b, msg, strlen(msg));
}

/* idx must be absolute. */
static int encode(struct enc *E, int idx) {
  lua_State *L = E->L;
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) buf_add(E->b, "true", 4);
    else buf_add(E->b, "false", 5);
    return 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) put_integer(E->b, lua_tointeger(L, idx));
    else put_float(E->b, lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    json_put_string(E->b, s, n);
    return 0;
  }
  case LUA_TTABLE: return encode_table(E, idx);
  case LUA_TUSERDATA:
    if (errors_is(L, idx)) put_error(E, idx);
    else buf_add(E->b, "null", 4);
    return 0;
  default:
    buf_add(E->b, "null", 4);
    return 0;
  }
}

int json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen) {
  struct enc E;
  int top = lua_gettop(L);
  size_t start = out->len;
  E.L = L;
  E.b = out;
  E.depth = 0;
  E.err = err;
  E.errlen = errlen;
  if (encode(&E, lua_absindex(L, idx)) < 0) {
    lua_settop(L, top);
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return -1;
  }
  return 0;
}

/* ---- decoding ---------------------------------------------------------- */

/* Calls cjson.<name>(value) on the module table at the top. */
static void configure(lua_State *L, const char *name, int is_bool, lua_Integer value) {
  lua_getfield(L, -1, name);
  if (is_bool) lua_pushboolean(L, (int)value);
  else lua_pushinteger(L, value);
  lua_call(L, 1, 0);
}

/* Pushes this state's cjson.decode, creating the instance on first use. May raise. */
static void push_decoder(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &decoder_key) == LUA_TFUNCTION) return;
  lua_pop(L, 1);
  lua_pushcfunction(L, luaopen_cjson);
  lua_call(L, 0, 1);
  configure(L, "decode_max_depth", 0, JSON_MAX_DEPTH);
  configure(L, "decode_invalid_numbers", 1, 0);
  lua_getfield(L, -1, "decode");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &decoder_key);
  lua_remove(L, -2);
}

/* If the value at idx is an integral float within ±2^53, stores the integer in *v. */
static int exact_int(lua_State *L, int idx, lua_Integer *v) {
  if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx)) return 0;
  lua_Number d = lua_tonumber(L, idx);
  if (d != floor(d) || fabs(d) > MAX_EXACT_INT) return 0;
  *v = (lua_Integer)d;
  return 1;
}

/* Rewrites nulls and integral floats inside the table at t (depth ≤ 128 by cjson's limit).
** Assigning to existing fields during lua_next is allowed, including clearing them. */
static void fix_table(lua_State *L, int t) {
  luaL_checkstack(L, 4, "JSON nesting");
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_Integer v;
    if (lua_type(L, -1) == LUA_TTABLE) fix_table(L, lua_gettop(L));
    else if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) {
      lua_pushvalue(L, -2);
      lua_pushnil(L);
      lua_rawset(L, t);
    } else if (exact_int(L, -1, &v)) {
      lua_pushvalue(L, -2);
      lua_pushinteger(L, v);
      lua_rawset(L, t);
    }
    lua_pop(L, 1);
  }
}

/* Protected body: decodes the string at 1 and returns the fixed-up value. */
static int decode_protected(lua_State *L) {
  push_decoder(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_Integer v;
  if (lua_type(L, -1) == LUA_TTABLE) fix_table(L, lua_gettop(L));
  else if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) { lua_pop(L, 1); lua_pushnil(L); }
  else if (exact_int(L, -1, &v)) { lua_pop(L, 1); lua_pushinteger(L, v); }
  return 1;
}

/* Decodes the string at idx; pushes the value, or returns -1 with a message. */
static int decode_at(lua_State *L, int idx, char *err, size_t errlen) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  const char *nul = memchr(s, '\0', len);
  if (nul) {
    snprintf(err, errlen, "invalid JSON: unexpected NUL byte at character %zu", (size_t)(nul - s) + 1);
    return -1;
  }
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, decode_protected);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    snprintf(err, errlen, "invalid JSON: %s", msg ? msg : "(no message)");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen) {
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "invalid JSON: Lua stack exhausted");
    return -1;
  }
  lua_pushlstring(L, s, len);
  int rc = decode_at(L, -1, err, errlen);
  lua_remove(L, rc == 0 ? -2 : -1);
  return rc;
}

/* ---- the Lua module ---------------------------------------------------- */

static int l_encode(lua_State *L) {
  struct buf b;
  char err[256];
  lua_settop(L, 1);
  buf_init(&b);
  if (json_encode(L, 1, &b, err, sizeof err) < 0) {
    buf_free(&b);
    return errors_fail(L, EK_INTERNAL, "%s", err);
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  buf_free(&b);
  return 1;
}

static int l_decode(lua_State *L) {
  char err[256];
  luaL_checktype(L, 1, LUA_TSTRING);
  if (decode_at(L, 1, err, sizeof err) < 0) return errors_fail(L, EK_INTERNAL, "%s", err);
  return 1;
}

int luaopen_taskhost_json(lua_State *L) {
  static const luaL_Reg funcs[] = {{"encode", l_encode}, {"decode", l_decode}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_pushlightuserdata(L, NULL);      /* json.null: a value that encodes as null */
  lua_setfield(L, -2, "null");
  return 1;
}

int json_cjson_version(char *buf, size_t n) {
  if (n) buf[0] = '\0';
  lua_State *L = luaL_newstate();
  if (!L) return -1;
  luaL_requiref(L, "cjson", luaopen_cjson, 0);
  const char *v = lua_getfield(L, -1, "_VERSION") == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (v) snprintf(buf, n, "%s", v);
  lua_close(L);
  return v ? 0 : -1;
}
