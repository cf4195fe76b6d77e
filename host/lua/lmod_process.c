/*
** lmod_process.c — the `process` global (wippy-compat.md §3.1), Message and Payload objects,
** and coroutine.spawn. Argument checks and return conventions only: misuse raises, runtime
** failures return nil, err. Owner: the worker running the calling process.
*/
#include "runtime/chan.h"
#include "registry/code.h"
#include "value/errors.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "registry/registry.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"
#include "value/seri.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_MT "taskhost.message"
#define PAYLOAD_MT "taskhost.payload"

#define EV_EXIT "pid.exit"
#define EV_CANCEL "pid.cancel"
#define EV_LINK_DOWN "pid.link.down"

static void push_pid(lua_State *L, const char *host, uint64_t pid) {
  char s[128];
  rt_pid_format(s, sizeof s, host, pid);
  lua_pushstring(L, s);
}

/* ---- Message and Payload ------------------------------------------------------------ */

/* A received message. Its payload is unpacked on first use: one value is cached in user
** value 1 and the message itself serves as its Payload (msg:payload():data() costs no extra
** object); several values become an array of Payload objects cached in user value 2. */
struct umsg {
  int n;                       /* values in the payload, -1 until unpacked */
  uint8_t kind;
  uint32_t topic_len, len;
  uint64_t from;
  const char *from_host;
  char data[];                 /* topic '\0' body, copied from the C message */
};
/* The message is copied into the userdata, which needs no finalizer: objects with __gc are
** freed only after a finalizer pass, and the collector runs a few per step, so a process
** receiving a million messages would hold them for a long while. */

static void push_payload(lua_State *L, int vidx) {
  vidx = lua_absindex(L, vidx);
  lua_newuserdatauv(L, 0, 1);
  lua_pushvalue(L, vidx);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, PAYLOAD_MT);
}

