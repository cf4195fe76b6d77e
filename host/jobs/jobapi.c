/*
** jobapi.c — see jobapi.h.
**
** Answers (job-queues.md §6.3): submit 202 + Location (200 when the id or Idempotency-Key
** names a job already there), 400 invalid JSON or a malformed option (an id or key that is
** empty or longer than JOBQ_KEY_MAX, a number out of range: never ignored, never wrapped),
** 413 too large, 429 + Retry-After when the queue is full, 503 + Retry-After while draining
** or while the queue's database is not writable (so is the health path); status 200 / 404; result 200 done, 202 not
** finished (with its state), 409 failed or cancelled (with the last error), 404; cancel 200
** cancelled, 202 cancel requested (running), 409 already finished, 404; retry / requeue 200
** queued, 409 wrong state, 404, 429, 503; list 200 with a cursor. Every body is JSON.
**
** Threads: civetweb's. The submitted body is checked with the host's JSON decoder in a small
** Lua state kept per thread (created on first use, closed when the thread ends).
*/
#include "jobapi.h"
#include "http/http.h"
#include "jobq.h"
#include "value/json.h"
#include "base/util.h"

#include <civetweb.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_key_t validator_key;
static pthread_once_t validator_once = PTHREAD_ONCE_INIT;

static void close_validator(void *L) { lua_close(L); }
static void make_key(void) { pthread_key_create(&validator_key, close_validator); }

/* 0 when text is one valid JSON value; else -1 with the decoder's message. */
static int check_json(const char *text, size_t len, char *err, size_t errlen) {
  pthread_once(&validator_once, make_key);
  lua_State *L = pthread_getspecific(validator_key);
  if (!L) {
    if (!(L = luaL_newstate())) { snprintf(err, errlen, "out of memory"); return -1; }
    pthread_setspecific(validator_key, L);
  }
  int rc = json_decode(L, text, len, err, errlen);
  lua_settop(L, 0);
  return rc == 0 ? 0 : -1;
}

static void reply_json(struct http_req *r, int status, struct buf *b) {
  http_reply(r, status, "application/json", b->data ? b->data : "{}", b->len);
}

static void add_str(struct buf *b, const char *s) { json_put_string(b, s, strlen(s)); }

static void reply_error(struct http_req *r, int status, const char *msg) {
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "{\"error\":");
  add_str(&b, msg);
  buf_addc(&b, '}');
  reply_json(r, status, &b);
  buf_free(&b);
}

/* {"id":<id>,"state":<state> — the start of several answers. */
static void begin(struct buf *b, const char *id, int state) {
  buf_adds(b, "{\"id\":");
  add_str(b, id);
  buf_printf(b, ",\"state\":\"%s\"", job_state_name(state));
}

/* The {id} path parameter, copied (params point into the path and run to its end). */
static void job_id_param(const struct http_req *r, char *out, size_t cap) {
  out[0] = '\0';
  for (int i = 0; i < r->match.nparams; i++)
    if (strcmp(r->match.params[i].name, "id") == 0) {
      size_t n = r->match.params[i].len < cap - 1 ? r->match.params[i].len : cap - 1;
      memcpy(out, r->match.params[i].value, n);
      out[n] = '\0';
    }
}

/* A query-string variable into out: 1 present, 0 absent, -1 longer than cap - 1. */
static int query(const char *qs, const char *name, char *out, size_t cap) {
  int n = qs ? mg_get_var(qs, strlen(qs), name, out, cap) : -1;
  return n >= 0 ? 1 : n == -1 ? 0 : -1;
}

/* ?name= as an integer in [lo, hi] into *v: 0 absent, 1 read, -1 malformed (why in msg). */
static int query_int(const char *qs, const char *name, long long lo, long long hi, long long *v,
                     char *msg, size_t msglen) {
  char s[32], *end = s;
  int got = query(qs, name, s, sizeof s);
  if (got == 0) return 0;
  long long x = 0;
  errno = 0;
  if (got > 0 && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) x = strtoll(s, &end, 10);
  if (got > 0 && end != s && !*end && !errno && x >= lo && x <= hi) {
    *v = x;
    return 1;
  }
  snprintf(msg, msglen, "%s must be an integer from %lld to %lld", name, lo, hi);
  return -1;
}

