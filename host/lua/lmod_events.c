/*
** lmod_events.c — the `events` module (wippy-compat.md §3.16) over runtime/events.h:
**   events.send(system, kind, path [, data]) → true | nil, err
**       data: any value a message can carry (functions, cycles → nil, INVALID); budgets
**       (events.h) → nil, INVALID; a system starting with "taskhost." is the host's own
**       → nil, PERMISSION_DENIED. Delivered to every matching subscription, best effort.
**   events.subscribe(system_pattern [, kind [, {buffer = n}]]) → Subscription | nil, err
**       patterns are globs (* ? [..]) or exact names; kind nil = every kind. Only a process
**       subscribes (in a function state: nil, INVALID).
**   sub:channel() → a channel whose values are {system, kind, path, data}
**   sub:close() → true (false when already closed): no more events, the channel closes
**   sub:dropped() → events dropped because the buffer was full (beyond Wippy)
** A subscription lives until :close() or the end of its process (it is anchored, so a
** script keeping only the channel keeps receiving).
** Threads: everything runs on the subscribing process's worker; the bus is shared (events.h).
*/
#include "base/util.h"
#include "runtime/chan.h"
#include "runtime/events.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "runtime/task.h"
#include "value/errors.h"
#include "value/json.h"
#include "value/seri.h"
#include "lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB_MT "taskhost.events.subscription"

struct sub {
  struct evbus *bus;
  struct evsub *s;            /* NULL once closed */
  struct listener *l;         /* in the process's listeners while open */
  int ref;                    /* anchors the userdata while open */
};

static int l_send(lua_State *L) {
  const char *system = luaL_checkstring(L, 1), *kind = luaL_checkstring(L, 2);
  const char *path = luaL_checkstring(L, 3);
  struct proc *p = proc_of(L);
  if (strncmp(system, "taskhost.", 9) == 0)
    return errors_fail(L, EK_PERMISSION_DENIED, "events.send: system \"%s\" is the host's own", system);
  if (!p->rt->events) return errors_fail(L, EK_UNAVAILABLE, "events.send: the event bus is not running");
  struct buf data;
  char err[256];
  buf_init(&data);
  int has = !lua_isnoneornil(L, 4);
  if (has && seri_pack(L, 4, 1, &data, err, sizeof err) != 0) {
    buf_free(&data);
    return errors_fail(L, EK_INVALID, "events.send: data: %s", err);
  }
  int rc = evbus_send(p->rt->events, p->pid, p, system, kind, path, has ? EV_DATA_SERI : EV_DATA_NONE,
                      data.data, data.len, err, sizeof err);
  buf_free(&data);
  if (rc < 0) return errors_fail(L, EK_INVALID, "events.send: %s", err);
  lua_pushboolean(L, 1);
  return 1;
}

/* The listener of subscription id in p (its ud is the evsub), or NULL. */
static struct listener *find_listener(struct proc *p, uint64_t id) {
  for (size_t i = 0; i < p->nlisteners; i++) {
    struct listener *l = p->listeners[i];
    if (l->ud && evsub_id(l->ud) == id) return l;
  }
  return NULL;
}

static void push_parts(lua_State *L, const char *s, size_t n, const char *field) {
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, field);
}

/* A message of the subscription's feed becomes {system, kind, path, data}. */
static void conv_event(lua_State *L, struct proc *p, struct msg *m) {
  struct listener *l = find_listener(p, evbus_topic_sub(msg_topic(m)));
  if (l) evsub_taken(l->ud);
  struct evparts e;
  if (evbus_parse(m, &e) != 0) { free(m); lua_pushnil(L); return; }
  lua_createtable(L, 0, 4);
  push_parts(L, e.system, e.nsystem, "system");
  push_parts(L, e.kind, e.nkind, "kind");
  push_parts(L, e.path, e.npath, "path");
  int top = lua_gettop(L);
  if (e.enc == EV_DATA_SERI) {
    if (seri_unpack(L, e.data, e.len) > 0) lua_settop(L, top + 1);
    else lua_settop(L, top);
  } else if (e.enc == EV_DATA_JSON) {
    char err[64];
    if (json_decode(L, e.data, e.len, err, sizeof err) != 0) lua_settop(L, top);
  }
  if (lua_gettop(L) > top) lua_setfield(L, top, "data");
  free(m);
}

