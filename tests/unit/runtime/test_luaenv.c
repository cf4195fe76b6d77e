/* test_luaenv.c — luaenv_new states find their built-in modules only through rt->libs
** (linit_libs()), and a state without that list fails clearly. */
#include "t.h"
#include "lua/linit.h"
#include "runtime/luaenv.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>

/* A process (no code, no scheduler) on a fresh rt whose libs are `libs`. */
static struct proc *new_proc(const struct luaenv_lib *libs) {
  struct proc *p = xcalloc(1, sizeof *p);
  p->rt = rt_new(".");
  p->rt->libs = libs;
  return p;
}

static void free_proc(struct proc *p, lua_State *L) {
  lua_close(L);
  rt_free(p->rt);
  free(p);
}

/* Runs code; returns NULL on success, else the error message (valid until the next run). */
static const char *run(lua_State *L, const char *code) {
  static char msg[512];
  lua_settop(L, 0);
  if (luaL_dostring(L, code) == LUA_OK) return NULL;
  snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1));
  return msg;
}

TEST(the_list_gives_globals_and_strings) {
  struct proc *p = new_proc(linit_libs());
  lua_State *L = luaenv_new(p);
  CHECK(run(L, "assert(('ab'):upper() == 'AB')\n"            /* string, lazily via the list */
               "assert(string.rep('x', 3) == 'xxx' and math.max(1, 2) == 2)\n"
               "assert(errors.NOT_FOUND == 'NOT_FOUND' and type(process) == 'table')\n"
               "assert(os.time and os.execute == nil)\n"     /* os restricted */
               "assert(json == nil and time == nil)") == NULL);   /* not global ones */
  free_proc(p, L);
}

TEST(without_a_list_only_base_exists) {
  struct proc *p = new_proc(NULL);
  lua_State *L = luaenv_new(p);
  CHECK(run(L, "assert(type(pairs) == 'function' and tostring(1) == '1')\n"
               "assert(string == nil and errors == nil and table == nil)") == NULL);
  CHECK_CONTAINS(run(L, "return ('ab'):upper()"), "no string library in this state");
  free_proc(p, L);
}

int main(void) {
  RUN(the_list_gives_globals_and_strings);
  RUN(without_a_list_only_base_exists);
  return T_DONE();
}
