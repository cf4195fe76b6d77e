/*
** chan.c — see chan.h. Owner: the worker running the process (no locks).
** Buffered values live in the channel's user-value table (slots 1..cap, a ring), so the GC
** sees them; the value of a parked sender is anchored with luaL_ref until it is taken.
*/
#include "chan.h"
#include "msg.h"
#include "proc.h"
#include "task.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

enum { OP_RECV, OP_SEND };
enum { SM_RECV, SM_SEND, SM_SELECT };

struct wnode { struct wnode *prev, *next; struct sel *sel; int ci; };
struct waitq { struct wnode *head, *tail; };

struct chan {
  int cap, count, head;       /* ring of `count` values from slot head+1 */
  int closed;
  struct waitq recvq, sendq;  /* parked receivers / senders, FIFO */
  struct feed *feed;          /* C messages waiting to become values, or NULL */
  feed_conv conv;
  struct proc *p;
};

struct selcase { struct chan *ch; int op; int vref; struct wnode node; };
struct sel { struct task *t; int mode; int n; struct selcase c[]; };

struct ucase { int op; };     /* case userdata: uservalue 1 = channel, 2 = value to send */

/* ---- wait queues ---------------------------------------------------------------- */

static void wq_append(struct waitq *q, struct wnode *n) {
  n->next = NULL;
  n->prev = q->tail;
  if (q->tail) q->tail->next = n;
  else q->head = n;
  q->tail = n;
}

static void wq_remove(struct waitq *q, struct wnode *n) {
  if (n->prev) n->prev->next = n->next;
  else q->head = n->next;
  if (n->next) n->next->prev = n->prev;
  else q->tail = n->prev;
  n->prev = n->next = NULL;
}

static struct waitq *queue_of(struct selcase *c) {
  return c->op == OP_RECV ? &c->ch->recvq : &c->ch->sendq;
}

/* Unlinks a wait record from every channel. The memory stays with its task for reuse. */
void chan_sel_free(lua_State *L, struct sel *s) {
  for (int i = 0; i < s->n; i++) {
    if (s->c[i].ch) wq_remove(queue_of(&s->c[i]), &s->c[i].node);
    if (L && s->c[i].vref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->c[i].vref);
  }
  s->n = 0;
}

/* Completes case ci of a parked select: moves the value on top of L to the task together
** with the case index and `ok`, unlinks the record everywhere and readies the task. */
static void fire(lua_State *L, struct sel *s, int ci, int ok) {
  struct task *t = s->t;
  lua_State *co = t->co;
  lua_checkstack(co, 3);
  lua_pushinteger(co, ci + 1);
  lua_xmove(L, co, 1);
  lua_pushboolean(co, ok);
  t->sel = NULL;
  chan_sel_free(L, s);
  task_wake(t, 3);
}

/* ---- the ring buffer ------------------------------------------------------------- */

static void buffer_push(lua_State *L, int cidx, struct chan *c) {   /* pops the value */
  lua_getiuservalue(L, cidx, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (c->head + c->count) % c->cap + 1);
  lua_pop(L, 1);
  c->count++;
}

static void buffer_pop(lua_State *L, int cidx, struct chan *c) {    /* pushes the value */
  lua_getiuservalue(L, cidx, 1);
  lua_rawgeti(L, -1, c->head + 1);
  lua_pushnil(L);
  lua_rawseti(L, -3, c->head + 1);
  lua_remove(L, -2);
  c->head = (c->head + 1) % c->cap;
  c->count--;
}

/* ---- matching -------------------------------------------------------------------- */

/* Takes the first parked sender's value: pushes it on L and releases the sender. */
static void take_sender(lua_State *L, struct chan *c) {
  struct wnode *n = c->sendq.head;
  struct selcase *sc = &n->sel->c[n->ci];
  lua_rawgeti(L, LUA_REGISTRYINDEX, sc->vref);
  luaL_unref(L, LUA_REGISTRYINDEX, sc->vref);
  sc->vref = LUA_NOREF;
  lua_pushnil(L);
  fire(L, n->sel, n->ci, 1);
}

/* Tries to receive from the channel at cidx. Pushes the value and returns 1 (ok), or pushes
** nil and returns 2 (closed and drained), or returns 0 having pushed nothing. */
static int try_recv(lua_State *L, int cidx, struct chan *c) {
  cidx = lua_absindex(L, cidx);
  if (c->count > 0) {
    buffer_pop(L, cidx, c);
    if (c->sendq.head) {
      take_sender(L, c);
      buffer_push(L, cidx, c);
    }
    return 1;
  }
  if (c->feed && c->feed->q.head) {
    proc_fed(c->p, -1);
    c->conv(L, c->p, msgq_pop(&c->feed->q));
    return 1;
  }
  if (c->sendq.head) { take_sender(L, c); return 1; }
  if (c->closed) { lua_pushnil(L); return 2; }
  return 0;
}

