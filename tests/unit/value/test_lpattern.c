/* test_lpattern.c — the stoppable matcher (host/value/lpattern.c) against Lua's own, its guard and
** budget, the sandbox's string library (lmod_string.c) using it, and its cost on a normal match. */
#include "t.h"
#include "lua/linit.h"
#include "value/lpattern.h"
#include "runtime/luaenv.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <time.h>

/* The test guard: counts polls; raises "stopped" once `stop_after` polls have happened. */
static long polls, stop_after = -1;

static void test_poll(lua_State *L) {
  if (++polls == stop_after) luaL_error(L, "stopped");
}

static const struct lpattern_guard test_guard = {test_poll, 0};
static const struct lpattern_guard small_budget = {NULL, 1L << 20};

/* A state with Lua's string table as global ORIG and a copy with lpattern's functions as
** NEW, and same(code), which runs code once with each as `string` (and as the strings'
** __index) and returns true when both give the same results, or fail with the same
** message. */
static lua_State *new_state(const struct lpattern_guard *g) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "string");
  lua_setglobal(L, "ORIG");
  lua_newtable(L);
  lua_getglobal(L, "string");
  lua_pushnil(L);
  while (lua_next(L, -2)) {           /* NEW = a copy of string, then our four functions */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, -5);
  }
  lua_pop(L, 1);
  lpattern_install(L, g);
  lua_setglobal(L, "NEW");
  const char *same =
      "local function pack(ok, ...) return {ok = ok, n = select('#', ...), ...} end\n"
      "local function run(lib, code)\n"
      "  getmetatable('').__index = lib\n"
      "  local f = assert(load(code, '=case', 't', setmetatable({string = lib}, {__index = _G})))\n"
      "  local r = pack(pcall(f))\n"
      "  getmetatable('').__index = ORIG\n"
      "  return r\n"
      "end\n"
      "function same(code)\n"
      "  local a, b = run(ORIG, code), run(NEW, code)\n"
      "  if a.ok ~= b.ok or a.n ~= b.n then\n"
      "    return false, tostring(a[1]) .. ' / ' .. tostring(b[1])\n"
      "  end\n"
      "  for i = 1, a.n do\n"
      "    if a[i] ~= b[i] then return false, tostring(a[i]) .. ' ~= ' .. tostring(b[i]) end\n"
      "  end\n"
      "  return true\n"
      "end\n";
  if (luaL_dostring(L, same) != LUA_OK) printf("  setup: %s\n", lua_tostring(L, -1));
  return L;
}

