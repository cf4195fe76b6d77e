/*
** lmod_queue.c — the `queue` module (wippy-compat.md §3.15, taskhost's job semantics):
**   queue.publish(queue_id, data [, opts]) → job id | nil, err
**       opts: id, delay (duration string or seconds), priority, max_retries, idempotency_key,
**       unique (true: a job already there under that id or key is an ALREADY_EXISTS error;
**       by default its id is returned and nothing is added). opts is also Wippy's headers
**       table: a key above whose value has another type (Wippy's `priority = "high"`) and
**       every other key is a message header (at most 64, 16 KiB of JSON), stored with the
**       job and read in the consumer through queue.message()
**       err kinds: NOT_FOUND (no such queue), RATE_LIMITED (full: capacity or max_waiting),
**       UNAVAILABLE (shutting down, or the queue's database is not writable), ALREADY_EXISTS,
**       INVALID (data not JSON-encodable; an id / idempotency_key empty or over 255 bytes;
**       priority outside int32, max_retries < 0 or > 2^31-1, delay negative or too large:
**       never clamped or wrapped). A header key that is not a string raises. With the SQLite driver
**       it returns once the job is on disk; the calling thread waits for that commit.
**   queue.publish_batch(queue_id, items [, opts]) → {ids} | nil, err   (one commit, all or none)
**   queue.info(queue_id) → counts per state, published, retries, rejected, wait_p50/p99_ms
**   queue.get(queue_id, job_id) → job | nil, err (NOT_FOUND: no such queue or job): the job's
**       record as the job API shows it (GET <path>/{id}): id, queue, state, attempt,
**       max_retries, priority, created_at, run_at, started_at, finished_at (RFC 3339 strings,
**       absent when not set), progress, result (done only), errors (list)
**   queue.list(queue_id [, {state, limit, after}]) → jobs, next | nil, err: records oldest
**       first with a cursor > after (default 0), at most limit (default 100, 1..1000), of one
**       state (default all); next is the cursor of the next page, or nil at the end
**   queue.cancel(queue_id, job_id) → state | nil, err (NOT_FOUND): the state the job was in;
**       a waiting one (queued, scheduled, retrying) is cancelled now, a running one is told to
**       stop and ends as cancelled, a finished one is left as it is
**   queue.forget(queue_id, job_id) → true | nil, err (NOT_FOUND; CONFLICT: not finished, or
**       its final state not yet on disk): the finished job's record is removed (and its row)
**   queue.job() → {id, queue, attempt, max_retries} inside a consumer function, else nil
**   queue.message() → Message (:id(), :header(k), :headers()) inside a consumer, else nil, err
**   queue.progress(value) → true | nil, err: the running job's progress (any JSON value)
** A consumer function gets the job's data as its argument; its return value is stored as
** the result; a raised error or `nil, err` is a failed attempt (retried while attempts
** remain); an error object with retryable = false fails the job at once.
** Owner: the thread running the calling state.
*/
#include "registry/code.h"
#include "registry/registry.h"
#include "value/errors.h"
#include "jobs/jobq.h"
#include "jobs/jobrun.h"
#include "value/json.h"
#include "lmod.h"
#include "runtime/luaenv.h"
#include "runtime/call.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "runtime/rt.h"
#include "base/util.h"

#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct jobctx *current_job(lua_State *L) {
  struct proc *p = proc_of(L);
  return p->call && p->call->kind == CALL_JOB ? p->call->ctx : NULL;
}

/* A bare name is taken in the calling entry's namespace. */
static struct jobq *find_queue(lua_State *L, const char *name) {
  struct proc *p = proc_of(L);
  if (strchr(name, ':') || !p->code) return rt_find_queue(p->rt, name);
  const char *id = p->code->e->id, *colon = strchr(id, ':');
  lua_pushfstring(L, "%s:%s", lua_pushlstring(L, id, colon ? (size_t)(colon - id) : 0), name);
  struct jobq *q = rt_find_queue(p->rt, lua_tostring(L, -1));
  lua_pop(L, 2);
  return q;
}

/* Option values. Another type makes the key a header (read_headers); a value out of range (or an unparsable
** duration) is -1 with the reason in err, for an INVALID error: never wrapped, never clamped. */
static int opt_duration(lua_State *L, int t, const char *key, int64_t *ns, char *err, size_t n) {
  int ty = lua_getfield(L, t, key);
  int ok = 1;
  if (ty == LUA_TNUMBER) {
    double v = lua_tonumber(L, -1);
    ok = v >= 0 && v * 1e9 <= 9.2e18;                 /* NaN fails too */
    if (ok) *ns = (int64_t)(v * 1e9);
  } else if (ty == LUA_TSTRING) {
    ok = duration_parse(lua_tostring(L, -1), ns) == 0 && *ns >= 0;
  }                                                 /* another type: a header */
  lua_pop(L, 1);
  if (!ok) snprintf(err, n, "opts.%s must be a duration (\"5s\") or seconds, 0 to 106751 days", key);
  return ok ? 0 : -1;
}