int jobapi_submit_opts(const char *qs, struct jobq_publish_opts *o, char *id, size_t idcap,
                       char *msg, size_t msglen) {
  char delay[64];
  long long prio = 0, retries = -1;
  *o = (struct jobq_publish_opts){.max_retries = -1};
  int got = query(qs, "id", id, idcap);
  if (got < 0) {
    snprintf(msg, msglen, "the job's id must be 1 to %d bytes long", JOBQ_KEY_MAX);
    return -1;
  }
  if (got > 0) o->id = id;
  got = query(qs, "delay", delay, sizeof delay);
  if (got != 0 && (got < 0 || duration_parse(delay, &o->delay_ns) != 0 || o->delay_ns < 0)) {
    snprintf(msg, msglen, "delay must be a duration such as 30s (0 to 106751d)");
    return -1;
  }
  if (query_int(qs, "priority", INT_MIN, INT_MAX, &prio, msg, msglen) < 0 ||
      query_int(qs, "max_retries", 0, INT_MAX, &retries, msg, msglen) < 0)
    return -1;
  o->priority = (int)prio;
  o->max_retries = (int)retries;
  return 0;
}

int jobapi_list_opts(const char *qs, int *state, long long *after, long long *limit, char *msg,
                     size_t msglen) {
  char v[64];
  *state = -1;
  *after = 0;
  *limit = 100;
  if (query(qs, "state", v, sizeof v) != 0 && (*state = job_state_parse(v)) < 0) {
    snprintf(msg, msglen, "unknown state (queued, scheduled, running, retrying, done, failed, cancelled)");
    return -1;
  }
  if (query_int(qs, "after", 0, INT64_MAX, after, msg, msglen) < 0 ||
      query_int(qs, "limit", LLONG_MIN, LLONG_MAX, limit, msg, msglen) < 0)
    return -1;
  if (*limit < 1) *limit = 1;
  if (*limit > 1000) *limit = 1000;
  return 0;
}

static void submit(struct jobq *q, struct http_req *r) {
  if (http_req_read_body(r) != 0) {
    if (r->too_large) reply_error(r, 413, "request body too large");
    else reply_error(r, 400, "cannot read the request body");
    return;
  }
  char err[256], id[JOBQ_KEY_MAX + 2];
  const char *body = r->body.len ? r->body.data : "null";
  size_t len = r->body.len ? r->body.len : 4;
  if (check_json(body, len, err, sizeof err) != 0) { reply_error(r, 400, err); return; }
  struct jobq_publish_opts o;
  if (jobapi_submit_opts(r->ri->query_string, &o, id, JOBQ_KEY_MAX + 2, err, sizeof err) != 0) {
    reply_error(r, 400, err);
    return;
  }
  o.idem_key = http_req_header(r, "Idempotency-Key");     /* its length is checked by jobq */
  char newid[JOBQ_KEY_MAX + 1];
  int existed = 0;
  int rc = jobq_publish(q, body, len, &o, newid, sizeof newid, &existed, err, sizeof err);
  if (rc == JQ_INVALID) { reply_error(r, 400, err); return; }
  if (rc == JQ_FULL || rc == JQ_DRAINING || rc == JQ_UNAVAILABLE) {
    http_res_add_header(r, "Retry-After", rc == JQ_DRAINING ? "5" : "1");
    reply_error(r, rc == JQ_FULL ? 429 : 503, err);
    return;
  }
  if (rc != JQ_OK) { reply_error(r, 500, err); return; }
  struct buf b, loc;
  buf_init(&b);
  buf_init(&loc);
  size_t plen = strlen(r->path);
  while (plen > 1 && r->path[plen - 1] == '/') plen--;
  buf_printf(&loc, "%.*s/%s", (int)plen, r->path, newid);
  http_res_add_header(r, "Location", loc.data);
  if (jobq_job_info(q, newid, &b) < 0) { buf_adds(&b, "{\"id\":"); add_str(&b, newid); buf_addc(&b, '}'); }
  reply_json(r, existed ? 200 : 202, &b);
  buf_free(&b);
  buf_free(&loc);
}

/* A lookup that failed: 503 while the queue's database is unreachable, else 404. */
static void reply_missing(struct http_req *r, int rc) {
  if (rc == JQ_UNAVAILABLE) {
    http_res_add_header(r, "Retry-After", "1");
    reply_error(r, 503, "the queue's database is not reachable; try again later");
  } else {
    reply_error(r, 404, "no such job");
  }
}