/* Tries to send the value at vidx on the channel at cidx: 1 done, 0 would block, -1 closed. */
static int try_send(lua_State *L, int cidx, struct chan *c, int vidx) {
  cidx = lua_absindex(L, cidx);
  vidx = lua_absindex(L, vidx);
  if (c->closed) return -1;
  if (c->recvq.head) {
    struct wnode *n = c->recvq.head;
    lua_pushvalue(L, vidx);
    fire(L, n->sel, n->ci, 1);
    return 1;
  }
  if (c->count < c->cap) {
    lua_pushvalue(L, vidx);
    buffer_push(L, cidx, c);
    return 1;
  }
  return 0;
}

void chan_pump(lua_State *L, struct chan *c) {
  while (c->recvq.head && c->feed && c->feed->q.head) {
    struct wnode *n = c->recvq.head;
    proc_fed(c->p, -1);
    c->conv(L, c->p, msgq_pop(&c->feed->q));
    fire(L, n->sel, n->ci, 1);
  }
}

int chan_offer(lua_State *L, int cidx) {
  cidx = lua_absindex(L, cidx);
  struct chan *c = chan_check(L, cidx);
  int rc = try_send(L, cidx, c, lua_gettop(L));
  lua_pop(L, 1);
  return rc > 0 ? 0 : -1;
}

/* ---- objects -------------------------------------------------------------------- */

struct chan *chan_new(lua_State *L, int cap) {
  struct chan *c = lua_newuserdatauv(L, sizeof *c, 1);
  *c = (struct chan){.cap = cap};
  c->p = proc_of(L);
  if (cap > 0) {
    lua_createtable(L, cap, 0);
    lua_setiuservalue(L, -2, 1);
  }
  /* Engines make channels for states whose script never touched `channel` (a future's,
  ** a subscription's): the metatable is made on first use wherever that is. */
  if (luaL_getmetatable(L, CHAN_MT) == LUA_TNIL) {
    lua_pop(L, 1);
    chan_open_metatables(L);
    luaL_getmetatable(L, CHAN_MT);
  }
  lua_setmetatable(L, -2);
  return c;
}

struct chan *chan_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, CHAN_MT); }

void chan_set_feed(struct chan *c, struct feed *f, feed_conv conv) { c->feed = f; c->conv = conv; }

/* ---- parking ------------------------------------------------------------------ */

static int chan_k(lua_State *L, int status, lua_KContext ctx);

static struct sel *sel_new(struct task *t, int mode, int n) {
  if (t->sel_cap < n) {
    free(t->sel_spare);
    t->sel_cap = n < 4 ? 4 : n;
    t->sel_spare = malloc(sizeof(struct sel) + (size_t)t->sel_cap * sizeof(struct selcase));
    if (!t->sel_spare) abort();
  }
  struct sel *s = t->sel_spare;
  s->t = t;
  s->mode = mode;
  s->n = n;
  return s;
}

static void sel_add(lua_State *L, struct sel *s, int i, struct chan *c, int op, int vidx) {
  struct selcase *sc = &s->c[i];
  sc->ch = c;
  sc->op = op;
  sc->vref = LUA_NOREF;
  if (op == OP_SEND) {
    lua_pushvalue(L, vidx);
    sc->vref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  sc->node.sel = s;
  sc->node.ci = i;
  wq_append(queue_of(sc), &sc->node);
}

static int park(lua_State *L, struct task *t, struct sel *s) {
  t->sel = s;
  task_park(t);
  return lua_yieldk(L, 0, (lua_KContext)s->mode, chan_k);
}

/* Builds {channel=, value=, ok=} for case ci (1-based) of the cases table at index 1. */
static int select_result(lua_State *L, int ci, int vidx, int ok) {
  vidx = lua_absindex(L, vidx);
  lua_createtable(L, 0, 3);
  lua_rawgeti(L, 1, ci);
  lua_getiuservalue(L, -1, 1);
  lua_setfield(L, -3, "channel");
  lua_pop(L, 1);
  lua_pushvalue(L, vidx);
  lua_setfield(L, -2, "value");
  lua_pushboolean(L, ok);
  lua_setfield(L, -2, "ok");
  return 1;
}

static int case_op(lua_State *L, int ci) {
  lua_rawgeti(L, 1, ci);
  int op = ((struct ucase *)lua_touserdata(L, -1))->op;
  lua_pop(L, 1);
  return op;
}

/* Continuation of every blocking channel call: the stack ends with (ci, value, ok). */
static int chan_k(lua_State *L, int status, lua_KContext ctx) {
  int ci = (int)lua_tointeger(L, -3), ok = lua_toboolean(L, -1);
  switch ((int)ctx) {
  case SM_RECV: return 2;                                     /* value, ok */
  case SM_SEND:
    if (!ok) return luaL_error(L, "send on a closed channel");
    lua_pushboolean(L, 1);
    return 1;
  default:
    if (!ok && case_op(L, ci) == OP_SEND) return luaL_error(L, "send on a closed channel");
    return select_result(L, ci, -2, ok);
  }
}

/* ---- Lua API -------------------------------------------------------------------- */

int chan_l_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, cap >= 0 && cap <= 1 << 24, 1, "capacity must be between 0 and 16777216");
  chan_new(L, (int)cap);
  return 1;
}

