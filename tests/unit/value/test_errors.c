/* test_errors.c — error objects and the `errors` global (host/value/errors.c, host/lua/lmod_errors.c). */
#include "t.h"
#include "value/errors.h"
#include "lua/lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  errors_open(L);
  return L;
}

/* Runs a chunk; on failure prints the Lua error and returns 0. */
static int run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) == LUA_OK) return 1;
  printf("  lua error: %s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  return 0;
}

/* Runs a chunk expected to raise; returns the message (valid until the next call) or NULL. */
static const char *run_err(lua_State *L, const char *code) {
  static char msg[512];
  if (luaL_dostring(L, code) == LUA_OK) return NULL;
  snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return msg;
}

static int c_fail(lua_State *L) { return errors_fail(L, EK_TIMEOUT, "took %lld ms", 1500LL); }

TEST(constants) {
  lua_State *L = new_state();
  CHECK(run(L, "for _, k in ipairs{'UNKNOWN','INVALID','NOT_FOUND','ALREADY_EXISTS',"
               "'PERMISSION_DENIED','TIMEOUT','CANCELED','UNAVAILABLE','INTERNAL','CONFLICT',"
               "'RATE_LIMITED'} do assert(errors[k] == k, k) end"));
  lua_close(L);
}

TEST(new_from_string) {
  lua_State *L = new_state();
  CHECK(run(L, "local e = errors.new('boom')\n"
               "assert(e:message() == 'boom')\n"
               "assert(e:kind() == errors.UNKNOWN)\n"
               "assert(e:retryable() == nil)\n"
               "assert(e:details() == nil)\n"
               "assert(tostring(e) == 'boom')\n"
               "assert(type(e:stack()) == 'string' and e:stack():find('traceback'))\n"
               "assert(errors.call_stack(e) == e:stack())\n"
               "assert(type(e) == 'userdata')"));
  CHECK(run(L, "assert(errors.new(42):message() == '42')"));
  lua_close(L);
}

TEST(new_from_table) {
  lua_State *L = new_state();
  CHECK(run(L, "local d = {id = 7}\n"
               "local e = errors.new{message = 'gone', kind = errors.NOT_FOUND, retryable = false,"
               " details = d}\n"
               "assert(e:message() == 'gone' and e:kind() == 'NOT_FOUND')\n"
               "assert(e:retryable() == false)\n"
               "assert(e:details() == d and e:details().id == 7)\n"
               "assert(errors.new{message = 'x', retryable = true}:retryable() == true)\n"
               "assert(errors.new{message = 'x'}:kind() == 'UNKNOWN')"));
  lua_close(L);
}

TEST(new_misuse_raises) {
  lua_State *L = new_state();
  CHECK_CONTAINS(run_err(L, "errors.new(errors.NOT_FOUND, 'missing')"), "not supported");
  CHECK_CONTAINS(run_err(L, "errors.new{kind = 'X'}"), "message");
  CHECK_CONTAINS(run_err(L, "errors.new{message = 'm', details = 'str'}"), "details");
  CHECK_CONTAINS(run_err(L, "errors.new{message = 'm', retryable = 1}"), "retryable");
  CHECK_CONTAINS(run_err(L, "errors.new{message = 'm', kind = 5}"), "kind");
  CHECK(run_err(L, "errors.new()") != NULL);
  CHECK(run_err(L, "errors.new(function() end)") != NULL);
  CHECK_CONTAINS(run_err(L, "errors.new('x').message({})"), ERROR_MT);
  lua_close(L);
}

TEST(wrap_and_is) {
  lua_State *L = new_state();
  CHECK(run(L, "local inner = errors.new{message = 'disk full', kind = errors.UNAVAILABLE,"
               " retryable = true, details = {n = 1}}\n"
               "local w = errors.wrap(inner, 'saving')\n"
               "assert(w:message() == 'saving: disk full', w:message())\n"
               "assert(w:kind() == 'UNAVAILABLE' and w:retryable() == true)\n"
               "assert(w:details().n == 1)\n"
               "assert(errors.is(w, errors.UNAVAILABLE) == true)\n"
               "assert(errors.is(w, errors.NOT_FOUND) == false)\n"
               "assert(errors.is('not an error', errors.UNKNOWN) == false)\n"
               "assert(errors.is(nil, errors.UNKNOWN) == false)\n"
               "assert(errors.wrap(nil, 'ctx') == nil)\n"
               "local s = errors.wrap('plain', 'ctx')\n"
               "assert(s:message() == 'ctx: plain' and s:kind() == 'UNKNOWN')\n"
               "assert(errors.wrap(errors.wrap(inner, 'a'), 'b'):message() == 'b: a: disk full')"));
  CHECK(run_err(L, "errors.wrap(errors.new('x'))") != NULL);
  CHECK(run_err(L, "errors.is(errors.new('x'))") != NULL);
  lua_close(L);
}

