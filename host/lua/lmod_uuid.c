/*
** lmod_uuid.c — the `uuid` module (wippy-compat.md §3.18, RFC 9562): v1(), v4(), v7(), v3(ns,
** name) and v5(ns, name) (MD5 / SHA-1 of the namespace's 16 bytes and the name, through
** libcrypto) → standard-form string; validate(s) → boolean; parse(s) → {uuid, version,
** variant [, timestamp]} (timestamp: Unix ms, for v1 and v7); format(id, "standard"|"simple"|
** "urn"); version(s) → integer; variant(s) → "RFC4122"|"Reserved"|"Microsoft"|"Future"
** (the names of Go's google/uuid). Accepted input forms: base/uuid.h's uuid_from_str.
** A string that is no UUID gives nil, INVALID; misuse (a non-string) raises.
** Threads: none of its own (uuid_v7_bytes locks its own state).
*/
#include "base/uuid.h"
#include "value/errors.h"
#include "lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

static void push_uuid(lua_State *L, const unsigned char b[16]) {
  char s[UUID_STR_LEN];
  uuid_to_str(b, s);
  lua_pushlstring(L, s, 36);
}

/* Parses the argument at idx into b; 0, or -1 (not a UUID). Raises on a non-string. */
static int arg_uuid(lua_State *L, int idx, unsigned char b[16]) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  return uuid_from_str(s, len, b);
}

static int fail_invalid(lua_State *L, int idx) {
  return errors_fail(L, EK_INVALID, "invalid UUID: '%.64s'", lua_tostring(L, idx));
}

static int l_v4(lua_State *L) {
  unsigned char b[16];
  if (uuid_v4_bytes(b) != 0) return errors_fail(L, EK_INTERNAL, "no random source");
  push_uuid(L, b);
  return 1;
}

static int l_v1(lua_State *L) {
  unsigned char b[16];
  if (uuid_v1_bytes(b) != 0) return errors_fail(L, EK_INTERNAL, "no random source");
  push_uuid(L, b);
  return 1;
}

static int l_v7(lua_State *L) {
  unsigned char b[16];
  if (uuid_v7_bytes(b) != 0) return errors_fail(L, EK_INTERNAL, "no random source");
  push_uuid(L, b);
  return 1;
}

/* v3/v5: the digest of namespace bytes || name, its first 16 bytes, version set. */
static int name_based(lua_State *L, const EVP_MD *md, int version) {
  unsigned char ns[16];
  size_t nlen;
  const char *name = luaL_checklstring(L, 2, &nlen);
  if (arg_uuid(L, 1, ns) != 0) return fail_invalid(L, 1);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  int ok = c && EVP_DigestInit_ex(c, md, NULL) && EVP_DigestUpdate(c, ns, 16) &&
           EVP_DigestUpdate(c, name, nlen) && EVP_DigestFinal_ex(c, d, &n);
  EVP_MD_CTX_free(c);
  if (!ok || n < 16) return errors_fail(L, EK_INTERNAL, "digest failed");
  uuid_set_version(d, version);
  push_uuid(L, d);
  return 1;
}

static int l_v3(lua_State *L) { return name_based(L, EVP_md5(), 3); }
static int l_v5(lua_State *L) { return name_based(L, EVP_sha1(), 5); }

static const char *variant_name(const unsigned char b[16]) {
  if ((b[8] & 0x80) == 0) return "Reserved";          /* 0xxx: NCS compatibility */
  if ((b[8] & 0xc0) == 0x80) return "RFC4122";        /* 10xx: RFC 4122 / 9562 */
  if ((b[8] & 0xe0) == 0xc0) return "Microsoft";      /* 110x */
  return "Future";                                    /* 111x */
}

/* The Unix time in ms of an RFC-variant v7 or v1 UUID; 0 for other UUIDs. */
static int timestamp_ms(const unsigned char b[16], lua_Integer *ms) {
  if ((b[8] & 0xc0) != 0x80) return 0;
  uint64_t t = 0;
  switch (b[6] >> 4) {
  case 7:
    for (int i = 0; i < 6; i++) t = t << 8 | b[i];
    *ms = (lua_Integer)t;
    return 1;
  case 1:
    t = (uint64_t)(b[6] & 0x0f) << 56 | (uint64_t)b[7] << 48 | (uint64_t)b[4] << 40 |
        (uint64_t)b[5] << 32 | (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 |
        (uint64_t)b[2] << 8 | b[3];
    *ms = ((lua_Integer)t - (lua_Integer)122192928000000000) / 10000;
    return 1;
  }
  return 0;
}

static int l_validate(lua_State *L) {
  unsigned char b[16];
  lua_pushboolean(L, arg_uuid(L, 1, b) == 0);
  return 1;
}

static int l_version(lua_State *L) {
  unsigned char b[16];
  if (arg_uuid(L, 1, b) != 0) return fail_invalid(L, 1);
  lua_pushinteger(L, b[6] >> 4);
  return 1;
}

static int l_variant(lua_State *L) {
  unsigned char b[16];
  if (arg_uuid(L, 1, b) != 0) return fail_invalid(L, 1);
  lua_pushstring(L, variant_name(b));
  return 1;
}

static int l_parse(lua_State *L) {
  unsigned char b[16];
  if (arg_uuid(L, 1, b) != 0) return fail_invalid(L, 1);
  lua_createtable(L, 0, 4);
  push_uuid(L, b);
  lua_setfield(L, -2, "uuid");
  lua_pushinteger(L, b[6] >> 4);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, variant_name(b));
  lua_setfield(L, -2, "variant");
  lua_Integer ms;
  if (timestamp_ms(b, &ms)) {
    lua_pushinteger(L, ms);
    lua_setfield(L, -2, "timestamp");
  }
  return 1;
}

static int l_format(lua_State *L) {
  static const char *const forms[] = {"standard", "simple", "urn", NULL};
  unsigned char b[16];
  int form = luaL_checkoption(L, 2, "standard", forms);
  if (arg_uuid(L, 1, b) != 0) return fail_invalid(L, 1);
  char s[UUID_STR_LEN];
  uuid_to_str(b, s);
  if (form == 1) {
    char simple[32];
    for (size_t i = 0, k = 0; i < 36; i++)
      if (s[i] != '-') simple[k++] = s[i];
    lua_pushlstring(L, simple, 32);
  } else {
    lua_pushfstring(L, "%s%s", form == 2 ? "urn:uuid:" : "", s);
  }
  return 1;
}

int luaopen_uuid(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"v1", l_v1},           {"v3", l_v3},           {"v4", l_v4},           {"v5", l_v5},           {"v7", l_v7},
    {"validate", l_validate}, {"parse", l_parse},   {"format", l_format},
    {"version", l_version}, {"variant", l_variant}, {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