static const char *opt_string(lua_State *L, int t, const char *key) {
  int ty = lua_getfield(L, t, key);          /* left on the stack: the string stays alive */
  return ty == LUA_TSTRING ? lua_tostring(L, -1) : NULL;   /* another type: a header */
}

static int opt_int(lua_State *L, int t, const char *key, lua_Integer lo, lua_Integer hi, int *v,
                   char *err, size_t n) {
  int ty = lua_getfield(L, t, key), isint = lua_isinteger(L, -1);
  lua_Integer x = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (ty != LUA_TNUMBER) return 0;           /* absent, or another type: a header */
  if (isint && x >= lo && x <= hi) { *v = (int)x; return 0; }
  snprintf(err, n, "opts.%s must be an integer from %lld to %lld", key, (long long)lo, (long long)hi);
  return -1;
}

/* The third argument is Wippy's message headers and taskhost's job options at once: a key
** below whose value has the option's type is an option; every other key (or an option name
** with another type, e.g. Wippy's `priority = "high"`) is a header. */
enum { OT_STR = 1, OT_NUM = 2, OT_BOOL = 4 };
static const struct { const char *key; int types; } job_opts[] = {
  {"id", OT_STR}, {"idempotency_key", OT_STR}, {"delay", OT_STR | OT_NUM},
  {"priority", OT_NUM}, {"max_retries", OT_NUM}, {"unique", OT_BOOL}};

static int is_job_opt(lua_State *L, const char *key, int vidx) {
  int ty = lua_type(L, vidx);
  int t = ty == LUA_TSTRING ? OT_STR : ty == LUA_TNUMBER ? OT_NUM : ty == LUA_TBOOLEAN ? OT_BOOL : 0;
  for (size_t i = 0; i < countof(job_opts); i++)
    if (strcmp(job_opts[i].key, key) == 0) return (job_opts[i].types & t) != 0;
  return 0;
}

#define HEADERS_MAX 64              /* headers per message */
#define HEADERS_BYTES (16 << 10)    /* their JSON text */

/* The headers of the table at idx as a JSON object into hb (left empty when there are
** none): 0, or -1 with the reason in err (over the budget, a value JSON cannot carry). A
** key that is not a string raises. */
static int read_headers(lua_State *L, int idx, struct buf *hb, char *err, size_t n) {
  lua_newtable(L);
  int t = lua_gettop(L), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "headers: keys must be strings");
    if (!is_job_opt(L, lua_tostring(L, -2), -1)) {
      if (++count > HEADERS_MAX) {
        lua_pop(L, 3);
        snprintf(err, n, "more than %d headers", HEADERS_MAX);
        return -1;
      }
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, t);
    } else {
      lua_pop(L, 1);
    }
  }
  int rc = 0;
  if (count) {
    char jerr[128];
    if (json_encode(L, t, hb, jerr, sizeof jerr) != 0) {
      snprintf(err, n, "headers: %s", jerr);
      rc = -1;
    } else if (hb->len > HEADERS_BYTES) {
      snprintf(err, n, "headers over %d bytes of JSON", HEADERS_BYTES);
      rc = -1;
    }
  }
  lua_pop(L, 1);
  return rc;
}

/* The options table at idx (absent: defaults) into o, its headers into hb (o->headers
** points into it): 0, or -1 with the reason in err.
** per_job: id and idempotency_key too (their strings stay on the stack, alive for the call);
** else giving them is an error (a batch cannot share one id). */
static int read_opts(lua_State *L, int idx, int per_job, struct jobq_publish_opts *o,
                     struct buf *hb, char *err, size_t n) {
  *o = (struct jobq_publish_opts){.max_retries = -1};
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  o->id = opt_string(L, idx, "id");
  o->idem_key = opt_string(L, idx, "idempotency_key");
  if (!per_job && (o->id || o->idem_key)) {
    snprintf(err, n, "opts.%s is per job: publish each job with queue.publish",
             o->id ? "id" : "idempotency_key");
    return -1;
  }
  if (opt_duration(L, idx, "delay", &o->delay_ns, err, n) < 0 ||
      opt_int(L, idx, "priority", INT_MIN, INT_MAX, &o->priority, err, n) < 0 ||
      opt_int(L, idx, "max_retries", 0, INT_MAX, &o->max_retries, err, n) < 0 ||
      read_headers(L, idx, hb, err, n) < 0)
    return -1;
  o->headers = hb->len ? hb->data : NULL;
  return 0;
}