TEST(c_push_and_accessors) {
  lua_State *L = new_state();
  CHECK_INT(errors_push(L, EK_INVALID, "bad %s #%d (%.1f%%)", "field", 3, 2.5), 1);
  CHECK(errors_is(L, -1));
  CHECK_STR(errors_message(L, -1), "bad field #3 (2.5%)");
  CHECK_STR(errors_kind(L, -1), "INVALID");
  lua_setglobal(L, "e");
  CHECK(run(L, "assert(e:stack() == nil and errors.call_stack(e) == nil)\n"
               "assert(e:retryable() == nil and tostring(e) == 'bad field #3 (2.5%)')"));
  lua_pushliteral(L, "str");
  CHECK(!errors_is(L, -1));
  CHECK(errors_message(L, -1) == NULL);
  CHECK(errors_kind(L, -1) == NULL);
  lua_pop(L, 1);
  /* a long message goes through the heap path */
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  errors_push(L, EK_INTERNAL, "%s!", big);
  CHECK_INT(strlen(errors_message(L, -1)), 1000);
  CHECK_INT(lua_gettop(L), 1);
  lua_close(L);
}

TEST(fail_pushes_nil_err) {
  lua_State *L = new_state();
  CHECK_INT(errors_fail(L, EK_NOT_FOUND, "no %s", "such"), 2);
  CHECK_INT(lua_gettop(L), 2);
  CHECK(lua_isnil(L, 1));
  CHECK_STR(errors_kind(L, 2), "NOT_FOUND");
  CHECK_STR(errors_message(L, 2), "no such");
  lua_settop(L, 0);
  lua_register(L, "c_fail", c_fail);
  CHECK(run(L, "local v, e = c_fail()\n"
               "assert(v == nil and e:kind() == errors.TIMEOUT)\n"
               "assert(e:message() == 'took 1500 ms')"));
  lua_close(L);
}

TEST(from_value) {
  lua_State *L = new_state();
  errors_push(L, EK_CONFLICT, "c");
  errors_from_value(L, -1);
  CHECK(lua_rawequal(L, -1, -2));
  lua_settop(L, 0);
  lua_pushliteral(L, "oops");
  errors_from_value(L, 1);
  CHECK_STR(errors_message(L, -1), "oops");
  CHECK_STR(errors_kind(L, -1), "UNKNOWN");
  lua_pushinteger(L, 42);
  errors_from_value(L, -1);
  CHECK_STR(errors_message(L, -1), "42");
  lua_pushnil(L);
  errors_from_value(L, -1);
  CHECK_STR(errors_message(L, -1), "nil");
  CHECK_INT(lua_gettop(L), 6);
  lua_close(L);
}

TEST(fields_and_build) {
  lua_State *L = new_state();
  CHECK(run(L, "E = errors.new{message = 'm', kind = 'K', retryable = false, details = {a = 1}}"));
  lua_getglobal(L, "E");
  errors_push_fields(L, 1);
  CHECK_INT(lua_gettop(L), 6);
  CHECK_STR(lua_tostring(L, 2), "m");
  CHECK_STR(lua_tostring(L, 3), "K");
  CHECK(lua_isboolean(L, 4) && !lua_toboolean(L, 4));
  CHECK(lua_istable(L, 5));
  CHECK(lua_isstring(L, 6));
  CHECK_INT(errors_build(L), 0);
  CHECK_INT(lua_gettop(L), 2);
  lua_setglobal(L, "F");
  CHECK(run(L, "assert(F:message() == 'm' and F:kind() == 'K' and F:retryable() == false)\n"
               "assert(F:details().a == 1 and F:stack() == E:stack() and F ~= E)"));
  lua_settop(L, 0);
  lua_pushinteger(L, 1);               /* message must be a string */
  lua_pushliteral(L, "K");
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushnil(L);
  CHECK_INT(errors_build(L), -1);
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

TEST(metatable_on_demand) {
  lua_State *L = luaL_newstate();       /* no errors_open */
  luaL_openlibs(L);
  errors_push(L, EK_CANCELED, "stop");
  lua_setglobal(L, "e");
  CHECK(run(L, "assert(tostring(e) == 'stop' and e:kind() == 'CANCELED')\n"
               "assert(errors == nil)"));
  lua_close(L);
}

int main(void) {
  RUN(constants);
  RUN(new_from_string);
  RUN(new_from_table);
  RUN(new_misuse_raises);
  RUN(wrap_and_is);
  RUN(c_push_and_accessors);
  RUN(fail_pushes_nil_err);
  RUN(from_value);
  RUN(fields_and_build);
  RUN(metatable_on_demand);
  return T_DONE();
}
