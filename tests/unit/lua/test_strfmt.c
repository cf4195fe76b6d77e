/* test_strfmt.c — the fast string.format (host/lua/lmod_string.c) against Lua's own. */
#include "t.h"
#include "lua/lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* A state with Lua's string table as global ORIG and ours as FAST, and same(code), which
** runs code once with each as `string` (and as the strings' __index) and returns true when
** both give the same results, or fail with the same message. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "string");
  lua_setglobal(L, "ORIG");
  luaopen_tstring(L);
  lua_setglobal(L, "FAST");
  const char *same =
      "function same(code)\n"
      "  local out = {}\n"
      "  for _, lib in ipairs{ORIG, FAST} do\n"
      "    getmetatable('').__index = lib\n"
      "    local f = assert(load(code, '=case', 't', setmetatable({string = lib}, {__index = _G})))\n"
      "    out[#out + 1] = table.pack(pcall(f))\n"
      "  end\n"
      "  local a, b = out[1], out[2]\n"
      "  if a.n ~= b.n then return false, 'count' end\n"
      "  for i = 1, a.n do\n"
      "    if a[i] ~= b[i] then return false, tostring(a[i]) .. ' ~= ' .. tostring(b[i]) end\n"
      "  end\n"
      "  return true\n"
      "end\n";
  if (luaL_dostring(L, same) != LUA_OK) printf("  setup: %s\n", lua_tostring(L, -1));
  return L;
}

static int same(lua_State *L, const char *code) {
  lua_getglobal(L, "same");
  lua_pushstring(L, code);
  lua_call(L, 1, 2);
  int ok = lua_toboolean(L, -2);
  if (!ok) printf("  differs: %s: %s\n", code, lua_tostring(L, -1));
  lua_pop(L, 2);
  return ok;
}

TEST(fast_path_results) {
  lua_State *L = new_state();
  CHECK(same(L, "return string.format('task_%d', 1738880000)"));
  CHECK(same(L, "return string.format('%d|%i|%d', 0, -7, math.mininteger)"));
  CHECK(same(L, "return string.format('%d', math.maxinteger)"));
  CHECK(same(L, "return string.format('%s and %s', 'a\\0b', '')"));
  CHECK(same(L, "return string.format('100%% of %s', 'x')"));
  CHECK(same(L, "return string.format('no specs')"));
  CHECK(same(L, "return string.format('')"));
  CHECK(same(L, "return string.format('%d', 1, 'extra', {})"));
  CHECK(same(L, "return ('Task will run for %d seconds'):format(5)"));
  lua_close(L);
}

TEST(fallback_results) {
  lua_State *L = new_state();
  CHECK(same(L, "return string.format('%5d|%-3s|%05.1f', 42, 'a', 3.14159)"));
  CHECK(same(L, "return string.format('%d', 3.0)"));
  CHECK(same(L, "return string.format('%s %s', 12, 1.5)"));
  CHECK(same(L, "return string.format('%s', setmetatable({}, {__tostring = function() return 'T' end}))"));
  CHECK(same(L, "return string.format('%q', 'a\\nb')"));
  CHECK(same(L, "return string.format('%x %X %c %e %g %a', 255, 255, 65, 1.5, 0.1, 1.0)"));
  CHECK(same(L, "return string.format(42)"));
  lua_close(L);
}

TEST(fallback_errors) {
  lua_State *L = new_state();
  CHECK(same(L, "return string.format('%d', 3.5)"));
  CHECK(same(L, "return string.format('%d', 'x')"));
  CHECK(same(L, "return string.format('%d')"));
  CHECK(same(L, "return string.format('%s')"));
  CHECK(same(L, "return string.format('50%')"));
  CHECK(same(L, "return string.format('%y', 1)"));
  CHECK(same(L, "return string.format()"));
  CHECK(same(L, "return ('%d'):format('x')"));
  CHECK(same(L, "return ('%d %d'):format(1)"));
  CHECK(same(L, "local fmt = string.format return fmt('%d', {})"));
  CHECK(same(L, "return string.format('%s', setmetatable({}, {__tostring = function() error('boom') end}))"));
  CHECK(same(L, "return string.format('%s', setmetatable({}, {__tostring = function() return 1 end}))"));
  CHECK(same(L, "return string.format('%10q', 'x')"));
  CHECK(same(L, "return string.format('%' .. ('1'):rep(40) .. 'd', 1)"));
  lua_close(L);
}

TEST(the_fast_path_is_used) {
  lua_State *L = new_state();
  CHECK(luaL_dostring(L, "assert(FAST.format ~= ORIG.format)") == LUA_OK);
  lua_close(L);
}

int main(void) {
  RUN(fast_path_results);
  RUN(fallback_results);
  RUN(fallback_errors);
  RUN(the_fast_path_is_used);
  return T_DONE();
}
