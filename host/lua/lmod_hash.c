/*
** lmod_hash.c — the `hash` module (wippy-compat.md §3.18): md5, sha1, sha256, sha512(data
** [, raw]) and hmac_md5/sha1/sha256/sha512(msg, key [, raw]) from OpenSSL's libcrypto, as
** lower-case hex or (raw = true) the digest's bytes; fnv32/fnv64(data), FNV-1a, as integers
** (fnv64 keeps all 64 bits in Lua's signed integer: values from 2^63 up are negative).
** Misuse (a non-string argument) raises; a libcrypto failure returns nil, INTERNAL.
** Threads: none of its own; runs on the thread that owns the lua_State.
*/
#include "value/errors.h"
#include "lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>

typedef const EVP_MD *(*md_fn)(void);

/* Pushes the digest d (n bytes) as hex, or as it is when the argument at raw_idx is true. */
static int push_digest(lua_State *L, const unsigned char *d, size_t n, int raw_idx) {
  if (lua_toboolean(L, raw_idx)) {
    lua_pushlstring(L, (const char *)d, n);
    return 1;
  }
  static const char hex[] = "0123456789abcdef";
  char out[2 * EVP_MAX_MD_SIZE];
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  lua_pushlstring(L, out, 2 * n);
  return 1;
}

/* hash.<name>(data [, raw]); the EVP_MD is the upvalue. */
static int l_digest(lua_State *L) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  md_fn md = (md_fn)lua_touserdata(L, lua_upvalueindex(1));
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(data, len, d, &n, md(), NULL))
    return errors_fail(L, EK_INTERNAL, "digest failed");
  return push_digest(L, d, n, 2);
}

/* hash.hmac_<name>(msg, key [, raw]) */
static int l_hmac(lua_State *L) {
  size_t len, klen;
  const char *msg = luaL_checklstring(L, 1, &len);
  const char *key = luaL_checklstring(L, 2, &klen);
  luaL_argcheck(L, klen <= INT32_MAX, 2, "key too long");
  md_fn md = (md_fn)lua_touserdata(L, lua_upvalueindex(1));
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(md(), key, (int)klen, (const unsigned char *)msg, len, d, &n))
    return errors_fail(L, EK_INTERNAL, "HMAC failed");
  return push_digest(L, d, n, 3);
}

/* FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/), as Go's hash/fnv New32a/New64a. */
static int l_fnv32(lua_State *L) {
  size_t len;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

static int l_fnv64(lua_State *L) {
  size_t len;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

int luaopen_hash(lua_State *L) {
  static const struct { const char *name; md_fn md; } mds[] = {
    {"md5", EVP_md5}, {"sha1", EVP_sha1}, {"sha256", EVP_sha256}, {"sha512", EVP_sha512},
  };
  lua_createtable(L, 0, 10);
  for (size_t i = 0; i < sizeof mds / sizeof mds[0]; i++) {
    lua_pushlightuserdata(L, (void *)mds[i].md);
    lua_pushcclosure(L, l_digest, 1);
    lua_setfield(L, -2, mds[i].name);
    lua_pushlightuserdata(L, (void *)mds[i].md);
    lua_pushcclosure(L, l_hmac, 1);
    char name[16];
    snprintf(name, sizeof name, "hmac_%s", mds[i].name);
    lua_setfield(L, -2, name);
  }
  lua_pushcfunction(L, l_fnv32);
  lua_setfield(L, -2, "fnv32");
  lua_pushcfunction(L, l_fnv64);
  lua_setfield(L, -2, "fnv64");
  return 1;
}