static void status(struct jobq *q, struct http_req *r) {
  char id[256];
  job_id_param(r, id, sizeof id);
  struct buf b;
  buf_init(&b);
  int s = jobq_job_info(q, id, &b);
  if (s < 0) reply_missing(r, s);
  else reply_json(r, 200, &b);
  buf_free(&b);
}

static void result(struct jobq *q, struct http_req *r) {
  char id[256];
  job_id_param(r, id, sizeof id);
  struct buf val, b;
  buf_init(&val);
  buf_init(&b);
  int s = jobq_job_result(q, id, &val);
  if (s < 0) {
    reply_missing(r, s);
  } else {
    begin(&b, id, s);
    if (s == JS_DONE) buf_printf(&b, ",\"result\":%s}", val.data ? val.data : "null");
    else if (job_state_final(s)) buf_printf(&b, ",\"error\":%s}", val.data ? val.data : "null");
    else buf_adds(&b, "}");
    reply_json(r, s == JS_DONE ? 200 : job_state_final(s) ? 409 : 202, &b);
  }
  buf_free(&val);
  buf_free(&b);
}

static void cancel(struct jobq *q, struct http_req *r) {
  char id[256];
  job_id_param(r, id, sizeof id);
  int was = jobq_cancel(q, id);
  if (was < 0) { reply_missing(r, was); return; }
  struct buf b;
  buf_init(&b);
  if (job_state_final(was)) {
    begin(&b, id, was);
    buf_adds(&b, ",\"error\":\"the job has already finished\"}");
    reply_json(r, 409, &b);
  } else if (was == JS_RUNNING) {
    begin(&b, id, JS_RUNNING);
    buf_adds(&b, ",\"cancel\":\"requested\"}");
    reply_json(r, 202, &b);
  } else {
    begin(&b, id, JS_CANCELLED);
    buf_addc(&b, '}');
    reply_json(r, 200, &b);
  }
  buf_free(&b);
}

/* retry and requeue: 200 with the job queued, 409 when its state does not allow it (with the
** state it is in), 404, 429 full, 503 draining or unreachable. */
static void revive(struct jobq *q, struct http_req *r, int requeue) {
  char id[256];
  job_id_param(r, id, sizeof id);
  int was = requeue ? jobq_requeue(q, id) : jobq_retry(q, id);
  struct buf b;
  buf_init(&b);
  if (was >= 0) {
    begin(&b, id, JS_QUEUED);
    buf_printf(&b, ",\"was\":\"%s\"}", job_state_name(was));
    reply_json(r, 200, &b);
  } else if (was == JQ_CONFLICT) {
    struct buf rec;
    buf_init(&rec);
    int now = jobq_job_info(q, id, &rec);
    buf_free(&rec);
    begin(&b, id, now >= 0 ? now : JS_QUEUED);
    buf_adds(&b, ",\"error\":");
    add_str(&b, jobq_revive_refusal(requeue));
    buf_addc(&b, '}');
    reply_json(r, 409, &b);
  } else if (was == JQ_FULL || was == JQ_DRAINING) {
    http_res_add_header(r, "Retry-After", "1");
    reply_error(r, was == JQ_FULL ? 429 : 503, was == JQ_FULL ? "the queue is full" : "the queue is shutting down");
  } else {
    reply_missing(r, was);
  }
  buf_free(&b);
}

static void retry(struct jobq *q, struct http_req *r) { revive(q, r, 0); }
static void requeue(struct jobq *q, struct http_req *r) { revive(q, r, 1); }

static void list(struct jobq *q, struct http_req *r) {
  int state;
  long long after, limit;
  char msg[128];
  if (jobapi_list_opts(r->ri->query_string, &state, &after, &limit, msg, sizeof msg) != 0) {
    reply_error(r, 400, msg);
    return;
  }
  struct buf b;
  buf_init(&b);
  int64_t next = 0;
  buf_adds(&b, "{\"jobs\":");
  jobq_list(q, state, after, (size_t)limit, &b, &next);
  if (next) buf_printf(&b, ",\"next\":\"%lld\"}", (long long)next);
  else buf_adds(&b, ",\"next\":null}");
  reply_json(r, 200, &b);
  buf_free(&b);
}

