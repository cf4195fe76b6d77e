/*
** lmod_http_stream.c — http_client responses with `stream = true` (lmod_http_stream.h): the
** call returns at the head with res.stream, whose :read([n]) parks on a PEND_IO session until
** body bytes, the end or a failure arrive, and whose :close() (or __gc, __close) aborts.
** Owner: struct hstream is shared by the engine's callbacks (I/O thread: head, sink, done)
** and the process's thread (read, close, the message hooks); `lock` guards the body fields.
**
** Lifetime: `refs` counts the engine's hold (released by done), the Lua side's (the head
** hand-off, then the stream userdata), a parked reader's session and a posted read message.
** Head hand-off (`claim`, as a request's in lmod_http_client.c): head or done posts the
** head message (WAITING → POSTED, the message owns the Lua side's ref), or the waiter left
** first (head_cancel: WAITING → GONE, it releases that ref). A reader: sink or done takes
** read_session under lock and posts it (the session's ref moves to the message), or the
** session is freed first (read_cancel takes it back and releases the ref).
** Back-pressure: sink refuses a piece while HSTREAM_WINDOW bytes are buffered (curl pauses
** and keeps it); a read that drains below the window clears `paused` and calls httpc_resume.
*/
#include "lmod_http_stream.h"
#include "http/httpc.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "value/errors.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_MT "taskhost.http_client.stream"
enum { CLAIM_WAITING, CLAIM_POSTED, CLAIM_GONE };

struct hstream {
  _Atomic int refs;
  _Atomic int claim;                /* the head hand-off */
  struct httpc *engine;
  struct httpc_req *r;              /* the engine's until done; freed with the stream */
  uint64_t id, pid, head_session;
  struct rt *rt;
  long wait_ms;                     /* the head's and each read's wait; 0 = none */
  /* the head: written by the I/O thread before the head message, read after it */
  int head_ok;
  long status;
  struct httpc_hdr *hdrs; size_t nhdrs;
  char *url;
  /* under lock */
  pthread_mutex_t lock;
  struct buf data; size_t off;      /* buffered body: data[off..len) */
  int paused, ended, closed, fail;
  char errmsg[256];
  uint64_t read_session;            /* a parked reader's, 0 = none */
  /* the process's thread only */
  lua_Integer want;                 /* the parked read's n (0 = what is buffered) */
};

static struct hstream *st_ref(struct hstream *st) { atomic_fetch_add(&st->refs, 1); return st; }

static void st_unref(struct hstream *st) {
  if (atomic_fetch_sub(&st->refs, 1) != 1) return;
  for (size_t i = 0; i < st->nhdrs; i++) { free(st->hdrs[i].name); free(st->hdrs[i].value); }
  free(st->hdrs);
  free(st->url);
  httpc_req_free(st->r);
  buf_free(&st->data);
  pthread_mutex_destroy(&st->lock);
  free(st);
}

static void st_unref_v(void *st) { st_unref(st); }

/* ---- reading (the process's thread) ------------------------------------------------ */

/* Pushes the next chunk (at most want bytes), nil at the end, or nil, err. */
static int take(lua_State *co, struct hstream *st, lua_Integer want) {
  luaL_checkstack(co, 8, "http_client stream");
  pthread_mutex_lock(&st->lock);
  size_t avail = st->data.len - st->off;
  if (avail) {
    size_t k = want > 0 && (size_t)want < avail ? (size_t)want : avail;
    lua_pushlstring(co, st->data.data + st->off, k);
    st->off += k;
    if (st->off == st->data.len) { buf_reset(&st->data); st->off = 0; }
    int resume = st->paused && st->data.len - st->off < HSTREAM_WINDOW;
    if (resume) st->paused = 0;
    pthread_mutex_unlock(&st->lock);
    if (resume) httpc_resume(st->engine, st->id);
    return 1;
  }
  int fail = st->closed ? HF_CANCELED : st->fail;
  const char *msg = st->closed ? "http_client: the stream is closed" : st->errmsg;
  pthread_mutex_unlock(&st->lock);
  if (fail == HF_NONE) { lua_pushnil(co); return 1; }
  return lhttpc_push_fail(co, fail, msg);
}

static int read_push(lua_State *co, void *req) {
  struct hstream *st = req;
  int n = take(co, st, st->want);
  st_unref(st);                               /* the message's */
  return n;
}

static void read_cancel(void *req) {
  struct hstream *st = req;
  pthread_mutex_lock(&st->lock);
  int had = st->read_session != 0;            /* else a poster took it: the message holds it */
  st->read_session = 0;
  pthread_mutex_unlock(&st->lock);
  if (had) st_unref(st);
}

static int expire(lua_State *co) {
  return lhttpc_push_fail(co, HF_TIMEOUT, "http_client: stream timed out (timeout)");
}

