/* Fuzzes the crypto module's parsers of hostile text (lua/lmod_crypto_jwt.c and
** lmod_crypto_cipher.c): the input as a JWT for jwt.verify (HS256 and RS256 with a key that
** is not PEM), as sealed data for decrypt.aes and decrypt.chacha20, and as base64 text.
** Each call must return a value or nil, err and never raise, crash or leak. */
#include "lua/lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>

static lua_State *L;

static const char CHECK[] =
  "local s = ...\n"
  "local function nil_err(v, err) if v == nil then assert(err:kind() == 'INVALID', tostring(err)) end end\n"
  "nil_err(crypto.jwt.verify(s, 'secret'))\n"
  "nil_err(crypto.jwt.verify(s, 'secret', 'HS512', false))\n"
  "nil_err(crypto.jwt.verify(s, s, 'RS256'))\n"
  "nil_err(crypto.decrypt.aes(s, ('k'):rep(16)))\n"
  "nil_err(crypto.decrypt.chacha20(s, ('k'):rep(32), s))\n"
  "nil_err(base64.decode(s))\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "crypto", luaopen_crypto, 1);
  luaL_requiref(L, "base64", luaopen_base64, 1);
  lua_settop(L, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (luaL_loadstring(L, CHECK) != LUA_OK) abort();
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) abort();     /* nothing may raise */
  lua_settop(L, 0);
  return 0;
}
