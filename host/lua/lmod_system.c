/*
** lmod_system.c — the `system` module (wippy-compat.md §3.21), the parts a single host has:
**   memory.stats()       {lua_bytes, lua_limit, heap_bytes, heap_system_bytes, rss_bytes}
**   gc.collect()         a full collection of this state → bytes freed
**   runtime.stats()      {processes, hosts, workers, terminal_hosts}
**   hosts.list()         {{id, kind, workers, processes, started}, ...} in start order
**   processes(host_id)   {{pid, entry}, ...} or nil, NOT_FOUND
**   modules()            the built-in module names (sorted)
**   exit(code)           only from a process on a terminal host (the -x program, an
**                        interactive tool): the host shuts down as on SIGTERM and exits with
**                        code; elsewhere nil, PERMISSION_DENIED (a handler, a job or a service
**                        must not end the host)
** Misuse (wrong argument types) raises. Wippy also has supervisor state, cluster/raft info and
** system.lock; a single host has none of them, so they are not here.
** Owner: the thread running the calling state. The host and process tables are read under
** the runtime's locks (rt_list_scheds, rt_foreach_proc).
*/
#include "base/metrics.h"
#include "lmod.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "runtime/luaenv.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"
#include "value/errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct rt *rt_of(lua_State *L) { return proc_of(L)->rt; }

static void set_int(lua_State *L, const char *k, lua_Integer v) { lua_pushinteger(L, v); lua_setfield(L, -2, k); }
static void set_str(lua_State *L, const char *k, const char *v) { lua_pushstring(L, v); lua_setfield(L, -2, k); }

static int l_memory_stats(lua_State *L) {
  struct proc *p = proc_of(L);
  struct host_mem hm;
  metrics_host_memory(&hm);
  lua_createtable(L, 0, 5);
  set_int(L, "lua_bytes", (lua_Integer)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0));
  set_int(L, "lua_limit", (lua_Integer)p->mem_limit);
  set_int(L, "heap_bytes", (lua_Integer)hm.heap_in_use);
  set_int(L, "heap_system_bytes", (lua_Integer)hm.heap_system);
  set_int(L, "rss_bytes", (lua_Integer)hm.rss);
  return 1;
}

static int l_gc_collect(lua_State *L) {
  lua_Integer before = (lua_Integer)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  lua_Integer after = (lua_Integer)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
  lua_pushinteger(L, before > after ? before - after : 0);
  return 1;
}

static int l_runtime_stats(lua_State *L) {
  struct sched_ent *ss;
  size_t n = rt_list_scheds(rt_of(L), &ss);
  long procs = 0, workers = 0, terms = 0;
  for (size_t i = 0; i < n; i++) {
    procs += sched_procs(ss[i].s);
    workers += sched_workers(ss[i].s);
    terms += ss[i].terminal;
  }
  free(ss);
  lua_createtable(L, 0, 4);
  set_int(L, "processes", procs);
  set_int(L, "hosts", (lua_Integer)n);
  set_int(L, "terminal_hosts", terms);
  set_int(L, "workers", workers);
  return 1;
}

static int l_hosts_list(lua_State *L) {
  struct sched_ent *ss;
  size_t n = rt_list_scheds(rt_of(L), &ss);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    set_str(L, "id", ss[i].id);
    set_str(L, "kind", ss[i].terminal ? "terminal.host" : "process.host");
    set_int(L, "workers", sched_workers(ss[i].s));
    set_int(L, "processes", sched_procs(ss[i].s));
    set_int(L, "started", (lua_Integer)sched_started(ss[i].s));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(ss);
  return 1;
}

/* Collected under the pid lock: copies only (no Lua calls there). */
struct plist { struct { char pid[96]; char *entry; } *v; size_t n, cap; };

static void add_proc(struct proc *p, void *ud) {
  struct plist *l = ud;
  if (l->n == l->cap) { l->cap = l->cap ? l->cap * 2 : 16; l->v = realloc(l->v, l->cap * sizeof *l->v); }
  if (!l->v) abort();
  snprintf(l->v[l->n].pid, sizeof l->v[l->n].pid, "%s", p->pidstr);
  l->v[l->n].entry = p->code && p->code->e ? xstrdup(p->code->e->id) : NULL;
  l->n++;
}

static int l_processes(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  struct rt *rt = rt_of(L);
  struct sched_ent *ss;
  size_t n = rt_list_scheds(rt, &ss);
  struct sched *s = NULL;
  for (size_t i = 0; i < n && !s; i++) if (strcmp(ss[i].id, id) == 0) s = ss[i].s;
  free(ss);
  if (!s) return errors_fail(L, EK_NOT_FOUND, "no host %s", id);
  struct plist l = {NULL, 0, 0};
  rt_foreach_proc(rt, s, add_proc, &l);
  lua_createtable(L, (int)l.n, 0);
  for (size_t i = 0; i < l.n; i++) {
    lua_createtable(L, 0, 2);
    set_str(L, "pid", l.v[i].pid);
    if (l.v[i].entry) set_str(L, "entry", l.v[i].entry);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    free(l.v[i].entry);
  }
  free(l.v);
  return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int l_modules(lua_State *L) {
  const struct luaenv_lib *libs = rt_of(L)->libs;
  size_t n = 0;
  while (libs && libs[n].name) n++;
  const char **names = xmalloc((n ? n : 1) * sizeof *names);
  for (size_t i = 0; i < n; i++) names[i] = libs[i].name;
  qsort(names, n, sizeof *names, cmp_str);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(names);
  return 1;
}

static int l_exit(lua_State *L) {
  lua_Integer code = luaL_optinteger(L, 1, 0);
  struct proc *p = proc_of(L);
  if (!p->terminal)
    return errors_fail(L, EK_PERMISSION_DENIED, "system.exit: only a process on a terminal host may end the host");
  if (code < 0 || code > 255) return errors_fail(L, EK_INVALID, "system.exit: the code must be 0..255");
  int none = 0;
  atomic_compare_exchange_strong(&p->rt->exit_request, &none, (int)code + 1);   /* the first wins */
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_system(lua_State *L) {
  static const luaL_Reg funcs[] = {{"processes", l_processes}, {"modules", l_modules}, {"exit", l_exit}, {NULL, NULL}};
  static const luaL_Reg memory[] = {{"stats", l_memory_stats}, {NULL, NULL}};
  static const luaL_Reg gc[] = {{"collect", l_gc_collect}, {NULL, NULL}};
  static const luaL_Reg runtime[] = {{"stats", l_runtime_stats}, {NULL, NULL}};
  static const luaL_Reg hosts[] = {{"list", l_hosts_list}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_newtable(L); luaL_setfuncs(L, memory, 0); lua_setfield(L, -2, "memory");
  lua_newtable(L); luaL_setfuncs(L, gc, 0); lua_setfield(L, -2, "gc");
  lua_newtable(L); luaL_setfuncs(L, runtime, 0); lua_setfield(L, -2, "runtime");
  lua_newtable(L); luaL_setfuncs(L, hosts, 0); lua_setfield(L, -2, "hosts");
  return 1;
}
