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
**       it returns once the job is on disk; the calling thread waits for that commit. With
**       the postgres driver it returns once the INSERT committed; the calling task parks
**       meanwhile (the worker runs other tasks), and so do get/list/cancel/forget/info.
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
#include "runtime/msg.h"
#include "runtime/call.h"
#include "runtime/proc.h"
#include "runtime/task.h"
#include "runtime/rt.h"
#include "base/util.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdatomic.h>
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

/* Pushes the JSON text in b as a Lua value (the queue wrote it: it decodes). */
static int push_json(lua_State *L, struct buf *b, const char *fn) {
  char err[256];
  int rc = json_decode(L, b->data ? b->data : "null", b->data ? b->len : 4, err, sizeof err);
  buf_free(b);
  if (rc != 0) return errors_fail(L, EK_INTERNAL, "queue.%s: %s", fn, err);
  return 1;
}

/* ---- calls that park -------------------------------------------------------------------
** Every call below that reads or writes jobs builds a struct qcall. On a queue whose calls
** wait for a database (jobq_call_parks: postgres) made from a task that may block, the task
** parks on a PEND_IO session and the queue's thread settles the call (qcall_done posts an
** MK_IO message); qcall_push then builds the Lua results on the process's thread, so no
** process-host worker waits for the database. Anywhere else (a memory or SQLite queue, the
** top level of a chunk) the call runs on this thread and its results are pushed at once.
** Hand-off exactly once (claim, as lmod_sql.c):
**   WAITING → POSTED  by qcall_done: the message owns the call (push, or drop).
**   WAITING → GONE    by qcall_cancel (the task went first); the later done frees it.
** Everything the queue reads until done is owned by the call (copies of ids and data). */
enum { CLAIM_WAITING, CLAIM_POSTED, CLAIM_GONE };

struct qcall {
  struct jobq_call c;           /* first: done gets &c */
  _Atomic int claim;
  struct rt *rt;
  uint64_t pid, session;
  const char *fn;               /* "publish", "get", … (static) */
  int unique, batch;            /* publish: opts.unique; publish_batch */
  char *qname, *id, *opt_id, *opt_key;
  struct buf data, headers;     /* publish: the jobs' JSON, one after another; headers */
  struct buf out;               /* get, list: the records' JSON (c.out) */
  const char **ptrs;
  size_t *lens;
  char (*ids)[JOBQ_ID_MAX];
  struct jobq_publish_opts o;
};

static struct qcall *qcall_new(struct jobq *q, enum jobq_call_op op, const char *fn) {
  struct qcall *qc = xcalloc(1, sizeof *qc);
  qc->c.op = op;
  qc->fn = fn;
  qc->qname = xstrdup(jobq_name(q));
  buf_init(&qc->out);
  qc->c.out = &qc->out;
  buf_init(&qc->data);
  buf_init(&qc->headers);
  return qc;
}

static void qcall_free(struct qcall *qc) {
  buf_free(&qc->out);
  buf_free(&qc->data);
  buf_free(&qc->headers);
  free(qc->qname); free(qc->id); free(qc->opt_id); free(qc->opt_key);
  free(qc->ptrs); free(qc->lens); free(qc->ids);
  free(qc);
}

static int push_stats(lua_State *L, const char *qname, const struct jobq_stats *st) {
  lua_createtable(L, 0, JS_COUNT + 7);
  lua_pushstring(L, qname);
  lua_setfield(L, -2, "queue");
  for (int i = 0; i < JS_COUNT; i++) {
    lua_pushinteger(L, (lua_Integer)st->by_state[i]);
    lua_setfield(L, -2, job_state_name(i));
  }
  lua_pushinteger(L, (lua_Integer)st->published);
  lua_setfield(L, -2, "published");
  lua_pushinteger(L, (lua_Integer)st->retries);
  lua_setfield(L, -2, "retries");
  lua_pushinteger(L, (lua_Integer)st->live_bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)(st->rejected_full + st->rejected_draining));
  lua_setfield(L, -2, "rejected");
  lua_pushnumber(L, (double)st->wait_p50_ns / 1e6);
  lua_setfield(L, -2, "wait_p50_ms");
  lua_pushnumber(L, (double)st->wait_p99_ns / 1e6);
  lua_setfield(L, -2, "wait_p99_ms");
  return 1;
}

