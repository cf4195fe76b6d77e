/*
** dashboard.c — see dashboard.h: the sampler thread, the endpoint table, the embedded assets
** and the job list and actions. The views themselves are in dash_state.c.
** Threads: dash_new/dash_free on the main thread; dash_serve on the admin listener's threads
** (it only reads the dashboard and calls thread-safe sources); the sampler thread takes one
** history sample every DASH_INTERVAL_MS until dash_free stops it.
*/
#include "dashboard.h"
#include "app_impl.h"
#include "dash_hist.h"
#include "base/log.h"
#include "base/util.h"
#include "http/admin.h"
#include "jobs/jobapi.h"
#include "jobs/jobq.h"
#include "runtime/rt.h"
#include "value/json.h"

#include <civetweb.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The assets, embedded by CMake (scripts/embed.cmake) from host/app/dashboard/. */
extern const char dash_index_html[], dash_app_js[], dash_app_css[];
extern const size_t dash_index_html_len, dash_app_js_len, dash_app_css_len;

/* ---- the sampler ---------------------------------------------------------------------- */

static void *sampler_main(void *ud) {
  struct dashboard *d = ud;
  pthread_mutex_lock(&d->lock);
  while (!d->stop) {
    pthread_mutex_unlock(&d->lock);
    dash_sample(d, clock_wall_ns() / 1000000);
    pthread_mutex_lock(&d->lock);
    struct timespec ts = ns_timespec(clock_mono_ns() + (int64_t)DASH_INTERVAL_MS * 1000000);
    while (!d->stop && pthread_cond_timedwait(&d->cv, &d->lock, &ts) == 0) {}
  }
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

struct dashboard *dash_new(struct app *a) {
  struct dashboard *d = xcalloc(1, sizeof *d);
  d->a = a;
  d->hist = dhist_new(DASH_SAMPLES, DASH_SERIES_MAX);
  pthread_mutex_init(&d->lock, NULL);
  cond_init_monotonic(&d->cv);
  uint64_t h = 1469598103934665603ull;                  /* FNV-1a over the assets: their version */
  const char *parts[] = {dash_index_html, dash_app_js, dash_app_css};
  const size_t lens[] = {dash_index_html_len, dash_app_js_len, dash_app_css_len};
  for (size_t i = 0; i < countof(parts); i++)
    for (size_t k = 0; k < lens[i]; k++) h = (h ^ (unsigned char)parts[i][k]) * 1099511628211ull;
  snprintf(d->version, sizeof d->version, "%016llx", (unsigned long long)h);
  if (pthread_create(&d->sampler, NULL, sampler_main, d) == 0) d->started = 1;
  else log_warn("dashboard: no sampler thread (%s): the charts stay empty", strerror(errno));
  return d;
}

void dash_free(struct dashboard *d) {
  if (!d) return;
  pthread_mutex_lock(&d->lock);
  d->stop = 1;
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->lock);
  if (d->started) pthread_join(d->sampler, NULL);
  dhist_free(d->hist);
  pthread_mutex_destroy(&d->lock);
  pthread_cond_destroy(&d->cv);
  free(d);
}

/* ---- replies -------------------------------------------------------------------------- */

static void fail(struct admin_resp *rs, int status, const char *msg) {
  rs->status = status;
  rs->type = "application/json";
  buf_reset(&rs->body);
  buf_adds(&rs->body, "{\"error\":");
  json_put_string(&rs->body, msg, strlen(msg));
  buf_addc(&rs->body, '}');
}

/* ?name= into out (cap bytes): 1 present, 0 absent, -1 too long or malformed. */
static int param(const char *qs, const char *name, char *out, size_t cap) {
  int n = mg_get_var(qs, strlen(qs), name, out, cap);
  return n >= 0 ? 1 : n == -1 ? 0 : -1;
}

/* The queue named by ?queue= (404/400 answered when missing or unknown). */
static struct jobq *queue_param(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  char name[256];
  int got = param(rq->query, "queue", name, sizeof name);
  if (got <= 0) { fail(rs, 400, got < 0 ? "queue is too long" : "queue is required"); return NULL; }
  struct jobq *q = rt_find_queue(d->a->rt, name);
  if (!q) fail(rs, 404, "no such queue");
  return q;
}