static const struct io_ops read_ops = {read_push, st_unref_v, read_cancel, NULL, expire};

/* I/O thread, under lock: hands the parked reader's session to a message (or nothing). */
static uint64_t take_reader(struct hstream *st) {
  uint64_t s = st->read_session;
  st->read_session = 0;
  return s;
}

static void post_reader(struct hstream *st, uint64_t session) {
  if (session) proc_post(st->rt, st->pid, msg_new_io(session, &read_ops, st), NULL);
}

/* ---- the head ------------------------------------------------------------------------ */

static void push_stream_obj(lua_State *L, struct hstream *st) {
  struct hstream **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = st;                                  /* takes the Lua side's ref */
  luaL_setmetatable(L, STREAM_MT);
}

static int head_push(lua_State *co, void *req) {
  struct hstream *st = req;
  if (!st->head_ok) {
    pthread_mutex_lock(&st->lock);
    int fail = st->fail;
    char msg[sizeof st->errmsg];
    memcpy(msg, st->errmsg, sizeof msg);
    pthread_mutex_unlock(&st->lock);
    st_unref(st);
    return lhttpc_push_fail(co, fail ? fail : HF_OTHER, msg);
  }
  luaL_checkstack(co, 8, "http_client");
  lua_createtable(co, 0, 6);
  lua_pushinteger(co, st->status);
  lua_setfield(co, -2, "status_code");
  lua_createtable(co, 0, (int)st->nhdrs);
  for (size_t i = 0; i < st->nhdrs; i++) {
    lua_pushstring(co, st->hdrs[i].value);
    lua_setfield(co, -2, st->hdrs[i].name);
    if (strcmp(st->hdrs[i].name, "content-length") == 0) {
      char *end;
      long long n = strtoll(st->hdrs[i].value, &end, 10);
      if (*end == '\0' && n >= 0) { lua_pushinteger(co, n); lua_setfield(co, -3, "body_size"); }
    }
  }
  lua_setfield(co, -2, "headers");
  lua_pushstring(co, st->url);
  lua_setfield(co, -2, "url");
  push_stream_obj(co, st);
  lua_setfield(co, -2, "stream");
  return 1;
}

static void head_cancel(void *req) {
  struct hstream *st = req;
  httpc_abort(st->engine, st->id);
  int want = CLAIM_WAITING;
  if (atomic_compare_exchange_strong(&st->claim, &want, CLAIM_GONE)) st_unref(st);
}

static int head_expire(lua_State *co) {
  return lhttpc_push_fail(co, HF_TIMEOUT, "http_client: no response head within timeout");
}

static const struct io_ops head_ops = {head_push, st_unref_v, head_cancel, NULL, head_expire};

static void post_head(struct hstream *st) {
  int want = CLAIM_WAITING;
  if (atomic_compare_exchange_strong(&st->claim, &want, CLAIM_POSTED))
    proc_post(st->rt, st->pid, msg_new_io(st->head_session, &head_ops, st), NULL);
}

/* ---- the engine's callbacks (I/O thread) ---------------------------------------------- */

static void on_head(struct httpc_req *r) {
  struct hstream *st = r->ud;
  st->status = r->status;
  st->nhdrs = r->nhdrs;                       /* copied: r's point into r->hdr_text, and */
  st->hdrs = xcalloc(r->nhdrs + 1, sizeof *st->hdrs); /* later lines (trailers) stay r's */
  for (size_t i = 0; i < r->nhdrs; i++)
    st->hdrs[i] = (struct httpc_hdr){xstrdup(r->hdrs[i].name), xstrdup(r->hdrs[i].value)};
  st->url = xstrdup(r->eff_url ? r->eff_url : r->url);
  st->head_ok = 1;
  post_head(st);
}

static int on_sink(struct httpc_req *r, const char *data, size_t len) {
  struct hstream *st = r->ud;
  pthread_mutex_lock(&st->lock);
  if (st->closed) { pthread_mutex_unlock(&st->lock); return 0; }   /* the abort is on its way */
  if (st->data.len - st->off >= HSTREAM_WINDOW) {
    st->paused = 1;
    pthread_mutex_unlock(&st->lock);
    return 1;
  }
  if (st->off && st->off >= st->data.len / 2) {   /* reuse the read part */
    memmove(st->data.data, st->data.data + st->off, st->data.len - st->off);
    st->data.len -= st->off;
    st->off = 0;
  }
  buf_add(&st->data, data, len);
  uint64_t s = take_reader(st);
  pthread_mutex_unlock(&st->lock);
  post_reader(st, s);
  return 0;
}

