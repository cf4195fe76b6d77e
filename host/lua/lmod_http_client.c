/*
** lmod_http_client.c — the `http_client` module (wippy-compat.md §3.17, issue 12): get, post,
** put, patch, delete, head, request, request_batch, encode_uri, decode_uri. A call parks its
** task on a PEND_IO session (task.h) while the engine (http/httpc.h) runs the transfer on its
** I/O thread; the completion comes back as an MK_IO message and is pushed here (req_push).
** Owner: the thread running the calling state; the done callbacks run on the I/O thread.
**
** Hand-off of a request (exactly once; `claim` in struct httpc_req, or the batch's):
**   WAITING → POSTED  by done: the completion is posted; the message owns the request and
**                     gives it to req_push (waiter found) or req_drop (not found / discarded).
**   WAITING → GONE    by req_cancel (pending_free: the waiter left first): it aborts the
**                     transfer by id before the swap; the later done sees GONE and frees.
*/
#include "http/httpc.h"
#include "lfuture.h"
#include "lmod.h"
#include "lmod_http_stream.h"
#include "runtime/call.h"
#include "runtime/chan.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "runtime/task.h"
#include "value/errors.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { CLAIM_WAITING, CLAIM_POSTED, CLAIM_GONE };

#define DEFAULT_TIMEOUT_MS 30000                   /* Wippy's */
#define DEFAULT_MAX_BODY ((size_t)32 << 20)         /* 32 MiB: well under the 256 MiB heap */
#define DEFAULT_REDIRECTS 10                        /* Go's http.Client */

/* ---- results -------------------------------------------------------------------- */

static const struct { const char *kind; int retryable; } fail_kinds[] = {
  [HF_NONE] = {EK_UNKNOWN, 0},        [HF_TIMEOUT] = {EK_TIMEOUT, 1},
  [HF_UNAVAILABLE] = {EK_UNAVAILABLE, 1}, [HF_INVALID] = {EK_INVALID, 0},
  [HF_TOO_LARGE] = {EK_INVALID, 0},   [HF_TLS_VERIFY] = {EK_UNAVAILABLE, 0},
  [HF_CANCELED] = {EK_CANCELED, 0},   [HF_OTHER] = {EK_INTERNAL, 0},
  [HF_BUSY] = {EK_RATE_LIMITED, 1},   [HF_STOPPED] = {EK_UNAVAILABLE, 0},
};

/* Marks r failed before it reached the engine (submit refused it). */
static void refuse(struct httpc_req *r, int rc) {
  r->fail = rc == HTTPC_BUSY ? HF_BUSY : HF_STOPPED;
  snprintf(r->errmsg, sizeof r->errmsg, "%s", rc == HTTPC_BUSY
           ? "http_client: too many requests in flight (http_client.max_in_flight)"
           : "http_client: the host is shutting down");
}

static void push_error(lua_State *L, const char *kind, int retryable, const char *msg) {
  lua_pushstring(L, msg);
  lua_pushstring(L, kind);
  lua_pushboolean(L, retryable);
  lua_pushnil(L);
  lua_pushnil(L);
  errors_build(L);
}

static void push_response(lua_State *L, struct httpc_req *r) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, r->status);
  lua_setfield(L, -2, "status_code");
  lua_pushlstring(L, r->resp.data, r->resp.len);
  lua_setfield(L, -2, "body");
  lua_pushinteger(L, (lua_Integer)r->resp.len);
  lua_setfield(L, -2, "body_size");
  lua_createtable(L, 0, (int)r->nhdrs);
  for (size_t i = 0; i < r->nhdrs; i++) {
    lua_pushstring(L, r->hdrs[i].value);
    lua_setfield(L, -2, r->hdrs[i].name);
  }
  lua_setfield(L, -2, "headers");
  lua_pushstring(L, r->eff_url ? r->eff_url : r->url);
  lua_setfield(L, -2, "url");
}