/* Makes NEW the string library of L (the global and strings' __index). */
static void use_new(lua_State *L) {
  if (luaL_dostring(L, "string = NEW getmetatable('').__index = NEW") != LUA_OK)
    printf("  use_new: %s\n", lua_tostring(L, -1));
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

/* Each case is a chunk whose results (all of them, or the error) are compared. */
static const char *const result_cases[] = {
  "return ('hello world'):find('o w')",
  "return ('hello world'):find('o', 6)",
  "return ('hello world'):find('l', -3)",
  "return ('hello'):find('', 10)",
  "return ('hello'):find('', 6)",
  "return ('a.b'):find('.', 1, true)",
  "return ('a+b'):find('+', 1, true)",
  "return ('a\\0b'):find('\\0b')",
  "return ('a\\0b'):find('%z')",
  "return ('hello'):find('l+')",
  "return ('hello'):find('^h(e)(l+)')",
  "return ('hello'):find('^e')",
  "return ('key = value'):match('^(%w+)%s*=%s*(%w+)$')",
  "return ('  trim me  '):match('^%s*(.-)%s*$')",
  "return ('f(a(b)c)d'):match('%b()')",
  "return ('THE (quick) fox'):find('%f[%a]%a+', 5)",
  "return ('hello hello'):match('(h%a+) %1')",
  "return ('abc'):match('()b()')",
  "return ('abc'):match('(a)()(c?)')",
  "return ('x = 1, y = 22'):match('(%a) = (%d+)', 4)",
  "return ('[test]'):match('^%[(.*)%]$')",
  "return ('a-b-c'):match('[%-]')",
  "return ('abc123'):match('[^%a]+')",
  "return ('ABCdef'):match('[A-Z]+')",
  "return ('a]b'):match('[]]')",
  "return ('a^b'):match('[a^]+')",
  "return ('tab\\there'):match('%c')",
  "return ('3.14e10'):match('^[+-]?%d+%.?%d*[eE]?[+-]?%d*$')",
  "return ('aaa'):match('a-b')",
  "return ('aaab'):match('a-b')",
  "return ('aaa'):match('a?a?a?a')",
  "return ('#!/bin'):match('%p+')",
  "return ('%'):match('%%')",
  "return ('end$'):match('d$')",
  "return ('a$b'):match('a$b')",
  "return ('hello'):match('.-', 10)",
  "local t = {} for k, v in ('a=1, b=2, c=3'):gmatch('(%w+)=(%w+)') do t[#t + 1] = k .. v end return table.concat(t, ';')",
  "local t = {} for w in ('one two three'):gmatch('%a+', 5) do t[#t + 1] = w end return table.concat(t, ';')",
  "local t = {} for w in ('one two'):gmatch('%a+', -3) do t[#t + 1] = w end return table.concat(t, ';')",
  "local t = {} for w in ('abc'):gmatch('', 10) do t[#t + 1] = w end return #t",
  "local t = {} for a, b in ('abc'):gmatch('()(.)') do t[#t + 1] = a .. b end return table.concat(t, ';')",
  "local t = {} for w in ('abc'):gmatch('x*') do t[#t + 1] = '<' .. w .. '>' end return table.concat(t)",
  "return ('hello world'):gsub('o', '0')",
  "return ('hello world'):gsub('o', '0', 1)",
  "return ('hello world'):gsub('(%w+)', '<%1>')",
  "return ('hello world'):gsub('%w+', '%0 %0')",
  "return ('abc'):gsub('', '-')",
  "return ('abc'):gsub('^', '>')",
  "return ('abc'):gsub('()', '%1')",
  "return ('100%'):gsub('%%', '%%%%')",
  "return ('$name is $age'):gsub('%$(%w+)', {name = 'Bob', age = 42})",
  "return ('$name is $x'):gsub('%$(%w+)', {name = 'Bob'})",
  "return ('abc'):gsub('%w', function(c) return c:upper() .. '.' end)",
  "return ('abc'):gsub('%w', function(c) if c == 'b' then return false end return 1 end)",
  "return ('abc'):gsub('x', 'y')",
  "return ('a,b,,c'):gsub(',', ';', 0)",
  "return ('a b c'):gsub(' ', '', -1)",
  "return ('abc'):gsub('b', 7)",
  "return string.gsub('hello', 'l', {l = 1.5})",
  "return (''):gsub('', 'x')",
  "return ('x'):rep(40):find(('x?'):rep(20) .. ('x'):rep(20))",
  "return string.find(12345, 34)",
  "return string.match(12345, '(%d)(%d)$')",
  NULL,
};

/* Errors: malformed patterns, bad replacements, bad arguments. */
static const char *const error_cases[] = {
  "return ('a'):find('%')",
  "return ('a'):find('[a')",
  "return ('a'):find('[^')",
  "return ('a'):find('[%')",
  "return ('a'):match('(a')",
  "return ('a'):match('a)')",
  "return ('a'):match('%1')",
  "return ('aa'):match('(a)%2')",
  "return ('a'):match('(a%1)')",
  "return ('a'):match('%b')",
  "return ('a'):match('%ba')",
  "return ('a'):match('%f')",
  "return ('a'):match('%fa')",
  "return ('a'):match(('('):rep(33))",
  "return ('a'):match(('(a)'):rep(33))",
  "return ('a'):rep(300):match(('a?'):rep(300))",
  "return ('a'):gsub('a', '%2')",
  "return ('a'):gsub('a', '%x')",
  "return ('a'):gsub('a', '%')",
  "return ('a'):gsub('(a)', '%2')",
  "return ('a'):gsub('a')",
  "return ('a'):gsub('a', true)",
  "return ('a'):gsub('a', function() return {} end)",
  "return ('a'):gsub('a', {a = {}})",
  "return ('a'):gsub('a', function() error('in callback') end)",
  "return ('a'):gsub('(', 'x')",
  "return ('a'):gsub('a', 'b', 'x')",
  "return string.find()",
  "return string.find('a')",
  "return string.find({}, 'a')",
  "return string.match('a', 'a', 'x')",
  "return string.gmatch('a')",
  "return ('a'):gmatch('(')()",
  "return (''):find(nil)",
  "return ('a'):match('()', 1.5)",
  NULL,
};

TEST(results_are_luas) {
  lua_State *L = new_state(&test_guard);
  for (const char *const *c = result_cases; *c; c++) CHECK(same(L, *c));
  lua_close(L);
}

TEST(errors_are_luas) {
  lua_State *L = new_state(&test_guard);
  for (const char *const *c = error_cases; *c; c++) CHECK(same(L, *c));
  CHECK(luaL_dostring(L, "assert(not pcall(NEW.find, 'a', '%'))") == LUA_OK);
  lua_close(L);
}

#define CATASTROPHIC "return ('a'):rep(3000):find(('a*'):rep(8) .. 'b')"

/* The backtracking that never ends in practice polls the guard, which stops it. */
TEST(the_guard_stops_a_catastrophic_match) {
  lua_State *L = new_state(&test_guard);
  polls = 0;
  stop_after = 5;
  use_new(L);
  CHECK(luaL_dostring(L, CATASTROPHIC) != LUA_OK);
  CHECK_CONTAINS(lua_tostring(L, -1), "stopped");
  CHECK_INT(polls, 5);
  lua_pop(L, 1);
  polls = 0;          /* a %b scan of 1 MB at each of 3000 starts counts its bytes */
  CHECK(luaL_dostring(L, "return ('('):rep(3000) .. ('x'):rep(1 << 20):find('%b()')") != LUA_OK);
  CHECK_CONTAINS(lua_tostring(L, -1), "stopped");
  lua_pop(L, 1);
  polls = 0;          /* gmatch and gsub too */
  CHECK(luaL_dostring(L, "for _ in ('a'):rep(3000):gmatch(('a*'):rep(8) .. 'b') do end") != LUA_OK);
  CHECK_CONTAINS(lua_tostring(L, -1), "stopped");
  lua_pop(L, 1);
  polls = 0;
  CHECK(luaL_dostring(L, "return ('a'):rep(3000):gsub(('a*'):rep(8) .. 'b', '')") != LUA_OK);
  CHECK_CONTAINS(lua_tostring(L, -1), "stopped");
  lua_pop(L, 1);
  stop_after = -1;
  lua_close(L);
}

TEST(the_budget_bounds_a_call_without_a_poll) {
  lua_State *L = new_state(&small_budget);
  use_new(L);
  CHECK(luaL_dostring(L, CATASTROPHIC) != LUA_OK);
  CHECK_CONTAINS(lua_tostring(L, -1), ":1: pattern too complex (step budget exceeded)");
  lua_pop(L, 1);
  CHECK(luaL_dostring(L, "local n = 0 for _ = 1, 1000 do n = n + #('a'):rep(1000):match('a*') end "
                         "assert(n == 1000000)") == LUA_OK);   /* each call has its own */
  lua_close(L);
}

/* The sandbox's string library (luaopen_tstring on a luaenv_new state) asks the process:
** a kill request stops the match with "terminated", also through s:find and pcall. */
TEST(the_sandbox_string_library_stops_on_terminate) {
  struct proc *p = xcalloc(1, sizeof *p);
  p->rt = rt_new(".");
  p->rt->libs = linit_libs();
  lua_State *L = luaenv_new(p);
  CHECK(luaL_dostring(L, "return ('a'):rep(100):find('^a*$')") == LUA_OK);
  CHECK_INT(lua_tointeger(L, -2), 1);
  lua_settop(L, 0);
  atomic_store(&p->kill, 1);
  CHECK(luaL_dostring(L, "local ok = pcall(string.find, ('a'):rep(3000), ('a*'):rep(8) .. 'b')\n"
                         "for _ = 1, 1e7 do end return ok") != LUA_OK);
  CHECK_CONTAINS(lua_tostring(L, -1), "terminated");
  lua_settop(L, 0);
  lua_sethook(L, NULL, 0, 0);
  CHECK(luaL_dostring(L, CATASTROPHIC) != LUA_OK);            /* method form */
  CHECK_CONTAINS(lua_tostring(L, -1), "terminated");
  lua_close(L);
  rt_free(p->rt);
  free(p);
}

static double ns_per_call(lua_State *L, const char *lib, int n) {
  char code[256];
  snprintf(code, sizeof code,
           "getmetatable('').__index = %s\n"
           "local s = '   ' .. ('word '):rep(19) .. '  '\n"
           "for _ = 1, %d do s:match('^%%s*(.-)%%s*$') end\n"
           "getmetatable('').__index = ORIG", lib, n);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  if (luaL_dostring(L, code) != LUA_OK) printf("  bench: %s\n", lua_tostring(L, -1));
  clock_gettime(CLOCK_MONOTONIC, &b);
  return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
}

/* Not a pass/fail check: prints the cost of the step counter on a normal match. */
TEST(cost_on_a_normal_match) {
  lua_State *L = new_state(&test_guard);
  enum { N = 100000 };
  double o = 1e18, w = 1e18;
  for (int round = 0; round < 9; round++) {
    double x = ns_per_call(L, "ORIG", N), y = ns_per_call(L, "NEW", N);
    if (x < o) o = x;
    if (y < w) w = y;
  }
  printf("  s:match('^%%s*(.-)%%s*$') on 100 bytes: Lua %.0f ns, lpattern %.0f ns per call\n", o, w);
  CHECK(o > 0 && w > 0);
  lua_close(L);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "bench") == 0) {   /* the measurement alone */
    RUN(cost_on_a_normal_match);
    return T_DONE();
  }
  RUN(results_are_luas);
  RUN(errors_are_luas);
  RUN(the_guard_stops_a_catastrophic_match);
  RUN(the_budget_bounds_a_call_without_a_poll);
  RUN(the_sandbox_string_library_stops_on_terminate);
  RUN(cost_on_a_normal_match);
  return T_DONE();
}