int chan_l_receive(lua_State *L) {
  struct chan *c = chan_check(L, 1);
  int got = try_recv(L, 1, c);
  if (got) { lua_pushboolean(L, got == 1); return 2; }
  struct task *t = task_check_blocking(L, "channel receive");
  struct sel *s = sel_new(t, SM_RECV, 1);
  sel_add(L, s, 0, c, OP_RECV, 0);
  return park(L, t, s);
}

int chan_l_send(lua_State *L) {
  struct chan *c = chan_check(L, 1);
  luaL_checkany(L, 2);
  int rc = try_send(L, 1, c, 2);
  if (rc < 0) return luaL_error(L, "send on a closed channel");
  if (rc > 0) { lua_pushboolean(L, 1); return 1; }
  struct task *t = task_check_blocking(L, "channel send");
  struct sel *s = sel_new(t, SM_SEND, 1);
  sel_add(L, s, 0, c, OP_SEND, 2);
  return park(L, t, s);
}

int chan_l_close(lua_State *L) {
  struct chan *c = chan_check(L, 1);
  if (c->closed) return 0;
  c->closed = 1;
  while (c->recvq.head) { lua_pushnil(L); fire(L, c->recvq.head->sel, c->recvq.head->ci, 0); }
  while (c->sendq.head) { lua_pushnil(L); fire(L, c->sendq.head->sel, c->sendq.head->ci, 0); }
  return 0;
}

static int new_case(lua_State *L, int op) {
  chan_check(L, 1);
  struct ucase *uc = lua_newuserdatauv(L, sizeof *uc, 2);
  uc->op = op;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  if (op == OP_SEND) {
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 2);
  }
  luaL_setmetatable(L, CASE_MT);
  return 1;
}

int chan_l_case_send(lua_State *L) { luaL_checkany(L, 2); return new_case(L, OP_SEND); }
int chan_l_case_receive(lua_State *L) { return new_case(L, OP_RECV); }

/* One pass over the cases in table order; returns 1 with the result pushed if one was ready. */
static int select_ready(lua_State *L, int n) {
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    struct ucase *uc = lua_touserdata(L, -1);
    lua_getiuservalue(L, -1, 1);
    struct chan *c = lua_touserdata(L, -1);
    int got;
    if (uc->op == OP_RECV) {
      got = try_recv(L, -1, c);
      if (got) return select_result(L, i, -1, got == 1);
    } else {
      lua_getiuservalue(L, -2, 2);
      got = try_send(L, -2, c, -1);
      if (got < 0) return luaL_error(L, "select: send on a closed channel (case %d)", i);
      if (got) { lua_pushnil(L); return select_result(L, i, -1, 1); }
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  return 0;
}

static int check_cases(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!luaL_testudata(L, -1, CASE_MT))
      luaL_error(L, "select: case %d is not a channel case (use ch:case_receive() or ch:case_send(v))", i);
    lua_pop(L, 1);
  }
  return n;
}

int chan_l_select(lua_State *L) {
  int n = check_cases(L);
  lua_getfield(L, 1, "default");
  int dflt = lua_toboolean(L, -1) || lua_toboolean(L, 2);
  lua_settop(L, 1);
  if (select_ready(L, n)) return 1;
  if (dflt) {
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "default");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ok");
    return 1;
  }
  if (n == 0) return luaL_error(L, "select with no cases and no default would block forever");
  struct task *t = task_check_blocking(L, "channel.select");
  struct sel *s = sel_new(t, SM_SELECT, n);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    struct ucase *uc = lua_touserdata(L, -1);
    lua_getiuservalue(L, -1, 1);
    struct chan *c = lua_touserdata(L, -1);
    lua_getiuservalue(L, -2, 2);
    sel_add(L, s, i, c, uc->op, -1);
    lua_pop(L, 3);
  }
  return park(L, t, s);
}

static int chan_l_tostring(lua_State *L) {
  struct chan *c = chan_check(L, 1);
  lua_pushfstring(L, "channel(%d/%d)%s", c->count, c->cap, c->closed ? " closed" : "");
  return 1;
}

void chan_open_metatables(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"send", chan_l_send}, {"receive", chan_l_receive}, {"close", chan_l_close},
    {"case_send", chan_l_case_send}, {"case_receive", chan_l_case_receive}, {NULL, NULL},
  };
  if (luaL_newmetatable(L, CHAN_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, chan_l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newmetatable(L, CASE_MT);
  lua_pop(L, 1);
}
