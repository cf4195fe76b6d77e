/*
** lmod_io.c — the `io` module for processes on a terminal host (wippy-compat.md §3.10):
** print, write, eprint, flush, readline. Elsewhere every call returns nil, err.
** Owner: the worker running the calling process; stdout writes are flushed at once so a
** prompt shows before readline parks.
*/
#include "value/errors.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "runtime/task.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>

static int no_terminal(lua_State *L) {
  return errors_fail(L, EK_UNAVAILABLE, "no terminal context: io works only in a process "
                                        "running on a terminal.host");
}

static void write_args(lua_State *L, FILE *f, const char *sep, const char *end) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = luaL_tolstring(L, i, &len);
    if (i > 1 && sep) fputs(sep, f);
    fwrite(s, 1, len, f);
    lua_pop(L, 1);
  }
  if (end) fputs(end, f);
  fflush(f);
}

static int put(lua_State *L, FILE *f, const char *sep, const char *end) {
  if (!proc_of(L)->terminal) return no_terminal(L);
  write_args(L, f, sep, end);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_print(lua_State *L) { return put(L, stdout, "\t", "\n"); }
static int l_write(lua_State *L) { return put(L, stdout, NULL, NULL); }
static int l_eprint(lua_State *L) { return put(L, stderr, "\t", "\n"); }
static int l_flush(lua_State *L) { return put(L, stdout, NULL, NULL); }

/* Returns the next line without its "\n" / "\r\n"; at end of input, nil, err. */
static int l_readline(lua_State *L) {
  struct proc *p = proc_of(L);
  if (!p->terminal) return no_terminal(L);
  struct msg *m = msgq_pop(&p->lines);
  if (m) {
    lua_pushlstring(L, msg_topic(m), m->topic_len);
    free(m);
    return 1;
  }
  if (p->stdin_eof) return errors_fail(L, EK_UNAVAILABLE, "end of input");
  struct task *t = task_check_blocking(L, "io.readline");
  if (p->line_waiter) return luaL_error(L, "io.readline: another coroutine is already reading");
  p->line_waiter = t;
  task_park(t);
  return lua_yield(L, 0);
}

int luaopen_tio(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"print", l_print}, {"write", l_write}, {"eprint", l_eprint}, {"flush", l_flush},
    {"readline", l_readline}, {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
