/*
** lmod_crypto.c — the `crypto` module (wippy-compat.md §3.18), first part: random.bytes(n)
** (RAND_bytes), random.string(n [, alphabet]) (each character uniform over the alphabet's
** bytes, default A-Za-z0-9, by rejection sampling: no modulo bias), random.uuid() (a v4),
** constant_time_compare(a, b) (CRYPTO_memcmp; different lengths → false) and hmac.sha256 /
** hmac.sha512(key, data) → lower-case hex. n is 0..CRYPTO_MAX_RANDOM, else nil, INVALID; an
** alphabet is 1..256 bytes. Misuse (wrong types) raises; a failed random source gives nil,
** INTERNAL. encrypt, decrypt and pbkdf2 are in lmod_crypto_cipher.c, jwt in lmod_crypto_jwt.c.
** Threads: none of its own; runs on the thread that owns the lua_State.
*/
#include "base/uuid.h"
#include "lmod_crypto.h"
#include "value/errors.h"
#include "lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define CRYPTO_MAX_RANDOM (1 << 20)       /* bytes or characters per call: 1 MiB */

static int check_count(lua_State *L, lua_Integer *n) {
  *n = luaL_checkinteger(L, 1);
  return *n >= 0 && *n <= CRYPTO_MAX_RANDOM;
}

static int l_bytes(lua_State *L) {
  lua_Integer n;
  if (!check_count(L, &n))
    return errors_fail(L, EK_INVALID, "random.bytes: n must be 0..%d", CRYPTO_MAX_RANDOM);
  luaL_Buffer b;
  unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
  if (n > 0 && RAND_bytes(p, (int)n) != 1)
    return errors_fail(L, EK_INTERNAL, "random source failed");
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int l_string(lua_State *L) {
  static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  lua_Integer n;
  int ok = check_count(L, &n);
  size_t k;
  const char *alpha = luaL_optlstring(L, 2, alnum, &k);
  luaL_argcheck(L, k >= 1 && k <= 256, 2, "alphabet must have 1 to 256 bytes");
  if (!ok) return errors_fail(L, EK_INVALID, "random.string: n must be 0..%d", CRYPTO_MAX_RANDOM);
  unsigned limit = 256 - 256 % (unsigned)k;      /* bytes below it map evenly onto k */
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (size_t)n);
  unsigned char r[256];
  size_t have = 0, used = 0;
  for (lua_Integer i = 0; i < n;) {
    if (used == have) {
      if (RAND_bytes(r, sizeof r) != 1) return errors_fail(L, EK_INTERNAL, "random source failed");
      have = sizeof r;
      used = 0;
    }
    unsigned v = r[used++];
    if (v < limit) out[i++] = alpha[v % k];
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int l_uuid(lua_State *L) {
  char s[UUID_STR_LEN];
  if (uuid_v4(s) != 0) return errors_fail(L, EK_INTERNAL, "random source failed");
  lua_pushstring(L, s);
  return 1;
}

static int l_compare(lua_State *L) {
  size_t la, lb;
  const char *a = luaL_checklstring(L, 1, &la);
  const char *b = luaL_checklstring(L, 2, &lb);
  lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
  return 1;
}

/* hmac.<name>(key, data) → hex; the EVP_MD getter is the upvalue. */
static int l_hmac(lua_State *L) {
  size_t klen, len;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *data = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, klen <= INT32_MAX, 1, "key too long");
  const EVP_MD *(*md)(void) = (const EVP_MD *(*)(void))lua_touserdata(L, lua_upvalueindex(1));
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(md(), key, (int)klen, (const unsigned char *)data, len, d, &n))
    return errors_fail(L, EK_INTERNAL, "HMAC failed");
  static const char hex[] = "0123456789abcdef";
  char out[2 * EVP_MAX_MD_SIZE];
  for (unsigned i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  lua_pushlstring(L, out, 2 * (size_t)n);
  return 1;
}

int luaopen_crypto(lua_State *L) {
  static const luaL_Reg random[] = {
    {"bytes", l_bytes}, {"string", l_string}, {"uuid", l_uuid}, {NULL, NULL},
  };
  lua_createtable(L, 0, 3);
  luaL_newlib(L, random);
  lua_setfield(L, -2, "random");
  lua_pushcfunction(L, l_compare);
  lua_setfield(L, -2, "constant_time_compare");
  lua_createtable(L, 0, 2);
  lua_pushlightuserdata(L, (void *)EVP_sha256);
  lua_pushcclosure(L, l_hmac, 1);
  lua_setfield(L, -2, "sha256");
  lua_pushlightuserdata(L, (void *)EVP_sha512);
  lua_pushcclosure(L, l_hmac, 1);
  lua_setfield(L, -2, "sha512");
  lua_setfield(L, -2, "hmac");
  crypto_open_cipher(L);
  crypto_open_jwt(L);
  return 1;
}

int crypto_openssl_version(char *buf, size_t n) {
#ifdef OPENSSL_VERSION_STRING                 /* OpenSSL 3: the bare "3.0.11" */
  snprintf(buf, n, "%s", OpenSSL_version(OPENSSL_VERSION_STRING));
#else                                         /* 1.1: "OpenSSL 1.1.1w  11 Sep 2023" */
  const char *v = OpenSSL_version(OPENSSL_VERSION), *sp = strchr(v, ' ');
  v = sp ? sp + 1 : v;
  snprintf(buf, n, "%.*s", (int)strcspn(v, " "), v);
#endif
  return 0;
}