/* nil, err for a JQ_* failure: its error kind by table. */
static int publish_failed(lua_State *L, const char *fn, int rc, const char *err) {
  static const struct { int rc; const char *kind; } kinds[] = {
    {JQ_FULL, EK_RATE_LIMITED}, {JQ_DRAINING, EK_UNAVAILABLE}, {JQ_UNAVAILABLE, EK_UNAVAILABLE},
    {JQ_INVALID, EK_INVALID}};
  const char *kind = EK_INTERNAL;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (kinds[i].rc == rc) kind = kinds[i].kind;
  return rc == JQ_INVALID ? errors_fail(L, kind, "%s: %s", fn, err) : errors_fail(L, kind, "%s", err);
}

static int opt_unique(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  int ty = lua_getfield(L, idx, "unique");
  int v = ty == LUA_TBOOLEAN && lua_toboolean(L, -1);   /* another type: a header */
  lua_pop(L, 1);
  return v;
}

static int l_publish(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checkany(L, 2);
  struct jobq_publish_opts o;
  char err[256], id[JOBQ_KEY_MAX + 1];
  struct buf hb;
  buf_init(&hb);
  if (read_opts(L, 3, 1, &o, &hb, err, sizeof err) != 0) {
    buf_free(&hb);
    return errors_fail(L, EK_INVALID, "queue.publish: %s", err);
  }
  int unique = opt_unique(L, 3);
  struct jobq *q = find_queue(L, name);
  if (!q) {
    buf_free(&hb);
    return errors_fail(L, EK_NOT_FOUND, "queue.publish: no queue.queue entry '%s'", name);
  }
  struct buf b;
  buf_init(&b);
  if (json_encode(L, 2, &b, err, sizeof err) != 0) {
    buf_free(&b);
    buf_free(&hb);
    return errors_fail(L, EK_INVALID, "queue.publish: %s", err);
  }
  int existed;
  int rc = jobq_publish(q, b.data, b.len, &o, id, sizeof id, &existed, err, sizeof err);
  buf_free(&b);
  buf_free(&hb);
  if (rc != JQ_OK) return publish_failed(L, "queue.publish", rc, err);
  if (unique && existed) return errors_fail(L, EK_ALREADY_EXISTS, "queue.publish: job %s already exists", id);
  lua_pushstring(L, id);
  return 1;
}

/* ---- reading and cancelling jobs -------------------------------------------------- */

static struct jobq *check_queue(lua_State *L, const char *fn) {
  const char *name = luaL_checkstring(L, 1);
  struct jobq *q = find_queue(L, name);
  if (!q) errors_fail(L, EK_NOT_FOUND, "queue.%s: no queue.queue entry '%s'", fn, name);
  return q;
}

/* Pushes the JSON text in b as a Lua value (the queue wrote it: it decodes). */
static int push_json(lua_State *L, struct buf *b, const char *fn) {
  char err[256];
  int rc = json_decode(L, b->data ? b->data : "null", b->data ? b->len : 4, err, sizeof err);
  buf_free(b);
  if (rc != 0) return errors_fail(L, EK_INTERNAL, "queue.%s: %s", fn, err);
  return 1;
}

static int l_get(lua_State *L) {
  const char *id = luaL_checkstring(L, 2);
  struct jobq *q = check_queue(L, "get");
  if (!q) return 2;
  struct buf b;
  buf_init(&b);
  int s = jobq_job_info(q, id, &b);
  if (s < 0) {
    buf_free(&b);
    if (s == JQ_UNAVAILABLE)
      return errors_fail(L, EK_UNAVAILABLE, "queue.get: the database of %s is not reachable", jobq_name(q));
    return errors_fail(L, EK_NOT_FOUND, "queue.get: no job '%s' in %s", id, jobq_name(q));
  }
  return push_json(L, &b, "get");
}

