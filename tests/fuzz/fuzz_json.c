/* Fuzzes json_decode (json.c, through lua-cjson) with arbitrary bytes, then encodes what it
** decoded with json_encode; the re-encoded text must decode again. */
#include "value/json.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  L = luaL_newstate();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  if (json_decode(L, (const char *)data, size, err, sizeof err) == 0) {
    if (lua_gettop(L) != 1) abort();
    struct buf b;
    buf_init(&b);
    if (json_encode(L, 1, &b, err, sizeof err) == 0) {
      if (json_decode(L, b.data ? b.data : "", b.len, err, sizeof err) != 0) abort();
    }
    buf_free(&b);
  } else if (lua_gettop(L) != 0 || !memchr(err, '\0', sizeof err)) {
    abort();                                      /* an error pushes nothing */
  }
  lua_settop(L, 0);
  return 0;
}