static void health(struct jobq *q, struct http_req *r) {
  struct buf b;
  buf_init(&b);
  int draining = jobq_draining(q), down = !jobq_available(q);
  buf_printf(&b, "{\"status\":\"%s\",\"queue\":",
             draining ? "draining" : down ? "unavailable" : "ok");
  add_str(&b, jobq_name(q));
  if (down && !draining) buf_adds(&b, ",\"error\":\"the queue's database is not writable\"");
  buf_addc(&b, '}');
  reply_json(r, draining || down ? 503 : 200, &b);
  buf_free(&b);
}

static void metrics(struct jobq *q, struct http_req *r) {
  struct jobq_stats st;
  jobq_stats(q, &st);
  const char *n = jobq_name(q);
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "# HELP taskhost_jobs Jobs by state.\n# TYPE taskhost_jobs gauge\n");
  for (int s = 0; s < JS_COUNT; s++)
    buf_printf(&b, "taskhost_jobs{queue=\"%s\",state=\"%s\"} %zu\n", n, job_state_name(s), st.by_state[s]);
  buf_printf(&b, "# TYPE taskhost_jobs_published_total counter\ntaskhost_jobs_published_total{queue=\"%s\"} %llu\n",
             n, (unsigned long long)st.published);
  buf_printf(&b, "# TYPE taskhost_jobs_rejected_total counter\n"
                 "taskhost_jobs_rejected_total{queue=\"%s\",reason=\"full\"} %llu\n"
                 "taskhost_jobs_rejected_total{queue=\"%s\",reason=\"draining\"} %llu\n",
             n, (unsigned long long)st.rejected_full, n, (unsigned long long)st.rejected_draining);
  buf_printf(&b, "# TYPE taskhost_jobs_retries_total counter\ntaskhost_jobs_retries_total{queue=\"%s\"} %llu\n",
             n, (unsigned long long)st.retries);
  buf_printf(&b, "# TYPE taskhost_jobs_finished_total counter\ntaskhost_jobs_finished_total{queue=\"%s\"} %llu\n",
             n, (unsigned long long)st.finished);
  buf_adds(&b, "# HELP taskhost_job_wait_seconds Time from enqueue (or run_at) to start.\n"
               "# TYPE taskhost_job_wait_seconds histogram\n");
  uint64_t cum = 0;
  for (int i = 0; i < 16; i++) {
    cum += st.wait_hist[i];
    double bound = jobq_hist_bound(i);
    if (i == 15) buf_printf(&b, "taskhost_job_wait_seconds_bucket{queue=\"%s\",le=\"+Inf\"} %llu\n", n, (unsigned long long)cum);
    else buf_printf(&b, "taskhost_job_wait_seconds_bucket{queue=\"%s\",le=\"%g\"} %llu\n", n, bound, (unsigned long long)cum);
  }
  buf_printf(&b, "taskhost_job_wait_seconds_sum{queue=\"%s\"} %.6f\ntaskhost_job_wait_seconds_count{queue=\"%s\"} %llu\n",
             n, (double)st.wait_ns_total / 1e9, n, (unsigned long long)st.wait_count);
  buf_printf(&b, "# TYPE taskhost_job_run_seconds summary\ntaskhost_job_run_seconds_sum{queue=\"%s\"} %.6f\n"
                 "taskhost_job_run_seconds_count{queue=\"%s\"} %llu\n",
             n, (double)st.run_ns_total / 1e9, n, (unsigned long long)st.run_count);
  http_reply(r, 200, "text/plain; version=0.0.4", b.data, b.len);
  buf_free(&b);
}

void jobapi_serve(const struct route *rt, struct http_req *r) {
  static void (*const serve[])(struct jobq *, struct http_req *) = {
    [RA_JOB_SUBMIT] = submit, [RA_JOB_LIST] = list,     [RA_JOB_STATUS] = status,
    [RA_JOB_RESULT] = result, [RA_JOB_CANCEL] = cancel, [RA_JOB_HEALTH] = health,
    [RA_JOB_METRICS] = metrics, [RA_JOB_RETRY] = retry, [RA_JOB_REQUEUE] = requeue,
  };
  if ((size_t)rt->action < countof(serve) && serve[rt->action]) serve[rt->action](rt->handler, r);
  else reply_error(r, 500, "unknown built-in route");
}