static int l_list(lua_State *L) {
  int state = -1;
  lua_Integer limit = 100, after = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "state") != LUA_TNIL) {
      const char *s = lua_tostring(L, -1);
      if (!s || (state = job_state_parse(s)) < 0) luaL_error(L, "queue.list: opts.state must be a job state name");
    }
    if (lua_getfield(L, 2, "limit") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || (limit = lua_tointeger(L, -1)) < 1 || limit > 1000)
        luaL_error(L, "queue.list: opts.limit must be an integer from 1 to 1000");
    }
    if (lua_getfield(L, 2, "after") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || (after = lua_tointeger(L, -1)) < 0)
        luaL_error(L, "queue.list: opts.after must be a cursor (a non-negative integer)");
    }
    lua_pop(L, 3);
  }
  struct jobq *q = check_queue(L, "list");
  if (!q) return 2;
  struct buf b;
  int64_t next = 0;
  buf_init(&b);
  jobq_list(q, state, after, (size_t)limit, &b, &next);
  if (push_json(L, &b, "list") != 1) return 2;
  if (next) lua_pushinteger(L, next);
  else lua_pushnil(L);
  return 2;
}

static int l_cancel(lua_State *L) {
  const char *id = luaL_checkstring(L, 2);
  struct jobq *q = check_queue(L, "cancel");
  if (!q) return 2;
  int was = jobq_cancel(q, id);
  if (was == JQ_UNAVAILABLE)
    return errors_fail(L, EK_UNAVAILABLE, "queue.cancel: the database of %s is not reachable", jobq_name(q));
  if (was < 0) return errors_fail(L, EK_NOT_FOUND, "queue.cancel: no job '%s' in %s", id, jobq_name(q));
  lua_pushstring(L, job_state_name(was));
  return 1;
}

static int l_forget(lua_State *L) {
  const char *id = luaL_checkstring(L, 2);
  struct jobq *q = check_queue(L, "forget");
  if (!q) return 2;
  int rc = jobq_forget(q, id);
  if (rc == JQ_UNAVAILABLE)
    return errors_fail(L, EK_UNAVAILABLE, "queue.forget: the database of %s is not reachable", jobq_name(q));
  if (rc < 0) return errors_fail(L, EK_NOT_FOUND, "queue.forget: no job '%s' in %s", id, jobq_name(q));
  if (rc > 0) return errors_fail(L, EK_CONFLICT, "queue.forget: job '%s' has not finished", id);
  lua_pushboolean(L, 1);
  return 1;
}

