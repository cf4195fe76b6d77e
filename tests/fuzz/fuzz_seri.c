/* Fuzzes seri_unpack (seri.c) with arbitrary bytes into a lua_State: corrupt input must be
** refused with nothing pushed; whatever unpacks must pack again and unpack to as many values. */
#include "value/errors.h"
#include "lua/lmod.h"
#include "value/seri.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdlib.h>

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  L = luaL_newstate();
  errors_open(L);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int n = seri_unpack(L, data, size);
  if (n < 0) {
    if (lua_gettop(L) != 0) abort();
    return 0;
  }
  if (lua_gettop(L) != n) abort();
  struct buf b;
  char err[256];
  buf_init(&b);
  if (n > 0 && seri_pack(L, 1, n, &b, err, sizeof err) != 0) abort();   /* unpacked ⇒ packable */
  if (seri_unpack(L, b.data, b.len) != n) abort();
  buf_free(&b);
  lua_settop(L, 0);
  return 0;
}
