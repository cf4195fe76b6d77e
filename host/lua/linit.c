/*
** linit.c — see linit.h. The openers are the lmod_*.c files' (lmod.h), json.c's, and Lua's
** own table and math; os is Lua's, restricted here.
**
** Threads: constant data only.
*/
#include "linit.h"
#include "value/json.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lualib.h>

/* os restricted to time, date, clock and difftime. */
static int open_os(lua_State *L) {
  static const char *const keep[] = {"time", "date", "clock", "difftime"};
  luaopen_os(L);
  lua_createtable(L, 0, 4);
  for (size_t i = 0; i < countof(keep); i++) {
    lua_getfield(L, -2, keep[i]);
    lua_setfield(L, -2, keep[i]);
  }
  return 1;
}

/* Global ones exist without require, opened when first touched, and may also be required
** by name without appearing in `modules:` (luaenv.h). */
static const struct luaenv_lib libs[] = {
  {"table", luaopen_table, 1},      {"math", luaopen_math, 1},
  {"coroutine", luaopen_tcoroutine, 1}, {"os", open_os, 1},
  {"process", luaopen_process, 1},  {"channel", luaopen_channel, 1},
  {"errors", luaopen_errors, 1},    {"string", luaopen_tstring, 1},
  {"time", luaopen_time, 0},        {"logger", luaopen_logger, 0},
  {"json", luaopen_taskhost_json, 0}, {"io", luaopen_tio, 0},
  {"env", luaopen_env, 0},          {"payload", luaopen_payload, 1},
  {"http", luaopen_http, 0},        {"queue", luaopen_queue, 0},
  {"http_client", luaopen_http_client, 0},
  {"uuid", luaopen_uuid, 0},          {"hash", luaopen_hash, 0},
  {"base64", luaopen_base64, 0},      {"crypto", luaopen_crypto, 0},
  {"events", luaopen_events, 0},
  {"registry", luaopen_registry, 0},
  {"metrics", luaopen_metrics, 0},    {"system", luaopen_system, 0},
  {"funcs", luaopen_funcs, 0},        {"ctx", luaopen_ctx, 0},
  {"sql", luaopen_sql, 0},
  {NULL, NULL, 0},
};

const struct luaenv_lib *linit_libs(void) { return libs; }