/* queue.publish_batch(queue_id, items [, opts]) → {ids} | nil, err: every item of the list
** as one job, stored with one commit; all or none (RATE_LIMITED when there is no room for
** all). opts as publish, without id and idempotency_key. */
static int l_publish_batch(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  size_t n = (size_t)luaL_len(L, 2);          /* may raise: before anything is allocated */
  struct jobq_publish_opts o;
  char err[256];
  struct buf hb;                              /* the headers every job gets */
  buf_init(&hb);
  if (read_opts(L, 3, 0, &o, &hb, err, sizeof err) != 0) {
    buf_free(&hb);
    return errors_fail(L, EK_INVALID, "queue.publish_batch: %s", err);
  }
  o.id = o.idem_key = NULL;
  struct jobq *q = find_queue(L, name);
  if (!q) {
    buf_free(&hb);
    return errors_fail(L, EK_NOT_FOUND, "queue.publish_batch: no queue.queue entry '%s'", name);
  }
  struct buf all;
  size_t *offs = xmalloc((n + 1) * sizeof *offs), *lens = xmalloc((n ? n : 1) * sizeof *lens);
  buf_init(&all);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    offs[i] = all.len;
    int bad = json_encode(L, -1, &all, err, sizeof err) != 0;
    lua_pop(L, 1);
    if (bad) {
      free(offs); free(lens); buf_free(&all); buf_free(&hb);
      return errors_fail(L, EK_INVALID, "queue.publish_batch: item %zu: %s", i + 1, err);
    }
    lens[i] = all.len - offs[i];
  }
  const char **data = xmalloc((n ? n : 1) * sizeof *data);
  for (size_t i = 0; i < n; i++) data[i] = all.data + offs[i];
  char (*ids)[JOBQ_ID_MAX] = xmalloc((n ? n : 1) * sizeof *ids);
  int rc = jobq_publish_many(q, data, lens, n, &o, ids, err, sizeof err);
  if (rc == JQ_OK) {
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      lua_pushstring(L, ids[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  }
  free(ids); free(data); free(offs); free(lens); buf_free(&all); buf_free(&hb);
  if (rc != JQ_OK) return publish_failed(L, "queue.publish_batch", rc, err);
  return 1;
}

/* queue.info(queue_id) → {queue, <state> = count…, published, retries, rejected,
** wait_p50_ms, wait_p99_ms, bytes (data held by unfinished jobs)} | nil, err */
static int l_info(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct jobq *q = find_queue(L, name);
  if (!q) return errors_fail(L, EK_NOT_FOUND, "queue.info: no queue.queue entry '%s'", name);
  struct jobq_stats st;
  jobq_stats(q, &st);
  lua_createtable(L, 0, JS_COUNT + 7);
  lua_pushstring(L, jobq_name(q));
  lua_setfield(L, -2, "queue");
  for (int i = 0; i < JS_COUNT; i++) {
    lua_pushinteger(L, (lua_Integer)st.by_state[i]);
    lua_setfield(L, -2, job_state_name(i));
  }
  lua_pushinteger(L, (lua_Integer)st.published);
  lua_setfield(L, -2, "published");
  lua_pushinteger(L, (lua_Integer)st.retries);
  lua_setfield(L, -2, "retries");
  lua_pushinteger(L, (lua_Integer)(st.rejected_full + st.rejected_draining));
  lua_setfield(L, -2, "rejected");
  lua_pushnumber(L, (double)st.wait_p50_ns / 1e6);
  lua_setfield(L, -2, "wait_p50_ms");
  lua_pushnumber(L, (double)st.wait_p99_ns / 1e6);
  lua_setfield(L, -2, "wait_p99_ms");
  lua_pushinteger(L, (lua_Integer)st.live_bytes);
  lua_setfield(L, -2, "bytes");
  return 1;
}

static int l_job(lua_State *L) {
  struct jobctx *jc = current_job(L);
  if (!jc) { lua_pushnil(L); return 1; }
  lua_createtable(L, 0, 4);
  lua_pushstring(L, job_id(jc->job));
  lua_setfield(L, -2, "id");
  lua_pushstring(L, jobq_name(jc->q));
  lua_setfield(L, -2, "queue");
  lua_pushinteger(L, job_attempt(jc->job));
  lua_setfield(L, -2, "attempt");
  lua_pushinteger(L, job_max_retries(jc->job));
  lua_setfield(L, -2, "max_retries");
  return 1;
}

/* ---- queue.message(): the job being run, as Wippy's Message -------------------------
** A userdata with the job's id (user value 1) and its headers decoded (user value 2): copies,
** so a Message kept after its job ended stays valid. */

#define MESSAGE_MT "taskhost.queue.message"

static int l_message(lua_State *L) {
  struct jobctx *jc = current_job(L);
  if (!jc) return errors_fail(L, EK_INVALID, "queue.message: not inside a queue consumer");
  lua_newuserdatauv(L, 0, 2);
  luaL_setmetatable(L, MESSAGE_MT);
  lua_pushstring(L, job_id(jc->job));
  lua_setiuservalue(L, -2, 1);
  const char *h = job_headers(jc->job);
  char err[128];
  if (!h) lua_newtable(L);
  else if (json_decode(L, h, strlen(h), err, sizeof err) != 0)   /* the queue wrote it */
    return errors_fail(L, EK_INTERNAL, "queue.message: headers: %s", err);
  lua_setiuservalue(L, -2, 2);
  return 1;
}

static int msg_id(lua_State *L) {
  luaL_checkudata(L, 1, MESSAGE_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int msg_header(lua_State *L) {
  luaL_checkudata(L, 1, MESSAGE_MT);
  luaL_checkstring(L, 2);
  lua_getiuservalue(L, 1, 2);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* A fresh copy each call: changing it does not change the message. */
static int msg_headers(lua_State *L) {
  luaL_checkudata(L, 1, MESSAGE_MT);
  lua_getiuservalue(L, 1, 2);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  return 1;
}

static void open_message(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"id", msg_id}, {"header", msg_header}, {"headers", msg_headers}, {NULL, NULL}};
  if (luaL_newmetatable(L, MESSAGE_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

static int l_progress(lua_State *L) {
  struct jobctx *jc = current_job(L);
  if (!jc) return errors_fail(L, EK_INVALID, "queue.progress: not inside a queue consumer");
  luaL_checkany(L, 1);
  struct buf b;
  char err[256];
  buf_init(&b);
  if (json_encode(L, 1, &b, err, sizeof err) != 0) {
    buf_free(&b);
    return errors_fail(L, EK_INVALID, "queue.progress: %s", err);
  }
  job_set_progress(jc->q, jc->job, b.data, b.len);
  buf_free(&b);
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_queue(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"publish", l_publish}, {"publish_batch", l_publish_batch}, {"info", l_info},
    {"get", l_get}, {"list", l_list}, {"cancel", l_cancel}, {"forget", l_forget},
    {"job", l_job}, {"message", l_message}, {"progress", l_progress}, {NULL, NULL}};
  open_message(L);
  luaL_newlib(L, funcs);
  return 1;
}