static int l_subscribe(lua_State *L) {
  const char *pattern = luaL_checkstring(L, 1);
  const char *kind = luaL_optstring(L, 2, NULL);
  lua_Integer cap = EV_CAP_DEFAULT;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_getfield(L, 3, "buffer") != LUA_TNIL) {
      if (!lua_isinteger(L, -1)) luaL_error(L, "events.subscribe: opts.buffer must be an integer");
      cap = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
  }
  struct proc *p = proc_of(L);
  if (p->is_function && !p->detached)
    return errors_fail(L, EK_INVALID, "events.subscribe: only a process can subscribe (this is a function call)");
  if (!p->rt->events) return errors_fail(L, EK_UNAVAILABLE, "events.subscribe: the event bus is not running");
  char err[160];
  struct evsub *s = evbus_subscribe(p->rt->events, p->pid, pattern, kind,
                                    cap < 1 ? 0 : cap > EV_CAP_MAX ? EV_CAP_MAX + 1 : (size_t)cap, err, sizeof err);
  if (!s) return errors_fail(L, strstr(err, "subscriptions already") ? EK_RATE_LIMITED : EK_INVALID,
                             "events.subscribe: %s", err);
  struct sub *u = lua_newuserdatauv(L, sizeof *u, 1);
  *u = (struct sub){p->rt->events, s, NULL, LUA_NOREF};
  luaL_setmetatable(L, SUB_MT);
  int uidx = lua_gettop(L);
  struct listener *l = xcalloc(1, sizeof *l);
  char topic[32];
  snprintf(topic, sizeof topic, "@events:%llu", (unsigned long long)evsub_id(s));
  l->pattern = xstrdup(topic);
  l->ud = s;
  p->listeners = xrealloc(p->listeners, (p->nlisteners + 1) * sizeof *p->listeners);
  p->listeners[p->nlisteners++] = l;
  u->l = l;
  l->feed.ch = chan_new(L, 0);
  chan_set_feed(l->feed.ch, &l->feed, conv_event);
  lua_pushvalue(L, -1);
  l->feed.chref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setiuservalue(L, uidx, 1);
  lua_pushvalue(L, uidx);
  u->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static struct sub *check_sub(lua_State *L) { return luaL_checkudata(L, 1, SUB_MT); }

static int sub_channel(lua_State *L) {
  check_sub(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int sub_dropped(lua_State *L) {
  struct sub *u = check_sub(L);
  lua_pushinteger(L, u->s ? (lua_Integer)evsub_dropped(u->s) : 0);
  return 1;
}

/* Off the bus, out of the listeners (its undelivered events dropped), the channel closed. */
static int sub_close(lua_State *L) {
  struct sub *u = check_sub(L);
  if (!u->s) { lua_pushboolean(L, 0); return 1; }
  struct proc *p = proc_of(L);
  evsub_close(u->bus, u->s);
  for (size_t i = 0; i < p->nlisteners; i++) {
    if (p->listeners[i] != u->l) continue;
    memmove(&p->listeners[i], &p->listeners[i + 1], (p->nlisteners - i - 1) * sizeof *p->listeners);
    p->nlisteners--;
    break;
  }
  struct listener *l = u->l;
  proc_fed(p, -(long)l->feed.q.n);
  msgq_clear(&l->feed.q);
  chan_set_feed(l->feed.ch, NULL, NULL);
  lua_settop(L, 1);
  lua_pushcfunction(L, chan_l_close);
  lua_getiuservalue(L, 1, 1);
  lua_call(L, 1, 0);                          /* receivers still waiting get nil, false */
  luaL_unref(L, LUA_REGISTRYINDEX, l->feed.chref);
  free(l->pattern);
  free(l);
  luaL_unref(L, LUA_REGISTRYINDEX, u->ref);
  evsub_unref(u->s);
  *u = (struct sub){u->bus, NULL, NULL, LUA_NOREF};
  lua_pushboolean(L, 1);
  return 1;
}

/* Only when the process's state closes (an open subscription is anchored): the listener is
** the process's to free; the bus lets go. */
static int sub_gc(lua_State *L) {
  struct sub *u = check_sub(L);
  if (!u->s) return 0;
  evsub_close(u->bus, u->s);
  if (u->l) u->l->ud = NULL;
  evsub_unref(u->s);
  u->s = NULL;
  return 0;
}

int luaopen_events(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"channel", sub_channel}, {"close", sub_close}, {"dropped", sub_dropped}, {NULL, NULL}};
  if (luaL_newmetatable(L, SUB_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sub_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"send", l_send}, {"subscribe", l_subscribe}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
