/* Fuzzes strip_types (strip.c) with arbitrary source text. Checks its contract: the output
** has exactly len bytes plus a NUL, every newline stays where it was, only spaces replace
** bytes, and text that stock Lua 5.4 compiles comes back unchanged. */
#include "registry/strip.h"

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

static int compiles(const char *s, size_t n) {
  int ok = luaL_loadbufferx(L, s, n, "=fuzz", "t") == LUA_OK;
  lua_settop(L, 0);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *src = malloc(size ? size : 1);      /* exact size: ASan sees any read past len */
  memcpy(src, data, size);
  char *out = NULL, err[256];
  int rc = strip_types(src, size, &out, err, sizeof err);
  if (rc == 0) {
    if (out[size] != '\0') abort();
    for (size_t i = 0; i < size; i++) {
      int nl = src[i] == '\n' || src[i] == '\r';
      if (nl != (out[i] == '\n' || out[i] == '\r')) abort();      /* line breaks stay */
      if (out[i] != src[i] && out[i] != ' ') abort();             /* only blanked */
    }
    if (compiles(src, size) && memcmp(out, src, size) != 0) abort();   /* plain Lua unchanged */
  } else if (!memchr(err, '\0', sizeof err) || compiles(src, size)) {
    abort();                                                      /* valid Lua is never refused */
  }
  free(out);
  free(src);
  return 0;
}