static int payload_data(lua_State *L) {
  luaL_checkudata(L, 1, PAYLOAD_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int payload_new(lua_State *L) {
  luaL_checkany(L, 1);
  push_payload(L, 1);
  return 1;
}

static struct umsg *check_msg(lua_State *L) { return luaenv_toself(L, MESSAGE_MT); }

static const char message_key = 0;   /* registry[&message_key] = the Message metatable */

static int msg_topic_l(lua_State *L) {
  struct umsg *u = check_msg(L);
  lua_pushlstring(L, u->data, u->topic_len);
  return 1;
}

static int msg_from_l(lua_State *L) {
  struct umsg *u = check_msg(L);
  if (u->from) push_pid(L, u->from_host, u->from);
  else lua_pushliteral(L, "");
  return 1;
}

/* Unpacks the payload of the message at index 1 into its user values, once. */
static void unpack_payload(lua_State *L, struct umsg *u) {
  if (u->n >= 0) return;
  int top = lua_gettop(L);
  int n = seri_unpack(L, u->data + u->topic_len + 1, u->len);
  if (n < 0) luaL_error(L, "corrupt message payload");
  if (n >= 1) {
    lua_pushvalue(L, top + 1);
    lua_setiuservalue(L, 1, 1);
  }
  if (n > 1) {
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) { push_payload(L, top + i); lua_rawseti(L, -2, i); }
    lua_setiuservalue(L, 1, 2);
  }
  u->n = n;
  lua_settop(L, top);
}

/* One value → the message as its Payload; several → an array of Payloads; none → nil. */
static int msg_payload_l(lua_State *L) {
  struct umsg *u = check_msg(L);
  unpack_payload(L, u);
  if (u->n == 0) return 0;
  if (u->n == 1) lua_settop(L, 1);
  else lua_getiuservalue(L, 1, 2);
  return 1;
}

/* Payload:data() when the message is its own Payload: the (first) value. */
static int msg_data_l(lua_State *L) {
  struct umsg *u = check_msg(L);
  unpack_payload(L, u);
  if (u->n == 0) return 0;
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int msg_tostring(lua_State *L) {
  struct umsg *u = luaL_checkudata(L, 1, MESSAGE_MT);     /* a metamethod: no upvalue */
  lua_pushfstring(L, "process.Message{topic=%s}", u->data);
  return 1;
}

static void conv_message(lua_State *L, struct proc *p, struct msg *m) {
  size_t size = (size_t)m->topic_len + 1 + m->len;
  struct umsg *u = lua_newuserdatauv(L, sizeof *u + size, 2);
  u->n = -1;
  u->kind = m->kind;
  u->topic_len = m->topic_len;
  u->len = m->len;
  u->from = m->from;
  u->from_host = m->from_host;
  memcpy(u->data, m->data, size);
  free(m);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &message_key);
  lua_setmetatable(L, -2);
}

/* EXIT / LINK_DOWN / CANCEL → {kind, from, at, result={value, error} | reason}. */
static void conv_event(lua_State *L, struct proc *p, struct msg *m) {
  lua_createtable(L, 0, 4);
  const char *kind = m->kind == MK_EXIT ? EV_EXIT : m->kind == MK_LINK_DOWN ? EV_LINK_DOWN : EV_CANCEL;
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  if (m->from) push_pid(L, m->from_host, m->from);
  else lua_pushliteral(L, "");
  lua_setfield(L, -2, "from");
  lua_pushinteger(L, (lua_Integer)(m->at / 1000000000LL));
  lua_setfield(L, -2, "at");
  if (m->kind == MK_CANCEL) {
    lua_pushstring(L, msg_topic(m));
    lua_setfield(L, -2, "reason");
  } else {
    lua_createtable(L, 0, 2);
    int n = seri_unpack(L, msg_body(m), m->len);
    if (n == 2) {
      lua_setfield(L, -3, "error");
      lua_setfield(L, -2, "value");
    } else if (n > 0) lua_pop(L, n);
    lua_setfield(L, -2, "result");
  }
  free(m);
}

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t resolve_dest(lua_State *L, struct proc *self, int idx) {
  const char *dest = luaL_checkstring(L, idx);
  return rt_resolve(self->rt, dest);
}

static int fail_unresolved(lua_State *L, int idx) {
  return errors_fail(L, EK_NOT_FOUND, "could not resolve: %s", lua_tostring(L, idx));
}

/* Pushes the feed's channel, creating and anchoring it on first use. */
static int feed_channel(lua_State *L, struct feed *f, feed_conv conv) {
  if (!f->ch) {
    f->ch = chan_new(L, 0);
    chan_set_feed(f->ch, f, conv);
    f->chref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->chref);
  return 1;
}

/* ---- process.* ---------------------------------------------------------------------- */

static int l_pid(lua_State *L) {
  lua_pushstring(L, proc_of(L)->pidstr);
  return 1;
}

static int l_send(lua_State *L) {
  struct proc *self = proc_of(L);
  size_t tlen;
  const char *topic = luaL_checklstring(L, 2, &tlen);
  luaL_argcheck(L, topic[0] != '@', 2, "topics starting with '@' are reserved");
  uint64_t pid = resolve_dest(L, self, 1);
  if (!pid) return fail_unresolved(L, 1);
  char err[200];
  buf_reset(&self->scratch);
  int n = lua_gettop(L) - 2;
  if (n > 0 && seri_pack(L, 3, n, &self->scratch, err, sizeof err) != 0)
    return errors_fail(L, EK_INVALID, "%s", err);
  struct msg *m = msg_new(MK_USER, self->pid, topic, tlen, self->scratch.data, self->scratch.len);
  m->from_host = self->host_name;
  if (proc_post(self->rt, pid, m, self) != 0)
    return errors_fail(L, EK_NOT_FOUND, "process %s is not running", lua_tostring(L, 1));
  atomic_fetch_add_explicit(&self->rt->messages_sent, 1, memory_order_relaxed);
  lua_pushboolean(L, 1);
  return 1;
}

static int do_spawn(lua_State *L, int monitor, int link) {
  struct proc *self = proc_of(L);
  char *id = registry_qualify(self->code->e->ns, luaL_checkstring(L, 1));
  char *host = registry_qualify(self->code->e->ns, luaL_checkstring(L, 2));
  lua_pushstring(L, id);
  lua_pushstring(L, host);
  free(id);
  free(host);
  lua_replace(L, 2);
  lua_replace(L, 1);
  struct sched *s = rt_find_sched(self->rt, lua_tostring(L, 2));
  if (!s) return errors_fail(L, EK_NOT_FOUND, "process host '%s' not found", lua_tostring(L, 2));
  struct codeset *cs = rt_code(self->rt);
  const struct code *c = cs ? codeset_get(cs, lua_tostring(L, 1)) : NULL;
  if (!c || strcmp(c->e->kind, "process.lua") != 0) {
    if (cs) codeset_unref(cs);
    return errors_fail(L, EK_NOT_FOUND, "process entry '%s' not found", lua_tostring(L, 1));
  }
  char err[200];
  buf_reset(&self->scratch);
  int n = lua_gettop(L) - 2;
  if (n > 0 && seri_pack(L, 3, n, &self->scratch, err, sizeof err) != 0) {
    codeset_unref(cs);
    return errors_fail(L, EK_INVALID, "%s", err);
  }
  struct spawn_opts o = {
    .args = self->scratch.data, .args_len = self->scratch.len, .spawner = self,
    .monitor_by = monitor ? self->pid : 0, .link_with = link ? self->pid : 0,
  };
  uint64_t pid = proc_spawn(self->rt, s, c, &o);
  codeset_unref(cs);
  if (!pid) return errors_fail(L, EK_UNAVAILABLE, "process host '%s' is stopping", sched_name(s));
  push_pid(L, sched_name(s), pid);
  return 1;
}

static int l_spawn(lua_State *L) { return do_spawn(L, 0, 0); }
static int l_spawn_monitored(lua_State *L) { return do_spawn(L, 1, 0); }
static int l_spawn_linked(lua_State *L) { return do_spawn(L, 0, 1); }
static int l_spawn_linked_monitored(lua_State *L) { return do_spawn(L, 1, 1); }

static int post_control(lua_State *L, int kind, const char *reason) {
  struct proc *self = proc_of(L);
  uint64_t pid = resolve_dest(L, self, 1);
  if (!pid) return fail_unresolved(L, 1);
  struct msg *m = msg_new(kind, self->pid, reason, strlen(reason), NULL, 0);
  m->from_host = self->host_name;
  m->at = clock_wall_ns();
  if (proc_post(self->rt, pid, m, self) != 0)
    return errors_fail(L, EK_NOT_FOUND, "process %s is not running", lua_tostring(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_cancel(lua_State *L) {
  const char *reason = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "cancelled";
  return post_control(L, MK_CANCEL, reason);
}

static int l_terminate(lua_State *L) { return post_control(L, MK_KILL, "terminated"); }

static int l_monitor(lua_State *L) {
  struct proc *self = proc_of(L);
  uint64_t pid = resolve_dest(L, self, 1);
  if (!pid || proc_watch(self->rt, pid, &(struct watcher){.pid = self->pid}) != 0)
    return fail_unresolved(L, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unmonitor(lua_State *L) {
  struct proc *self = proc_of(L);
  uint64_t pid = resolve_dest(L, self, 1);
  if (!pid) return fail_unresolved(L, 1);
  proc_unwatch(self->rt, pid, self->pid);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_link(lua_State *L) {
  struct proc *self = proc_of(L);
  uint64_t pid = resolve_dest(L, self, 1);
  if (!pid || proc_link(self->rt, self->pid, pid) != 0) return fail_unresolved(L, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unlink(lua_State *L) {
  struct proc *self = proc_of(L);
  uint64_t pid = resolve_dest(L, self, 1);
  if (!pid) return fail_unresolved(L, 1);
  proc_unlink(self->rt, self->pid, pid);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_inbox(lua_State *L) { struct proc *p = proc_of(L); return feed_channel(L, &p->inbox, conv_message); }
static int l_events(lua_State *L) { struct proc *p = proc_of(L); return feed_channel(L, &p->events, conv_event); }

/* process.listen delivers the first payload value itself (or a Message with {message=true}). */
static void conv_value(lua_State *L, struct proc *p, struct msg *m) {
  int top = lua_gettop(L);
  int n = seri_unpack(L, msg_body(m), m->len);
  free(m);
  if (n <= 0) { lua_settop(L, top); lua_pushnil(L); return; }
  lua_settop(L, top + 1);
}

/* Moves already-queued inbox messages that match l to its feed (they were waiting for a
** subscription). */
static void claim_queued(struct proc *p, struct listener *l) {
  struct msgq keep = {0};
  struct msg *m;
  while ((m = msgq_pop(&p->inbox.q)))
    msgq_push(proc_route(p, msg_topic(m)) == &l->feed ? &l->feed.q : &keep, m);
  p->inbox.q = keep;
}

static int l_listen(lua_State *L) {
  struct proc *p = proc_of(L);
  const char *topic = luaL_checkstring(L, 1);
  luaL_argcheck(L, topic[0] && topic[0] != '@', 1, "a topic must be non-empty and not start with '@'");
  int as_message = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "message");
    as_message = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  struct listener *l = xcalloc(1, sizeof *l);
  l->pattern = xstrdup(topic);
  l->glob = strpbrk(topic, "*?[") != NULL;
  p->listeners = xrealloc(p->listeners, (p->nlisteners + 1) * sizeof *p->listeners);
  p->listeners[p->nlisteners++] = l;
  claim_queued(p, l);
  return feed_channel(L, &l->feed, as_message ? conv_message : conv_value);
}

/* Ends a subscription; its undelivered messages go back to the inbox. */
static int l_unlisten(lua_State *L) {
  struct proc *p = proc_of(L);
  struct chan *c = chan_check(L, 1);
  for (size_t i = 0; i < p->nlisteners; i++) {
    struct listener *l = p->listeners[i];
    if (l->feed.ch != c) continue;
    memmove(&p->listeners[i], &p->listeners[i + 1], (p->nlisteners - i - 1) * sizeof *p->listeners);
    p->nlisteners--;
    struct msg *m;
    while ((m = msgq_pop(&l->feed.q))) msgq_push(&p->inbox.q, m);
    if (p->inbox.ch) chan_pump(L, p->inbox.ch);
    chan_set_feed(c, NULL, NULL);
    chan_l_close(L);                          /* receivers still waiting get nil, false */
    luaL_unref(L, LUA_REGISTRYINDEX, l->feed.chref);
    free(l->pattern);
    free(l);
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  return 1;
}

static int l_get_options(lua_State *L) {
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, proc_of(L)->trap_links);
  lua_setfield(L, -2, "trap_links");
  return 1;
}

static int l_set_options(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "trap_links") != LUA_TNIL) proc_of(L)->trap_links = lua_toboolean(L, -1);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- process.registry ---------------------------------------------------------------- */

static int l_register(lua_State *L) {
  struct proc *self = proc_of(L);
  const char *name = luaL_checkstring(L, 1);
  luaL_argcheck(L, name[0] && name[0] != '{', 1, "a name must be non-empty and not look like a pid");
  uint64_t pid = lua_isnoneornil(L, 2) ? self->pid : rt_pid_parse(luaL_checkstring(L, 2));
  if (!pid) return errors_fail(L, EK_INVALID, "invalid pid %s", lua_tostring(L, 2));
  uint64_t owner = 0;
  if (rt_name_register(self->rt, name, pid, &owner) != 0)
    return errors_fail(L, EK_ALREADY_EXISTS, "name '%s' is already registered", name);
  if (pid == self->pid) {
    self->names = xrealloc(self->names, (self->nnames + 1) * sizeof *self->names);
    self->names[self->nnames++] = xstrdup(name);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_lookup(lua_State *L) {
  struct proc *self = proc_of(L);
  const char *name = luaL_checkstring(L, 1);
  uint64_t pid = rt_name_lookup(self->rt, name);
  struct proc *p = pid ? rt_pid_get(self->rt, pid) : NULL;
  if (!p) return errors_fail(L, EK_NOT_FOUND, "name '%s' is not registered", name);
  lua_pushstring(L, p->pidstr);
  proc_unref(p);
  return 1;
}

static int l_unregister(lua_State *L) {
  struct proc *self = proc_of(L);
  const char *name = luaL_checkstring(L, 1);
  int removed = rt_name_unregister(self->rt, name, self->pid);
  for (size_t i = 0; removed && i < self->nnames; i++)
    if (strcmp(self->names[i], name) == 0) {
      free(self->names[i]);
      self->names[i] = self->names[--self->nnames];
      break;
    }
  lua_pushboolean(L, removed);
  return 1;
}

/* ---- module ------------------------------------------------------------------------ */

static void open_types(lua_State *L) {
  static const luaL_Reg msg_methods[] = {
    {"topic", msg_topic_l}, {"from", msg_from_l}, {"payload", msg_payload_l},
    {"data", msg_data_l}, {NULL, NULL},
  };
  luaenv_newtype(L, MESSAGE_MT, msg_methods, msg_tostring);
  luaL_getmetatable(L, MESSAGE_MT);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &message_key);
  if (luaL_newmetatable(L, PAYLOAD_MT)) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, payload_data);
    lua_setfield(L, -2, "data");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  chan_open_metatables(L);
}


void lmod_push_payload(lua_State *L, int vidx) {
  vidx = lua_absindex(L, vidx);
  luaL_getmetatable(L, PAYLOAD_MT);
  int missing = lua_isnil(L, -1);
  lua_pop(L, 1);
  if (missing) open_types(L);
  push_payload(L, vidx);
}

int luaopen_process(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"pid", l_pid}, {"id", l_pid}, {"send", l_send}, {"spawn", l_spawn},
    {"spawn_monitored", l_spawn_monitored}, {"spawn_linked", l_spawn_linked},
    {"spawn_linked_monitored", l_spawn_linked_monitored}, {"cancel", l_cancel},
    {"terminate", l_terminate}, {"monitor", l_monitor}, {"unmonitor", l_unmonitor},
    {"link", l_link}, {"unlink", l_unlink}, {"inbox", l_inbox}, {"events", l_events},
    {"listen", l_listen}, {"unlisten", l_unlisten}, {"get_options", l_get_options}, {"set_options", l_set_options},
    {NULL, NULL},
  };
  static const luaL_Reg reg_funcs[] = {
    {"register", l_register}, {"lookup", l_lookup}, {"unregister", l_unregister}, {NULL, NULL},
  };
  static const char *const events[] = {"EXIT", EV_EXIT, "CANCEL", EV_CANCEL,
                                       "LINK_DOWN", EV_LINK_DOWN, NULL};
  open_types(L);
  luaL_newlib(L, funcs);
  lua_createtable(L, 0, 3);
  luaenv_setstrings(L, events);
  lua_setfield(L, -2, "event");
  luaL_newlib(L, reg_funcs);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "LOCAL");
  lua_setfield(L, -2, "registry");
  return 1;
}

int luaopen_channel(lua_State *L) {
  static const luaL_Reg funcs[] = {{"new", chan_l_new}, {"select", chan_l_select}, {NULL, NULL}};
  open_types(L);
  luaL_newlib(L, funcs);
  return 1;
}

/* `payload` global support is minimal: payload.new(v) → Payload with :data(). */
int luaopen_payload(lua_State *L) {
  open_types(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, payload_new);
  lua_setfield(L, -2, "new");
  return 1;
}
