/*
** lmod_base64.c — the `base64` module (wippy-compat.md §3.18): encode(s) and decode(s) in
** the standard alphabet (RFC 4648 §4) with padding, through OpenSSL's EVP_EncodeBlock and
** EVP_DecodeBlock. decode is strict: the length must be a multiple of 4 and '=' may only
** end the text (one or two), so unpadded text, whitespace and the URL alphabet are refused
** with nil, INVALID. Misuse (a non-string argument) raises.
** Threads: none of its own; runs on the thread that owns the lua_State.
*/
#include "value/errors.h"
#include "lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>
#include <string.h>

#define B64_MAX_IN ((size_t)1 << 30)        /* EVP_*Block take an int length */

static int l_encode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len <= B64_MAX_IN, 1, "string too long");
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, (len + 2) / 3 * 4 + 1);
  int n = EVP_EncodeBlock(out, (const unsigned char *)s, (int)len);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* The number of padding characters of s, or -1 when s is not canonical padded base64. */
static int check_text(const char *s, size_t len) {
  static const char alpha[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (len % 4 != 0) return -1;
  int pad = 0;
  while (pad < 2 && pad < (int)len && s[len - 1 - pad] == '=') pad++;
  for (size_t i = 0; i < len - (size_t)pad; i++)
    if (!s[i] || !strchr(alpha, s[i])) return -1;
  return pad;
}

static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int pad = check_text(s, len);
  if (pad < 0 || len > B64_MAX_IN)
    return errors_fail(L, EK_INVALID, "invalid base64 (standard alphabet, padded)");
  if (len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, len / 4 * 3);
  int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
  if (n < 0) return errors_fail(L, EK_INVALID, "invalid base64");
  luaL_pushresultsize(&b, (size_t)n - (size_t)pad);
  return 1;
}

int luaopen_base64(lua_State *L) {
  static const luaL_Reg funcs[] = {{"encode", l_encode}, {"decode", l_decode}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