int lhttpc_push_fail(lua_State *L, int fail, const char *msg) {
  luaL_checkstack(L, 8, "http_client");
  lua_pushnil(L);
  push_error(L, fail_kinds[fail].kind, fail_kinds[fail].retryable, msg);
  return 2;
}

void lhttpc_refuse(struct httpc_req *r, int rc) { refuse(r, rc); }

/* Pushes (response) or (nil, err) for a finished request. Returns the count. */
static int push_result(lua_State *L, struct httpc_req *r) {
  luaL_checkstack(L, 8, "http_client");
  if (r->fail == HF_NONE) { push_response(L, r); return 1; }
  lua_pushnil(L);
  push_error(L, fail_kinds[r->fail].kind, fail_kinds[r->fail].retryable, r->errmsg);
  return 2;
}

/* ---- one request's hooks ---------------------------------------------------------------- */

static int req_push(lua_State *co, void *req) {
  int n = push_result(co, req);
  httpc_req_free(req);
  return n;
}

static void req_drop(void *req) { httpc_req_free(req); }

static void req_cancel(void *req) {
  struct httpc_req *r = req;
  httpc_abort(r->engine, r->id);
  int want = CLAIM_WAITING;
  atomic_compare_exchange_strong(&r->claim, &want, CLAIM_GONE);   /* lost: the message owns r */
}

static const struct io_ops req_ops = {req_push, req_drop, req_cancel, lfuture_settle};

static void req_done(struct httpc_req *r) {
  int want = CLAIM_WAITING;
  if (atomic_compare_exchange_strong(&r->claim, &want, CLAIM_POSTED))
    proc_post(r->ud, r->pid, msg_new_io(r->session, &req_ops, r), NULL);
  else
    httpc_req_free(r);                        /* GONE: the waiter left */
}

/* ---- options -------------------------------------------------------------------- */

/* C memory being built while option parsing may raise: a userdata whose __gc frees it
** unless hold_release took it back. */
#define HOLD_MT "taskhost.http_client.hold"
struct hold { void (*free)(void *); void *ptr; };

static int hold_gc(lua_State *L) {
  struct hold *h = lua_touserdata(L, 1);
  if (h->ptr) h->free(h->ptr);
  h->ptr = NULL;
  return 0;
}