/* ?id= (1..JOBQ_KEY_MAX bytes) into id; 0, or -1 with the 400 answered. */
static int id_param(const struct admin_req *rq, char id[JOBQ_KEY_MAX + 1], struct admin_resp *rs) {
  int got = param(rq->query, "id", id, JOBQ_KEY_MAX + 1);
  if (got > 0 && id[0]) return 0;
  fail(rs, 400, got < 0 ? "id is too long" : "id is required");
  return -1;
}

/* ---- assets --------------------------------------------------------------------------- */

static void asset(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs, const char *data,
                  size_t len, const char *type) {
  char v[64];
  snprintf(rs->etag, sizeof rs->etag, "\"%s\"", d->version);
  rs->type = type;
  /* a URL naming this version (?v=, written into index.html) never changes */
  rs->cache = param(rq->query, "v", v, sizeof v) > 0 && strcmp(v, d->version) == 0
                ? "public, max-age=31536000, immutable" : "no-cache";
  if (rq->if_none_match && strstr(rq->if_none_match, d->version)) { rs->status = 304; return; }
  buf_add(&rs->body, data, len);
}

static void serve_index(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  asset(d, rq, rs, "", 0, "text/html; charset=utf-8");
  if (rs->status == 304) return;
  for (const char *p = dash_index_html, *end = p + dash_index_html_len; p < end;) {   /* {{v}} → version */
    const char *m = strstr(p, "{{v}}");
    if (!m || m >= end) m = end;
    buf_add(&rs->body, p, (size_t)(m - p));
    if (m == end) break;
    buf_adds(&rs->body, d->version);
    p = m + 5;
  }
}

static void serve_js(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  asset(d, rq, rs, dash_app_js, dash_app_js_len, "text/javascript; charset=utf-8");
}

static void serve_css(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  asset(d, rq, rs, dash_app_css, dash_app_css_len, "text/css; charset=utf-8");
}

/* ---- views ---------------------------------------------------------------------------- */

static void serve_state(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  dash_state_json(d, &rs->body);
}

static void serve_history(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  char v[32], *end;
  long long since = 0;
  int got = param(rq->query, "since", v, sizeof v);
  if (got != 0) {
    errno = 0;
    since = got > 0 ? strtoll(v, &end, 10) : -1;
    if (got < 0 || end == v || *end || errno || since < 0) { fail(rs, 400, "since must be a non-negative integer (ms)"); return; }
  }
  dhist_json(d->hist, since, &rs->body);
}

static void serve_jobs(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  struct jobq *q = queue_param(d, rq, rs);
  if (!q) return;
  int state;
  long long after, limit;
  char msg[160];
  if (jobapi_list_opts(rq->query, &state, &after, &limit, msg, sizeof msg) != 0) { fail(rs, 400, msg); return; }
  if (limit > 200) limit = 200;
  struct jobq_call c = {.op = JC_LIST, .state = state, .after = after, .limit = (size_t)limit, .out = &rs->body};
  buf_adds(&rs->body, "{\"jobs\":");
  jobq_call_run(q, &c);
  if (c.rc < 0) { fail(rs, 503, "the queue's store is unavailable"); return; }
  if (c.next) buf_printf(&rs->body, ",\"next\":\"%lld\"}", (long long)c.next);
  else buf_adds(&rs->body, ",\"next\":null}");
}

static void serve_job(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  struct jobq *q = queue_param(d, rq, rs);
  char id[JOBQ_KEY_MAX + 1];
  if (!q || id_param(rq, id, rs) != 0) return;
  struct jobq_call c = {.op = JC_INFO, .id = id, .out = &rs->body};
  jobq_call_run(q, &c);
  if (c.rc == -1) fail(rs, 404, "no such job");
  else if (c.rc < 0) fail(rs, 503, "the queue's store is unavailable");
}

/* ---- job actions ---------------------------------------------------------------------- */

/* An action's answer: the state the job was in (or a JQ_* code, -1 unknown id), and the state
** it is in now; with conflict, why the action did not take (a 409 naming that state). */
static void action_reply(struct admin_resp *rs, const char *id, int was, int now, const char *conflict) {
  if (was == -1) { fail(rs, 404, "no such job"); return; }
  if (was == JQ_UNAVAILABLE) { fail(rs, 503, "the queue's store is unavailable"); return; }
  if (conflict) {
    char msg[160];
    snprintf(msg, sizeof msg, "the job is %s: %s", job_state_name(was >= 0 ? was : now), conflict);
    fail(rs, 409, msg);
    return;
  }
  buf_adds(&rs->body, "{\"id\":");
  json_put_string(&rs->body, id, strlen(id));
  buf_printf(&rs->body, ",\"was\":\"%s\",\"state\":\"%s\"}", job_state_name(was), job_state_name(now));
}

