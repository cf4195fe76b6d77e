/*
** stubs.c — see stubs.h. The description (modules.lua) and the generator (stubs_gen.lua) are
** C strings the build made (scripts/embed.cmake); each call opens a plain Lua state with only
** the base, string and table libraries (the generator needs no host module, and no sandbox:
** both chunks are ours, compiled in), runs the generator with the description, calls one of
** its three functions and copies the result out. Files are written here, in C.
**
** Threads: the calling thread owns the state for the call's length; no shared data.
*/
#include "stubs.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern const char modules_lua[];
extern const size_t modules_lua_len;
extern const char stubs_gen_lua[];
extern const size_t stubs_gen_lua_len;

/* Pushes the generator's api table. Returns 0, or -1 with the error in err. */
static int open_generator(lua_State *L, char *err, size_t errlen) {
  static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base}, {LUA_STRLIBNAME, luaopen_string},
                                  {LUA_TABLIBNAME, luaopen_table}};
  for (size_t i = 0; i < countof(libs); i++) {
    luaL_requiref(L, libs[i].name, libs[i].func, 1);
    lua_pop(L, 1);
  }
  if (luaL_loadbuffer(L, stubs_gen_lua, stubs_gen_lua_len, "=host/lua/stubs_gen.lua") != LUA_OK ||
      luaL_loadbuffer(L, modules_lua, modules_lua_len, "=host/lua/modules.lua") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK || lua_pcall(L, 1, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "stubs: %s", lua_tostring(L, -1));
    return -1;
  }
  return 0;
}

/* Calls api[name]() and leaves its one result. Returns 0, or -1 with the error in err. */
static int call_api(lua_State *L, const char *name, char *err, size_t errlen) {
  if (open_generator(L, err, errlen) != 0) return -1;
  lua_getfield(L, -1, name);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "stubs: %s", lua_tostring(L, -1));
    return -1;
  }
  return 0;
}

/* mkdir -p. Returns 0, or -1 with errno set (ENOENT for ""). */
static int make_dirs(const char *dir) {
  if (!*dir) { errno = ENOENT; return -1; }
  char *p = xstrdup(dir);
  int rc = 0;
  for (char *s = p + 1; rc == 0; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = -1;
    *s = c;
    if (c == '\0') break;
  }
  free(p);
  return rc;
}

/* Writes len bytes to path (created or truncated; flags adds O_EXCL). 0, or -1 with errno. */
static int write_file(const char *path, const char *text, size_t len, int flags) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0644);
  if (fd < 0) return -1;
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) { int e = errno; close(fd); errno = e; return -1; }
    off += (size_t)w;
  }
  return close(fd);
}

/* Writes every {name, text} of the files() array on the stack into dir. */
static int write_files(lua_State *L, const char *dir, char *err, size_t errlen) {
  lua_Integer n = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    size_t len;
    const char *name = lua_tostring(L, -2), *text = lua_tolstring(L, -1, &len);
    size_t plen = strlen(dir) + strlen(name) + 2;
    char *path = xmalloc(plen);
    snprintf(path, plen, "%s/%s", dir, name);
    int rc = write_file(path, text, len, 0);
    if (rc != 0) snprintf(err, errlen, "%s: %s", path, strerror(errno));
    free(path);
    lua_pop(L, 3);
    if (rc != 0) return -1;
  }
  return (int)n;
}

int stubs_write(const char *dir, char *err, size_t errlen) {
  if (make_dirs(dir) != 0) {
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return -1;
  }
  lua_State *L = luaL_newstate();
  if (!L) { snprintf(err, errlen, "stubs: out of memory"); return -1; }
  int rc = call_api(L, "files", err, errlen);
  if (rc == 0) rc = write_files(L, dir, err, errlen);
  lua_close(L);
  return rc;
}

int stubs_print(FILE *f, enum stubs_output what, char *err, size_t errlen) {
  lua_State *L = luaL_newstate();
  if (!L) { snprintf(err, errlen, "stubs: out of memory"); return -1; }
  int rc = call_api(L, what == STUBS_README ? "readme" : "list", err, errlen);
  if (rc == 0) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (fwrite(s, 1, len, f) != len || fflush(f) != 0) {
      snprintf(err, errlen, "stubs: write: %s", strerror(errno));
      rc = -1;
    }
  }
  lua_close(L);
  return rc;
}

/* JSON string body of s (the path is ours or the user's directory name). */
static void json_str(struct buf *b, const char *s) {
  buf_adds(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') buf_printf(b, "\\%c", c);
    else if (c < 0x20) buf_printf(b, "\\u%04x", c);
    else buf_printf(b, "%c", c);
  }
  buf_adds(b, "\"");
}

int stubs_write_luarc(const char *path, const char *library, char *err, size_t errlen) {
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "{\n"
               "  \"runtime.version\": \"Lua 5.4\",\n"
               "  \"runtime.builtin\": {\"io\": \"disable\", \"os\": \"disable\", \"debug\": \"disable\", \"utf8\": \"disable\"},\n"
               "  \"workspace.library\": [");
  json_str(&b, library);
  buf_adds(&b, "],\n  \"workspace.checkThirdParty\": false\n}\n");
  int rc = write_file(path, b.data, b.len, O_EXCL);
  if (rc != 0 && errno == EEXIST) rc = 1;
  else if (rc != 0) snprintf(err, errlen, "%s: %s", path, strerror(errno));
  buf_free(&b);
  return rc;
}