static int push_published(lua_State *L, struct qcall *qc) {
  struct jobq_call *c = &qc->c;
  if (c->rc != JQ_OK)
    return publish_failed(L, qc->batch ? "queue.publish_batch" : "queue.publish", c->rc, c->err);
  if (!qc->batch) {
    if (qc->unique && c->existed)
      return errors_fail(L, EK_ALREADY_EXISTS, "queue.publish: job %s already exists", c->id_out);
    lua_pushstring(L, c->id_out);
    return 1;
  }
  lua_createtable(L, (int)c->n, 0);
  for (size_t i = 0; i < c->n; i++) {
    lua_pushstring(L, c->ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* A job-record call's failure (rc < 0): UNAVAILABLE or NOT_FOUND; for retry and requeue also
** CONFLICT (the job's state does not allow it), RATE_LIMITED (full) and UNAVAILABLE
** (draining). */
static int record_failed(lua_State *L, struct qcall *qc) {
  switch (qc->c.rc) {
  case JQ_UNAVAILABLE:
    return errors_fail(L, EK_UNAVAILABLE, "queue.%s: the database of %s is not reachable", qc->fn, qc->qname);
  case JQ_CONFLICT:
    return errors_fail(L, EK_CONFLICT, "queue.%s: job '%s' is not in a state %s takes", qc->fn, qc->id, qc->fn);
  case JQ_FULL: return errors_fail(L, EK_RATE_LIMITED, "queue.%s: %s is full", qc->fn, qc->qname);
  case JQ_DRAINING: return errors_fail(L, EK_UNAVAILABLE, "queue.%s: %s is shutting down", qc->fn, qc->qname);
  }
  return errors_fail(L, EK_NOT_FOUND, "queue.%s: no job '%s' in %s", qc->fn, qc->id, qc->qname);
}

/* The call's Lua results on L; frees qc. */
static int qcall_results(lua_State *L, struct qcall *qc) {
  struct jobq_call *c = &qc->c;
  int n = 1;
  luaL_checkstack(L, 8, "queue");
  switch (c->op) {
  case JC_PUBLISH: n = push_published(L, qc); break;
  case JC_STATS: n = push_stats(L, qc->qname, &c->st); break;
  case JC_INFO:
  case JC_RESULT:
    n = c->rc < 0 ? record_failed(L, qc) : push_json(L, c->out, qc->fn);
    break;
  case JC_LIST:
    n = push_json(L, c->out, "list");
    if (n == 1) {
      if (c->next) lua_pushinteger(L, c->next);
      else lua_pushnil(L);
      n = 2;
    }
    break;
  case JC_CANCEL:
  case JC_RETRY:
  case JC_REQUEUE:
    if (c->rc < 0) n = record_failed(L, qc);
    else lua_pushstring(L, job_state_name(c->rc));
    break;
  case JC_FORGET:
    if (c->rc < 0) n = record_failed(L, qc);
    else if (c->rc > 0) n = errors_fail(L, EK_CONFLICT, "queue.forget: job '%s' has not finished", qc->id);
    else lua_pushboolean(L, 1);
    break;
  }
  qcall_free(qc);
  return n;
}

static int qcall_push(lua_State *co, void *req) { return qcall_results(co, req); }
static void qcall_drop(void *req) { qcall_free(req); }

static void qcall_cancel(void *req) {
  struct qcall *qc = req;
  int want = CLAIM_WAITING;
  atomic_compare_exchange_strong(&qc->claim, &want, CLAIM_GONE);  /* lost: the message owns qc */
}

static const struct io_ops qcall_ops = {qcall_push, qcall_drop, qcall_cancel, NULL, NULL};

static void qcall_done(struct jobq_call *c) {
  struct qcall *qc = (struct qcall *)c;
  int want = CLAIM_WAITING;
  if (atomic_compare_exchange_strong(&qc->claim, &want, CLAIM_POSTED))
    proc_post(qc->rt, qc->pid, msg_new_io(qc->session, &qcall_ops, qc), NULL);
  else
    qcall_free(qc);                               /* GONE: the task left */
}

/* Runs qc on q: parked (see above) or here. Returns the call's results (or yields). */
static int qcall_run(lua_State *L, struct jobq *q, struct qcall *qc) {
  struct task *t = task_current(L);
  if (!jobq_call_parks(q) || !t || t->state == T_ROOT || !lua_isyieldable(L)) {
    jobq_call_run(q, &qc->c);
    return qcall_results(L, qc);
  }
  struct proc *p = t->p;
  struct pending *pe = pending_new_io(p, t, &qcall_ops, qc);
  qc->rt = p->rt;
  qc->pid = p->pid;
  qc->session = pe->session;
  qc->c.done = qcall_done;
  atomic_store(&qc->claim, CLAIM_WAITING);
  t->pend = pe;
  task_park(t);
  jobq_call_start(q, &qc->c);
  return lua_yield(L, 0);
}

/* ---- publishing ----------------------------------------------------------------------- */

static int l_publish(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checkany(L, 2);
  struct jobq_publish_opts o;
  char err[256];
  struct buf hb;
  buf_init(&hb);
  if (read_opts(L, 3, 1, &o, &hb, err, sizeof err) != 0) {
    buf_free(&hb);
    return errors_fail(L, EK_INVALID, "queue.publish: %s", err);
  }
  struct jobq *q = find_queue(L, name);
  if (!q) {
    buf_free(&hb);
    return errors_fail(L, EK_NOT_FOUND, "queue.publish: no queue.queue entry '%s'", name);
  }
  struct qcall *qc = qcall_new(q, JC_PUBLISH, "publish");
  qc->headers = hb;                               /* o.headers points into it */
  if (json_encode(L, 2, &qc->data, err, sizeof err) != 0) {
    qcall_free(qc);
    return errors_fail(L, EK_INVALID, "queue.publish: %s", err);
  }
  qc->unique = opt_unique(L, 3);
  qc->o = o;
  qc->o.id = qc->opt_id = o.id ? xstrdup(o.id) : NULL;
  qc->o.idem_key = qc->opt_key = o.idem_key ? xstrdup(o.idem_key) : NULL;
  qc->ptrs = xmalloc(sizeof *qc->ptrs);
  qc->lens = xmalloc(sizeof *qc->lens);
  qc->ptrs[0] = qc->data.data ? qc->data.data : "";
  qc->lens[0] = qc->data.len;
  qc->c.n = 1;
  qc->c.data = qc->ptrs;
  qc->c.lens = qc->lens;
  qc->c.o = &qc->o;
  return qcall_run(L, q, qc);
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
  struct qcall *qc = qcall_new(q, JC_PUBLISH, "publish_batch");
  qc->headers = hb;
  qc->batch = 1;
  qc->o = o;
  size_t *offs = xmalloc((n + 1) * sizeof *offs);
  qc->lens = xmalloc((n ? n : 1) * sizeof *qc->lens);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    offs[i] = qc->data.len;
    int bad = json_encode(L, -1, &qc->data, err, sizeof err) != 0;
    lua_pop(L, 1);
    if (bad) {
      free(offs);
      qcall_free(qc);
      return errors_fail(L, EK_INVALID, "queue.publish_batch: item %zu: %s", i + 1, err);
    }
    qc->lens[i] = qc->data.len - offs[i];
  }
  qc->ptrs = xmalloc((n ? n : 1) * sizeof *qc->ptrs);
  for (size_t i = 0; i < n; i++) qc->ptrs[i] = qc->data.data + offs[i];
  free(offs);
  qc->ids = xmalloc((n ? n : 1) * sizeof *qc->ids);
  qc->c.n = n;
  qc->c.data = qc->ptrs;
  qc->c.lens = qc->lens;
  qc->c.o = &qc->o;
  qc->c.ids = qc->ids;
  return qcall_run(L, q, qc);
}

/* ---- reading and cancelling jobs -------------------------------------------------- */

static struct jobq *check_queue(lua_State *L, const char *fn) {
  const char *name = luaL_checkstring(L, 1);
  struct jobq *q = find_queue(L, name);
  if (!q) errors_fail(L, EK_NOT_FOUND, "queue.%s: no queue.queue entry '%s'", fn, name);
  return q;
}

/* get, cancel, forget, retry, requeue: (queue_id, job_id). */
static int record_call(lua_State *L, enum jobq_call_op op, const char *fn) {
  const char *id = luaL_checkstring(L, 2);
  struct jobq *q = check_queue(L, fn);
  if (!q) return 2;
  struct qcall *qc = qcall_new(q, op, fn);
  qc->c.id = qc->id = xstrdup(id);
  return qcall_run(L, q, qc);
}

static int l_get(lua_State *L) { return record_call(L, JC_INFO, "get"); }
static int l_cancel(lua_State *L) { return record_call(L, JC_CANCEL, "cancel"); }
static int l_forget(lua_State *L) { return record_call(L, JC_FORGET, "forget"); }
static int l_retry(lua_State *L) { return record_call(L, JC_RETRY, "retry"); }
static int l_requeue(lua_State *L) { return record_call(L, JC_REQUEUE, "requeue"); }

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
  struct qcall *qc = qcall_new(q, JC_LIST, "list");
  qc->c.state = state;
  qc->c.after = after;
  qc->c.limit = (size_t)limit;
  return qcall_run(L, q, qc);
}

/* queue.info(queue_id) → {queue, <state> = count…, published, retries, rejected,
** wait_p50_ms, wait_p99_ms, bytes (data held by unfinished jobs)} | nil, err */
static int l_info(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct jobq *q = find_queue(L, name);
  if (!q) return errors_fail(L, EK_NOT_FOUND, "queue.info: no queue.queue entry '%s'", name);
  return qcall_run(L, q, qcall_new(q, JC_STATS, "info"));
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
    {"retry", l_retry}, {"requeue", l_requeue},
    {"job", l_job}, {"message", l_message}, {"progress", l_progress}, {NULL, NULL}};
  open_message(L);
  luaL_newlib(L, funcs);
  return 1;
}