static void act_cancel(struct jobq *q, const char *id, struct admin_resp *rs) {
  struct jobq_call c = {.op = JC_CANCEL, .id = id};
  jobq_call_run(q, &c);
  int was = c.rc;
  if (was >= 0 && job_state_final(was)) action_reply(rs, id, was, was, "it has already finished");
  else if (was == JS_RUNNING) { action_reply(rs, id, was, JS_RUNNING, NULL); rs->status = 202; }
  else action_reply(rs, id, was, JS_CANCELLED, NULL);
}

/* retry / requeue: queued now (200), or 409 (its state does not take it), 429 full, 503. */
static void revive(struct jobq *q, const char *id, struct admin_resp *rs, int requeue) {
  struct jobq_call c = {.op = requeue ? JC_REQUEUE : JC_RETRY, .id = id};
  jobq_call_run(q, &c);
  struct buf rec;
  buf_init(&rec);
  struct jobq_call info = {.op = JC_INFO, .id = id, .out = &rec};
  if (c.rc == JQ_CONFLICT) jobq_call_run(q, &info);     /* the state it is in, for the message */
  buf_free(&rec);
  if (c.rc == JQ_CONFLICT)
    action_reply(rs, id, c.rc, info.rc, jobq_revive_refusal(requeue));
  else if (c.rc == JQ_FULL) fail(rs, 429, "the queue is full");
  else if (c.rc == JQ_DRAINING) fail(rs, 503, "the queue is shutting down");
  else action_reply(rs, id, c.rc, JS_QUEUED, NULL);
}

static void act_retry(struct jobq *q, const char *id, struct admin_resp *rs) { revive(q, id, rs, 0); }
static void act_requeue(struct jobq *q, const char *id, struct admin_resp *rs) { revive(q, id, rs, 1); }

static const struct { const char *name; void (*run)(struct jobq *, const char *, struct admin_resp *); } actions[] = {
  {"cancel", act_cancel}, {"retry", act_retry}, {"requeue", act_requeue},
};

static void serve_action(struct dashboard *d, const struct admin_req *rq, struct admin_resp *rs) {
  const char *name = rq->sub + strlen("api/job/");
  for (size_t i = 0; i < countof(actions); i++) {
    if (strcmp(name, actions[i].name) != 0) continue;
    struct jobq *q = queue_param(d, rq, rs);
    char id[JOBQ_KEY_MAX + 1];
    if (q && id_param(rq, id, rs) == 0) actions[i].run(q, id, rs);
    return;
  }
  fail(rs, 404, "no such action (cancel, retry, requeue)");
}

/* ---- the endpoint table --------------------------------------------------------------- */

typedef void (*endpoint_fn)(struct dashboard *, const struct admin_req *, struct admin_resp *);
static const struct { const char *sub; int prefix; const char *method; endpoint_fn fn; } endpoints[] = {
  {"", 0, "GET", serve_index},
  {"index.html", 0, "GET", serve_index},
  {"app.js", 0, "GET", serve_js},
  {"app.css", 0, "GET", serve_css},
  {"api/state", 0, "GET", serve_state},
  {"api/history", 0, "GET", serve_history},
  {"api/jobs", 0, "GET", serve_jobs},
  {"api/job", 0, "GET", serve_job},
  {"api/job/", 1, "POST", serve_action},
};

void dash_serve(void *ud, const struct admin_req *rq, struct admin_resp *rs) {
  struct dashboard *d = ud;
  for (size_t i = 0; i < countof(endpoints); i++) {
    size_t n = strlen(endpoints[i].sub);
    if (endpoints[i].prefix ? strncmp(rq->sub, endpoints[i].sub, n) != 0 : strcmp(rq->sub, endpoints[i].sub) != 0)
      continue;
    const char *m = endpoints[i].method;
    int get = strcmp(m, "GET") == 0;
    if (strcmp(rq->method, m) != 0 && !(get && strcmp(rq->method, "HEAD") == 0)) {
      snprintf(rs->allow, sizeof rs->allow, "%s", get ? "GET, HEAD" : m);
      fail(rs, 405, "method not allowed");
      return;
    }
    endpoints[i].fn(d, rq, rs);
    return;
  }
  fail(rs, 404, "not found");
}