static void on_done(struct httpc_req *r) {
  struct hstream *st = r->ud;
  pthread_mutex_lock(&st->lock);
  st->ended = 1;
  st->fail = r->fail;
  memcpy(st->errmsg, r->errmsg, sizeof st->errmsg);
  uint64_t s = take_reader(st);
  pthread_mutex_unlock(&st->lock);
  if (!r->head_sent) post_head(st);           /* failed before its head: the call gets nil, err */
  post_reader(st, s);
  st_unref(st);                               /* the engine's */
}

/* ---- the API ---------------------------------------------------------------------------- */

int hstream_start(lua_State *L, struct task *t, struct httpc *h, struct httpc_req *r) {
  struct proc *p = t->p;
  struct hstream *st = xcalloc(1, sizeof *st);
  atomic_store(&st->refs, 2);                 /* the engine's and the Lua side's */
  pthread_mutex_init(&st->lock, NULL);
  buf_init(&st->data);
  st->engine = h;
  st->r = r;
  st->rt = p->rt;
  st->pid = p->pid;
  st->wait_ms = r->timeout_ms;
  r->timeout_ms = 0;                          /* the transfer itself may run as long as read */
  lhttpc_clamp(t, r);                         /* ... except past a call's deadline */
  if (r->timeout_ms && (!st->wait_ms || st->wait_ms > r->timeout_ms)) st->wait_ms = r->timeout_ms;
  struct pending *pe = pending_new_io(p, t, &head_ops, st);
  st->head_session = pe->session;
  r->head = on_head;
  r->sink = on_sink;
  r->done = on_done;
  r->ud = st;
  int rc = httpc_submit(h, r);
  if (rc != HTTPC_OK) {
    pe->io = NULL;                            /* never handed over */
    pending_free(p, pe);
    lhttpc_refuse(r, rc);
    int n = lhttpc_push_fail(L, r->fail, r->errmsg);
    atomic_store(&st->refs, 1);
    st_unref(st);
    return n;
  }
  st->id = r->id;                             /* r lives as long as st */
  if (st->wait_ms > 0) pending_arm_timer(p, pe, (int64_t)st->wait_ms * 1000000);
  t->pend = pe;
  task_park(t);
  return lua_yield(L, 0);
}

static struct hstream *check_stream(lua_State *L) {
  struct hstream **box = luaL_checkudata(L, 1, STREAM_MT);
  if (!*box) luaL_error(L, "http_client: the stream was collected");
  return *box;
}

/* stream:read([n]) → the next chunk (at most n bytes; default what is buffered), nil at the
** end, or nil, err (a failure mid-body, TIMEOUT when nothing came within timeout). */
static int s_read(lua_State *L) {
  struct hstream *st = check_stream(L);
  lua_Integer want = luaL_optinteger(L, 2, 0);
  if (want < 0) luaL_argerror(L, 2, "must be positive");
  pthread_mutex_lock(&st->lock);
  int ready = st->data.len > st->off || st->ended || st->closed;
  int busy = st->read_session != 0;
  pthread_mutex_unlock(&st->lock);
  if (ready) return take(L, st, want);
  if (busy) luaL_error(L, "http_client: another coroutine is reading this stream");
  struct task *t = task_check_blocking(L, "stream:read");
  struct proc *p = t->p;
  struct pending *pe = pending_new_io(p, t, &read_ops, st_ref(st));   /* the session's ref */
  st->want = want;
  pthread_mutex_lock(&st->lock);
  ready = st->data.len > st->off || st->ended;
  if (!ready) st->read_session = pe->session;
  pthread_mutex_unlock(&st->lock);
  if (ready) {                                /* it came meanwhile: no wait */
    pe->io = NULL;
    pending_free(p, pe);
    st_unref(st);
    return take(L, st, want);
  }
  if (st->wait_ms > 0) pending_arm_timer(p, pe, (int64_t)st->wait_ms * 1000000);
  t->pend = pe;
  task_park(t);
  return lua_yield(L, 0);
}

/* Aborts the transfer (nothing more is read); the buffered rest is dropped. Idempotent. */
static void close_stream(struct hstream *st) {
  pthread_mutex_lock(&st->lock);
  int was = st->closed || st->ended;
  st->closed = 1;
  buf_reset(&st->data);
  st->off = 0;
  pthread_mutex_unlock(&st->lock);
  if (!was) httpc_abort(st->engine, st->id);
}

static int s_close(lua_State *L) {
  close_stream(check_stream(L));
  return 0;
}

static int s_gc(lua_State *L) {
  struct hstream **box = luaL_checkudata(L, 1, STREAM_MT);
  if (!*box) return 0;
  close_stream(*box);
  st_unref(*box);
  *box = NULL;
  return 0;
}

void hstream_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"read", s_read}, {"close", s_close}, {NULL, NULL}};
  if (luaL_newmetatable(L, STREAM_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, s_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, s_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
}