static struct hold *hold_push(lua_State *L, void (*fn)(void *), void *ptr) {
  struct hold *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->free = fn;
  h->ptr = ptr;
  if (luaL_newmetatable(L, HOLD_MT)) {
    lua_pushcfunction(L, hold_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return h;
}

static void req_free_v(void *r) { httpc_req_free(r); }

static void add_escaped(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') buf_addc(b, (char)c);
    else { buf_addc(b, '%'); buf_addc(b, hex[c >> 4]); buf_addc(b, hex[c & 15]); }
  }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void buf_free_v(void *b) { buf_free(b); free(b); }

/* Appends one k=v (or k=v per item of an array value) to b. */
static void add_pair(lua_State *L, struct buf *b, const char *k, int vidx, const char *opt) {
  if (lua_istable(L, vidx)) {
    for (lua_Integer i = 1; lua_rawgeti(L, vidx, i) != LUA_TNIL; i++) {
      add_pair(L, b, k, lua_gettop(L), opt);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return;
  }
  if (!lua_isstring(L, vidx) && !lua_isboolean(L, vidx))
    luaL_error(L, "http_client: %s.%s must be a string, number, boolean or array", opt, k);
  if (b->len) buf_addc(b, '&');
  add_escaped(b, k, strlen(k));
  buf_addc(b, '=');
  size_t n;
  const char *v = lua_isboolean(L, vidx) ? (lua_toboolean(L, vidx) ? "true" : "false") : lua_tolstring(L, vidx, &n);
  add_escaped(b, v, strlen(v));
}

/* Pushes the table at idx url-encoded, keys sorted (a stable wire form). Raises on a bad
** key or value; what it builds lives in userdata meanwhile, so nothing leaks then. */
static void push_encoded(lua_State *L, int idx, const char *opt) {
  if (!lua_istable(L, idx)) luaL_error(L, "http_client: %s must be a table", opt);
  size_t n = 0;
  for (lua_pushnil(L); lua_next(L, idx); n++) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "http_client: %s keys must be strings", opt);
  }
  const char **keys = lua_newuserdatauv(L, (n ? n : 1) * sizeof *keys, 0);
  size_t i = 0;                               /* no Lua runs between the passes: same keys */
  for (lua_pushnil(L); lua_next(L, idx);) {
    lua_pop(L, 1);
    if (i < n) keys[i++] = lua_tostring(L, -1);   /* the table anchors its key strings */
  }
  qsort(keys, i, sizeof *keys, cmp_str);
  struct buf *b = xmalloc(sizeof *b);
  buf_init(b);
  struct hold *h = hold_push(L, buf_free_v, b);
  for (size_t k = 0; k < i; k++) {
    lua_getfield(L, idx, keys[k]);
    add_pair(L, b, keys[k], lua_gettop(L), opt);
    lua_pop(L, 1);
  }
  lua_pushlstring(L, b->data, b->len);
  h->ptr = NULL;
  buf_free_v(b);
  lua_replace(L, -3);                         /* the text where the keys were */
  lua_pop(L, 1);
}

static char *opt_string(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  char *s = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "http_client: option %s must be a string", k);
    s = xstrdup(lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  return s;
}

/* timeout: seconds (number) or a duration string; -1 when invalid. */
static long opt_timeout(lua_State *L, int t) {
  lua_getfield(L, t, "timeout");
  long ms = DEFAULT_TIMEOUT_MS;
  int64_t ns;
  if (lua_type(L, -1) == LUA_TNUMBER) ms = (long)(lua_tonumber(L, -1) * 1000.0);
  else if (lua_type(L, -1) == LUA_TSTRING)
    ms = duration_parse(lua_tostring(L, -1), &ns) == 0 ? (long)(ns / 1000000) : -1;
  else if (!lua_isnil(L, -1)) luaL_error(L, "http_client: timeout must be seconds or a duration string");
  lua_pop(L, 1);
  return ms;
}

static void opt_headers(lua_State *L, int t, struct httpc_req *r, int *has_ctype) {
  lua_getfield(L, t, "headers");
  int h = lua_gettop(L);
  if (!lua_isnil(L, h)) {
    if (!lua_istable(L, h)) luaL_error(L, "http_client: headers must be a table");
    struct buf line;
    buf_init(&line);
    lua_pushnil(L);
    while (lua_next(L, h)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
        buf_free(&line);
        luaL_error(L, "http_client: headers must map names to strings");
      }
      const char *name = lua_tostring(L, -2), *value = lua_tostring(L, -1);
      if (!*name || strpbrk(name, ":\r\n") || strpbrk(value, "\r\n")) {   /* no header injection */
        buf_free(&line);
        luaL_error(L, "http_client: header '%s' has an empty name, a ':' in its name or CR/LF", name);
      }
      if (strcasecmp(name, "content-type") == 0) *has_ctype = 1;
      buf_reset(&line);
      buf_printf(&line, "%s: %s", name, value);
      httpc_req_header(r, line.data);
      lua_pop(L, 1);
    }
    buf_free(&line);
  }
  lua_pop(L, 1);
}

