/*
** lpattern.h — string.find, string.match, string.gmatch and string.gsub on Lua 5.4.4's own
** matcher (lpattern.c) that can be stopped while it backtracks.
**
** Lua's matcher backtracks in C, where no hook runs, so one call such as
** ("a"):rep(3000):find(("a*"):rep(8) .. "b") would keep its thread forever. This one counts
** its steps (each call of the recursive matcher, plus the bytes a %b or a back-reference
** scans) and every LPATTERN_POLL steps calls the guard's poll(L), which raises when the
** running code must stop (it may longjmp out: the matcher holds nothing but Lua stack
** values). Where nothing can say so (no process), the guard's budget bounds each call
** instead: one that takes more steps raises "pattern too complex (step budget exceeded)".
** Results, captures and error messages are exactly Lua 5.4.4's.
**
** Threads: none of its own; the functions run on whichever thread owns the lua_State, and
** the guard must outlive every state it is installed in (make it static).
*/
#ifndef TASKHOST_LPATTERN_H
#define TASKHOST_LPATTERN_H

#include <lua.h>

#define LPATTERN_POLL 4096              /* steps between two polls */

struct lpattern_guard {
  void (*poll)(lua_State *L);           /* raises when the code running on L must stop, or NULL */
  long budget;                          /* steps one call may take; 0: no limit */
};

/* Sets find, match, gmatch and gsub in the table on top of L (a string library table).
** Strings' __index is that table, so s:find(...) uses them too. g NULL: no limit. */
void lpattern_install(lua_State *L, const struct lpattern_guard *g);

#endif