static void opt_tls(lua_State *L, int t, struct httpc_req *r) {
  lua_getfield(L, t, "tls");
  int i = lua_gettop(L);
  if (!lua_isnil(L, i)) {
    if (!lua_istable(L, i)) luaL_error(L, "http_client: tls must be a table");
    r->tls_ca = opt_string(L, i, "ca");
    r->tls_cert = opt_string(L, i, "cert");
    r->tls_key = opt_string(L, i, "key");
    r->tls_server_name = opt_string(L, i, "server_name");
    lua_getfield(L, i, "insecure_skip_verify");
    r->tls_insecure = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static long opt_redirects(lua_State *L, int t) {
  lua_getfield(L, t, "follow_redirects");
  long n = DEFAULT_REDIRECTS;
  if (lua_isboolean(L, -1)) n = lua_toboolean(L, -1) ? DEFAULT_REDIRECTS : 0;
  else if (lua_isinteger(L, -1)) n = (long)lua_tointeger(L, -1);
  else if (!lua_isnil(L, -1)) luaL_error(L, "http_client: follow_redirects must be a count or a boolean");
  lua_pop(L, 1);
  return n < 0 ? 0 : n;
}

/* Body from `body` or `form`; raises when both are given or types are wrong. */
static void opt_body(lua_State *L, int t, struct httpc_req *r, int has_ctype) {
  lua_getfield(L, t, "body");
  lua_getfield(L, t, "form");
  if (!lua_isnil(L, -2) && !lua_isnil(L, -1)) luaL_error(L, "http_client: give body or form, not both");
  if (!lua_isnil(L, -2)) {
    if (!lua_isstring(L, -2)) luaL_error(L, "http_client: body must be a string");
    size_t n;
    const char *s = lua_tolstring(L, -2, &n);
    r->body = xmalloc(n + 1);
    memcpy(r->body, s, n);
    r->body[n] = '\0';
    r->body_len = n;
    r->has_body = 1;
  } else if (!lua_isnil(L, -1)) {
    push_encoded(L, lua_gettop(L), "form");
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    r->body = xmalloc(n + 1);
    memcpy(r->body, s, n + 1);
    r->body_len = n;
    r->has_body = 1;
    lua_pop(L, 1);
    if (!has_ctype) httpc_req_header(r, "Content-Type: application/x-www-form-urlencoded");
  }
  lua_pop(L, 2);
}

static int valid_method(const char *m) {
  if (!*m) return 0;
  for (; *m; m++) if (!((*m >= 'A' && *m <= 'Z') || *m == '-' || *m == '_')) return 0;
  return 1;
}

/* Builds a request from (method, url, opts at index o, may be none). Raises on misuse;
** returns NULL with an INVALID message in err for a bad value (a timeout text). *stream
** gets the stream option; with stream NULL (batch, async) a stream is refused. */
static struct httpc_req *build(lua_State *L, const char *method, int uidx, int o, int *stream_out,
                               char *err, size_t errlen) {
  const char *url = luaL_checkstring(L, uidx);
  if (!lua_isnoneornil(L, o)) luaL_checktype(L, o, LUA_TTABLE);
  char m[16];
  size_t ml = strlen(method);
  if (ml >= sizeof m) luaL_error(L, "http_client: unknown method '%s'", method);
  for (size_t i = 0; i <= ml; i++) m[i] = (char)(method[i] >= 'a' && method[i] <= 'z' ? method[i] - 32 : method[i]);
  if (!valid_method(m)) luaL_error(L, "http_client: unknown method '%s'", method);
  lua_pushstring(L, url);
  if (!lua_isnoneornil(L, o)) {
    lua_getfield(L, o, "query");
    if (!lua_isnil(L, -1)) {
      push_encoded(L, lua_gettop(L), "query");
      lua_remove(L, -2);
      if (lua_rawlen(L, -1)) {
        lua_pushstring(L, strchr(url, '?') ? "&" : "?");
        lua_insert(L, -2);
        lua_concat(L, 3);
      } else lua_pop(L, 1);
    } else lua_pop(L, 1);
  }
  struct httpc_req *r = httpc_req_new(m, lua_tostring(L, -1));
  lua_pop(L, 1);
  r->timeout_ms = DEFAULT_TIMEOUT_MS;
  r->max_body = DEFAULT_MAX_BODY;
  r->max_redirects = DEFAULT_REDIRECTS;
  if (lua_isnoneornil(L, o)) return r;
  struct hold *hd = hold_push(L, req_free_v, r);   /* an option error below raises */
  int has_ctype = 0;
  opt_headers(L, o, r, &has_ctype);
  opt_body(L, o, r, has_ctype);
  opt_tls(L, o, r);
  r->unix_socket = opt_string(L, o, "unix_socket");
  r->max_redirects = opt_redirects(L, o);
  lua_getfield(L, o, "max_response_body");
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) r->max_body = (size_t)lua_tointeger(L, -1);
  else if (!lua_isnil(L, -1)) luaL_error(L, "http_client: max_response_body must be a positive integer");
  lua_pop(L, 1);
  lua_getfield(L, o, "stream");
  int stream = lua_toboolean(L, -1);
  lua_pop(L, 1);
  r->timeout_ms = opt_timeout(L, o);
  hd->ptr = NULL;
  lua_pop(L, 1);
  if (stream_out) *stream_out = stream;
  if (stream && !stream_out) snprintf(err, errlen, "http_client: stream is not supported here (only in a single request)");
  else if (r->timeout_ms < 0) snprintf(err, errlen, "http_client: invalid timeout");
  else return r;
  httpc_req_free(r);
  return NULL;
}

/* A function state's call deadline bounds every transfer it starts. The transfer's timeout
** ends 1 ms after the deadline (rounded up), never before: the call's own deadline decides
** (the handler stops, the transfer is aborted) instead of racing curl's timeout to it. */
static void clamp_to_call(struct proc *p, struct httpc_req *r) {
  if (!p->call || !p->call->deadline) return;
  int64_t left = (p->call->deadline - clock_mono_ns() + 999999) / 1000000 + 1;
  if (left < 1) left = 1;
  if (r->timeout_ms == 0 || r->timeout_ms > left) r->timeout_ms = (long)left;
}

void lhttpc_clamp(struct task *t, struct httpc_req *r) { clamp_to_call(t->p, r); }

static struct httpc *engine(lua_State *L) { return rt_find_service(proc_of(L)->rt, "http_client"); }

/* Submits r for task t and parks it. Returns lua_yield's, or pushes nil, err. */
/* Hands r to the engine under session pe (p's), to be completed by req_done. On a refusal
** the session is freed without cancel (never handed over) and r holds the refusal's error;
** returns httpc_submit's code. */
static int submit(struct httpc *h, struct proc *p, struct pending *pe, struct httpc_req *r) {
  r->done = req_done;
  r->ud = p->rt;
  r->pid = p->pid;
  r->session = pe->session;
  int rc = httpc_submit(h, r);
  if (rc != HTTPC_OK) {
    pe->io = NULL;                            /* never handed over: not the engine's to cancel */
    pending_free(p, pe);
    refuse(r, rc);
  }
  return rc;
}

static int run_one(lua_State *L, struct task *t, struct httpc_req *r) {
  struct proc *p = t->p;
  struct httpc *h = engine(L);
  if (!h) { httpc_req_free(r); return errors_fail(L, EK_UNAVAILABLE, "http_client is not running"); }
  clamp_to_call(p, r);
  struct pending *pe = pending_new_io(p, t, &req_ops, r);
  if (submit(h, p, pe, r) != HTTPC_OK) return req_push(L, r);
  t->pend = pe;
  task_park(t);
  return lua_yield(L, 0);
}

static int do_request(lua_State *L, const char *method, int uidx, int o) {
  char err[128];
  int stream = 0;
  struct httpc_req *r = build(L, method, uidx, o, &stream, err, sizeof err);
  if (!r) return errors_fail(L, EK_INVALID, "%s", err);
  struct task *t = task_check_blocking(L, "http_client");
  struct httpc *h = stream ? engine(L) : NULL;
  if (stream && !h) { httpc_req_free(r); return errors_fail(L, EK_UNAVAILABLE, "http_client is not running"); }
  if (stream) return hstream_start(L, t, h, r);
  return run_one(L, t, r);
}

static int l_request(lua_State *L) { return do_request(L, luaL_checkstring(L, 1), 2, 3); }
static int l_get(lua_State *L) { return do_request(L, "GET", 1, 2); }
static int l_post(lua_State *L) { return do_request(L, "POST", 1, 2); }
static int l_put(lua_State *L) { return do_request(L, "PUT", 1, 2); }
static int l_patch(lua_State *L) { return do_request(L, "PATCH", 1, 2); }
static int l_delete(lua_State *L) { return do_request(L, "DELETE", 1, 2); }
static int l_head(lua_State *L) { return do_request(L, "HEAD", 1, 2); }

/* ---- request_batch ------------------------------------------------------------------
** One session for the whole batch: each item's done counts down `left`; the last one settles
** the batch with the same claim protocol as a single request (WAITING → POSTED / GONE). */

struct batch {
  _Atomic int left;                 /* items still with the engine */
  _Atomic int claim;
  struct rt *rt;
  uint64_t pid, session;
  int n;
  struct httpc_req *items[];        /* each item's result, in order */
};

static void batch_free(struct batch *b) {
  for (int i = 0; i < b->n; i++) httpc_req_free(b->items[i]);
  free(b);
}

static int batch_push(lua_State *co, void *req) {
  struct batch *b = req;
  luaL_checkstack(co, 12, "http_client");
  lua_createtable(co, b->n, 0);
  lua_createtable(co, b->n, 0);
  for (int i = 0; i < b->n; i++) {
    int n = push_result(co, b->items[i]);
    if (n == 1) lua_rawseti(co, -3, i + 1);
    else { lua_rawseti(co, -3, i + 1); lua_pop(co, 1); }
  }
  batch_free(b);
  return 2;
}

static void batch_drop(void *req) { batch_free(req); }
static void batch_free_v(void *b) { batch_free(b); }

static void batch_cancel(void *req) {
  struct batch *b = req;
  for (int i = 0; i < b->n; i++)
    if (b->items[i]->engine) httpc_abort(b->items[i]->engine, b->items[i]->id);
  int want = CLAIM_WAITING;
  atomic_compare_exchange_strong(&b->claim, &want, CLAIM_GONE);
}

static const struct io_ops batch_ops = {batch_push, batch_drop, batch_cancel};

static void batch_settle(struct batch *b) {
  int want = CLAIM_WAITING;
  if (atomic_compare_exchange_strong(&b->claim, &want, CLAIM_POSTED))
    proc_post(b->rt, b->pid, msg_new_io(b->session, &batch_ops, b), NULL);
  else
    batch_free(b);
}

static void item_done(struct httpc_req *r) {
  struct batch *b = r->ud;
  if (atomic_fetch_sub(&b->left, 1) == 1) batch_settle(b);
}

/* Item i of the list at index 1: {method, url [, opts]}. A bad value fails only that item. */
static struct httpc_req *batch_item(lua_State *L, int i) {
  if (lua_rawgeti(L, 1, i) != LUA_TTABLE) luaL_error(L, "http_client.request_batch: item %d must be {method, url, options}", i);
  int it = lua_gettop(L);
  lua_rawgeti(L, it, 1);
  lua_rawgeti(L, it, 2);
  lua_rawgeti(L, it, 3);
  if (lua_type(L, it + 1) != LUA_TSTRING) luaL_error(L, "http_client.request_batch: item %d needs a method", i);
  char err[128];
  struct httpc_req *r = build(L, lua_tostring(L, it + 1), it + 2, it + 3, NULL, err, sizeof err);
  if (!r) {
    r = httpc_req_new("GET", "");
    r->fail = HF_INVALID;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", err);
  }
  lua_settop(L, it - 1);
  return r;
}

static int l_request_batch(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  struct task *t = task_check_blocking(L, "http_client.request_batch");
  struct proc *p = t->p;
  struct httpc *h = engine(L);
  if (!h) return errors_fail(L, EK_UNAVAILABLE, "http_client is not running");
  struct batch *b = xcalloc(1, sizeof *b + (size_t)n * sizeof b->items[0]);
  b->n = n;
  b->rt = p->rt;
  b->pid = p->pid;
  struct hold *hd = hold_push(L, batch_free_v, b);
  for (int i = 0; i < n; i++) b->items[i] = batch_item(L, i + 1);   /* may raise: nothing sent yet */
  hd->ptr = NULL;
  lua_pop(L, 1);
  struct pending *pe = pending_new_io(p, t, &batch_ops, b);
  b->session = pe->session;
  atomic_store(&b->left, n + 1);              /* +1: this function's own hold, released below */
  for (int i = 0; i < n; i++) {
    struct httpc_req *r = b->items[i];
    r->done = item_done;
    r->ud = b;
    clamp_to_call(p, r);
    if (r->fail) { atomic_fetch_sub(&b->left, 1); continue; }   /* a bad item: its error stands */
    int rc = httpc_submit(h, r);
    if (rc == HTTPC_OK) continue;
    refuse(r, rc);
    atomic_fetch_sub(&b->left, 1);
  }
  if (atomic_fetch_sub(&b->left, 1) == 1) {   /* all done already (or none sent) */
    pe->io = NULL;
    pending_free(p, pe);
    return batch_push(L, b);
  }
  t->pend = pe;
  task_park(t);
  return lua_yield(L, 0);
}

/* ---- futures ----------------------------------------------------------------------
** http_client.async(method, url, opts) → a Future (lua/lfuture.h, LF_VALUE: its channel
** receives the response, or the error object on failure). */

static int l_async(lua_State *L) {
  const char *method = luaL_checkstring(L, 1);
  char err[128];
  struct httpc_req *r = build(L, method, 2, 3, NULL, err, sizeof err);
  struct proc *p = proc_of(L);
  lfuture_new(L, LF_VALUE);
  int fidx = lua_gettop(L);
  struct httpc *h = engine(L);
  if (!r || !h) {
    if (r) httpc_req_free(r);
    lua_pushvalue(L, fidx);
    lua_pushnil(L);
    if (!h) push_error(L, EK_UNAVAILABLE, 0, "http_client is not running");
    else push_error(L, EK_INVALID, 0, err);
    lfuture_settle(L, 2);
    lua_settop(L, fidx);
    return 1;
  }
  clamp_to_call(p, r);
  struct pending *pe = pending_new_io(p, NULL, &req_ops, r);
  lfuture_bind(L, fidx, pe);
  if (submit(h, p, pe, r) != HTTPC_OK) {
    lua_pushvalue(L, fidx);
    lfuture_settle(L, req_push(L, r));
    lua_settop(L, fidx);
  }
  return 1;
}

/* ---- encode_uri / decode_uri ------------------------------------------------------ */

static int l_encode_uri(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  struct buf b;
  buf_init(&b);
  add_escaped(&b, s, n);
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

/* %XX decoded and '+' read as a space (query-string rules); a bad escape is nil, INVALID. */
static int l_decode_uri(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+') { luaL_addchar(&b, ' '); continue; }
    if (s[i] != '%') { luaL_addchar(&b, s[i]); continue; }
    int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1, lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
    if (lo < 0) return errors_fail(L, EK_INVALID, "decode_uri: invalid escape at byte %d", (int)i + 1);
    luaL_addchar(&b, (char)(hi * 16 + lo));
    i += 2;
  }
  luaL_pushresult(&b);
  return 1;
}

int luaopen_http_client(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"get", l_get}, {"post", l_post}, {"put", l_put}, {"patch", l_patch},
    {"delete", l_delete}, {"head", l_head}, {"request", l_request},
    {"request_batch", l_request_batch}, {"encode_uri", l_encode_uri},
    {"decode_uri", l_decode_uri}, {"async", l_async}, {NULL, NULL}};
  lfuture_open(L);
  hstream_open(L);
  luaL_newlib(L, funcs);
  return 1;
}
