/*
** dash_state.c — what the dashboard shows (dashboard.h): the api/state document, built on
** the requesting admin thread from the same sources GET /metrics reads (rt_list_scheds and
** sched_*, the pid table, the supervisor, httpstats, every queue's stats through jobq_call,
** the registry service and the app's reload notes), and one history sample, taken on the
** sampler thread from the same sources. Rates (rps, jobs/s, utilisation) come from the
** history's newest sample, so the page and the charts agree.
** Threads: any admin thread and the sampler; every source guards itself (see their headers).
*/
#include "dashboard.h"
#include "app_impl.h"
#include "dash_hist.h"
#include "base/metrics.h"
#include "base/util.h"
#include "http/httpstats.h"
#include "jobs/jobq.h"
#include "registry/code.h"
#include "registry/registry.h"
#include "runtime/proc.h"
#include "runtime/regsvc.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"
#include "runtime/supervise.h"
#include "value/json.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAILURES_SHOWN 5             /* failed jobs listed per queue */

static void str(struct buf *b, const char *s) { json_put_string(b, s ? s : "", s ? strlen(s) : 0); }

static void num(struct buf *b, double v) {
  if (isnan(v) || isinf(v)) buf_adds(b, "null");
  else buf_printf(b, "%.6g", v);
}

/* "<kind>|<a>[|<b>]": a history series name (the page splits on '|'). */
static const char *series(char out[DH_NAME_MAX + 1], const char *kind, const char *x, const char *y) {
  snprintf(out, DH_NAME_MAX + 1, "%s|%s%s%s", kind, x, y ? "|" : "", y ? y : "");
  return out;
}

/* ---- process hosts and the busiest processes ------------------------------------------ */

struct top { struct proc_row { char pid[96], entry[160]; const char *host; size_t queued, heap; } rows[DASH_TOP]; size_t n; };

static void take_top(struct proc *p, void *ud) {
  struct top *t = ud;
  if (!p->sched) return;                               /* a function state in a call */
  size_t q = proc_queued(p);
  if (t->n == DASH_TOP && q <= t->rows[DASH_TOP - 1].queued) return;
  size_t i = t->n < DASH_TOP ? t->n++ : DASH_TOP - 1;  /* drop the smallest */
  while (i > 0 && t->rows[i - 1].queued < q) { t->rows[i] = t->rows[i - 1]; i--; }
  struct proc_row *r = &t->rows[i];
  snprintf(r->pid, sizeof r->pid, "%s", p->pidstr);
  snprintf(r->entry, sizeof r->entry, "%s", p->code && p->code->e ? p->code->e->id : "");
  r->host = sched_name(p->sched);
  r->queued = q;
  r->heap = atomic_load_explicit(&p->mem, memory_order_relaxed);   /* the owner writes it, relaxed */
}

static void hosts_json(struct dashboard *d, struct buf *b) {
  struct sched_ent *ss;
  size_t n = rt_list_scheds(d->a->rt, &ss);
  char nm[DH_NAME_MAX + 1];
  buf_adds(b, "\"hosts\":[");
  for (size_t i = 0; i < n; i++) {
    struct sched *s = ss[i].s;
    double busy = dhist_last(d->hist, series(nm, "busy", ss[i].id, NULL));
    buf_adds(b, i ? ",{\"id\":" : "{\"id\":");
    str(b, ss[i].id);
    buf_printf(b, ",\"kind\":\"%s\",\"workers\":%d,\"processes\":%ld,\"started\":%llu,\"run_queue\":%ld,"
                  "\"busy_seconds\":%.3f,\"utilisation\":",
               ss[i].terminal ? "terminal" : "process", sched_workers(s), sched_procs(s),
               (unsigned long long)sched_started(s), sched_queued(s), (double)sched_busy_ns(s) / 1e9);
    num(b, sched_workers(s) > 0 ? busy / sched_workers(s) : NAN);
    buf_addc(b, '}');
  }
  free(ss);
  struct top t = {.n = 0};
  rt_foreach_proc(d->a->rt, NULL, take_top, &t);
  buf_adds(b, "],\"busiest\":[");
  for (size_t i = 0; i < t.n; i++) {
    buf_adds(b, i ? ",{\"pid\":" : "{\"pid\":");
    str(b, t.rows[i].pid);
    buf_adds(b, ",\"host\":");
    str(b, t.rows[i].host);
    buf_adds(b, ",\"entry\":");
    str(b, t.rows[i].entry);
    buf_printf(b, ",\"mailbox\":%zu,\"lua_heap\":%zu}", t.rows[i].queued, t.rows[i].heap);
  }
  buf_addc(b, ']');
}

/* ---- services ------------------------------------------------------------------------- */

struct first { struct buf *b; int n; };

static void service_json(void *ud, const struct sup_view *v) {
  struct first *f = ud;
  struct buf *b = f->b;
  buf_adds(b, f->n++ ? ",{\"id\":" : "{\"id\":");
  str(b, v->id);
  buf_adds(b, ",\"process\":");
  str(b, v->process);
  buf_adds(b, ",\"host\":");
  str(b, v->host);
  buf_printf(b, ",\"state\":\"%s\",\"attempt\":%d,\"restarts\":%llu,\"pid\":%llu,\"last_error\":", v->state,
             v->attempt, (unsigned long long)v->restarts, (unsigned long long)v->pid);
  if (v->last_error[0]) str(b, v->last_error);
  else buf_adds(b, "null");
  buf_printf(b, ",\"last_error_at\":%lld}", (long long)(v->last_error_at / 1000000));
}

/* ---- HTTP routes ---------------------------------------------------------------------- */

struct route_walk { struct dashboard *d; struct buf *b; int n; };

static void route_json(void *ud, const struct hs_view *v) {
  struct route_walk *w = ud;
  struct buf *b = w->b;
  char nm[DH_NAME_MAX + 1];
  buf_adds(b, w->n++ ? ",{\"service\":" : "{\"service\":");
  str(b, v->service);
  buf_adds(b, ",\"route\":");
  str(b, v->route);
  buf_printf(b, ",\"requests\":%llu,\"rps\":", (unsigned long long)v->requests);
  num(b, dhist_last(w->d->hist, series(nm, "rps", v->service, v->route)));
  buf_printf(b, ",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"status\":{", v->p50_s * 1e3, v->p99_s * 1e3);
  for (int i = 0; i < v->ncodes; i++) buf_printf(b, "%s\"%d\":%llu", i ? "," : "", v->code[i], (unsigned long long)v->code_n[i]);
  if (v->other) buf_printf(b, "%s\"other\":%llu", v->ncodes ? "," : "", (unsigned long long)v->other);
  buf_adds(b, "}}");
}

/* ---- queues --------------------------------------------------------------------------- */

static void queue_json(struct dashboard *d, const struct queue_ent *qe, struct buf *b) {
  struct jobq_call c = {.op = JC_STATS};
  jobq_call_run(qe->q, &c);
  char nm[DH_NAME_MAX + 1];
  buf_adds(b, "{\"id\":");
  str(b, qe->id);
  if (c.rc < 0) { buf_adds(b, ",\"error\":\"the queue's store is unavailable\"}"); return; }
  const struct jobq_stats *st = &c.st;
  buf_adds(b, ",\"states\":{");
  for (int s = 0; s < JS_COUNT; s++) buf_printf(b, "%s\"%s\":%zu", s ? "," : "", job_state_name(s), st->by_state[s]);
  buf_printf(b, "},\"published\":%llu,\"finished\":%llu,\"retries\":%llu,\"rejected\":%llu,"
                "\"wait_p50_ms\":%.3f,\"wait_p99_ms\":%.3f,\"finished_per_s\":",
             (unsigned long long)st->published, (unsigned long long)st->finished, (unsigned long long)st->retries,
             (unsigned long long)(st->rejected_full + st->rejected_draining), (double)st->wait_p50_ns / 1e6,
             (double)st->wait_p99_ns / 1e6);
  num(b, dhist_last(d->hist, series(nm, "finished", qe->id, NULL)));
  buf_printf(b, ",\"draining\":%s,\"available\":%s,\"failures\":", jobq_draining(qe->q) ? "true" : "false",
             jobq_available(qe->q) ? "true" : "false");
  struct jobq_call l = {.op = JC_LIST, .state = JS_FAILED, .after = 0, .limit = FAILURES_SHOWN, .out = b};
  size_t mark = b->len;
  jobq_call_run(qe->q, &l);
  if (l.rc < 0) { b->len = mark; buf_adds(b, "[]"); }
  buf_addc(b, '}');
}

static void queues_json(struct dashboard *d, struct buf *b) {
  struct queue_ent *qs;
  size_t n = rt_list_queues(d->a->rt, &qs);
  buf_adds(b, "\"queues\":[");
  for (size_t i = 0; i < n; i++) {
    if (i) buf_addc(b, ',');
    queue_json(d, &qs[i], b);
  }
  buf_addc(b, ']');
  free(qs);
}

/* ---- registry ------------------------------------------------------------------------- */

static void note_json(struct buf *b, const struct reload_note *n) {
  if (!n->at_ns) { buf_adds(b, "null"); return; }
  buf_printf(b, "{\"at\":%lld,\"version\":%llu,\"entries\":%zu,\"why\":", (long long)(n->at_ns / 1000000),
             (unsigned long long)n->version, n->entries);
  str(b, n->why);
  buf_adds(b, ",\"errors\":[");
  int k = 0;
  for (const char *p = n->problems; p && *p;) {          /* one diagnostic a line */
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len) { if (k++) buf_addc(b, ','); json_put_string(b, p, len); }
    p += len + (e ? 1 : 0);
  }
  buf_adds(b, "]}");
}

static void kinds_json(struct buf *b, const struct registry *r) {
  const char *kinds[64];
  size_t counts[64], nk = 0, other = 0;
  for (size_t i = 0; i < registry_count(r); i++) {
    const char *k = registry_at(r, i)->kind;
    size_t j = 0;
    while (j < nk && strcmp(kinds[j], k) != 0) j++;
    if (j == nk && nk < countof(kinds)) { kinds[nk] = k; counts[nk++] = 0; }
    if (j < nk) counts[j]++;
    else other++;
  }
  buf_adds(b, "{");
  for (size_t j = 0; j < nk; j++) {
    if (j) buf_addc(b, ',');
    str(b, kinds[j]);
    buf_printf(b, ":%zu", counts[j]);
  }
  if (other) buf_printf(b, "%s\"(more kinds)\":%zu", nk ? "," : "", other);
  buf_addc(b, '}');
}

static void registry_json(struct dashboard *d, struct buf *b) {
  const struct reg_service *rs = rt_find_service(d->a->rt, "registry");
  struct reg_version vs[REG_KEEP_VERSIONS];
  size_t nv = rs ? rs->versions(rs->ud, vs, REG_KEEP_VERSIONS) : 0;
  struct registry *cur = nv ? rs->generation(rs->ud, vs[nv - 1].id) : NULL;
  buf_adds(b, "\"registry\":{\"version\":");
  if (nv) buf_printf(b, "%llu,\"entries\":%zu,\"kinds\":", (unsigned long long)vs[nv - 1].id, vs[nv - 1].entries);
  else buf_adds(b, "null,\"entries\":0,\"kinds\":");
  if (cur) kinds_json(b, cur);
  else buf_adds(b, "{}");
  registry_unref(cur);
  buf_adds(b, ",\"versions\":[");
  for (size_t i = nv > 10 ? nv - 10 : 0, k = 0; i < nv; i++, k++)
    buf_printf(b, "%s{\"id\":%llu,\"at\":%lld,\"source\":\"%s\",\"entries\":%zu}", k ? "," : "",
               (unsigned long long)vs[i].id, (long long)(vs[i].time_ns / 1000000), vs[i].source, vs[i].entries);
  buf_printf(b, "],\"reloads\":%llu,\"refused\":%llu,\"last_reload\":",
             (unsigned long long)atomic_load(&d->a->reloads_ok), (unsigned long long)atomic_load(&d->a->reloads_refused));
  pthread_mutex_lock(&d->a->notes_lock);
  note_json(b, &d->a->last_reload);
  buf_adds(b, ",\"last_refused\":");
  note_json(b, &d->a->last_refused);
  pthread_mutex_unlock(&d->a->notes_lock);
  buf_addc(b, '}');
}

void dash_state_json(struct dashboard *d, struct buf *b) {
  struct host_mem hm;
  metrics_host_memory(&hm);
  buf_printf(b, "{\"now\":%lld,\"version\":\"%s\",\"samples\":%zu,\"messages_sent\":%llu,"
                "\"memory\":{\"heap\":%llu,\"rss\":%llu},",
             (long long)(clock_wall_ns() / 1000000), TASKHOST_VERSION, dhist_len(d->hist),
             (unsigned long long)atomic_load_explicit(&d->a->rt->messages_sent, memory_order_relaxed),
             (unsigned long long)hm.heap_in_use, (unsigned long long)hm.rss);
  hosts_json(d, b);
  buf_adds(b, ",\"services\":[");
  struct first f = {b, 0};
  if (d->a->sup) sup_each(d->a->sup, service_json, &f);
  buf_adds(b, "],\"http\":[");
  struct route_walk w = {d, b, 0};
  if (d->a->httpstats) httpstats_each(d->a->httpstats, route_json, &w);
  buf_adds(b, "],");
  queues_json(d, b);
  buf_addc(b, ',');
  registry_json(d, b);
  buf_addc(b, '}');
}

/* ---- one history sample --------------------------------------------------------------- */

struct svc_sum { char service[DH_NAME_MAX + 1]; double n; };
struct sample_walk { struct dashboard *d; struct svc_sum sums[16]; size_t nsums; };

static void route_sample(void *ud, const struct hs_view *v) {
  struct sample_walk *w = ud;
  char nm[DH_NAME_MAX + 1];
  dhist_count(w->d->hist, series(nm, "rps", v->service, v->route), (double)v->requests);
  size_t i = 0;
  while (i < w->nsums && strcmp(w->sums[i].service, v->service) != 0) i++;
  if (i == w->nsums && i < countof(w->sums)) snprintf(w->sums[w->nsums++].service, DH_NAME_MAX + 1, "%s", v->service);
  if (i < w->nsums) w->sums[i].n += (double)v->requests;
}

void dash_sample(struct dashboard *d, int64_t t_ms) {
  struct dhist *h = d->hist;
  char nm[DH_NAME_MAX + 1];
  dhist_begin(h, t_ms);
  struct sched_ent *ss;
  size_t n = rt_list_scheds(d->a->rt, &ss);
  double procs = 0;
  for (size_t i = 0; i < n; i++) {
    procs += (double)sched_procs(ss[i].s);
    dhist_put(h, series(nm, "processes", ss[i].id, NULL), (double)sched_procs(ss[i].s));
    dhist_put(h, series(nm, "run_queue", ss[i].id, NULL), (double)sched_queued(ss[i].s));
    dhist_count(h, series(nm, "busy", ss[i].id, NULL), (double)sched_busy_ns(ss[i].s) / 1e9);
  }
  free(ss);
  dhist_put(h, "processes", procs);
  dhist_count(h, "messages", (double)atomic_load_explicit(&d->a->rt->messages_sent, memory_order_relaxed));
  struct queue_ent *qs;
  n = rt_list_queues(d->a->rt, &qs);
  for (size_t i = 0; i < n; i++) {
    struct jobq_call c = {.op = JC_STATS};
    jobq_call_run(qs[i].q, &c);
    if (c.rc < 0) continue;
    dhist_count(h, series(nm, "finished", qs[i].id, NULL), (double)c.st.finished);
    dhist_count(h, series(nm, "published", qs[i].id, NULL), (double)c.st.published);
    dhist_put(h, series(nm, "failed", qs[i].id, NULL), (double)c.st.by_state[JS_FAILED]);
    dhist_put(h, series(nm, "waiting", qs[i].id, NULL),
              (double)(c.st.by_state[JS_QUEUED] + c.st.by_state[JS_SCHEDULED] + c.st.by_state[JS_RETRYING]));
  }
  free(qs);
  struct sample_walk w = {.d = d};
  if (d->a->httpstats) httpstats_each(d->a->httpstats, route_sample, &w);
  for (size_t i = 0; i < w.nsums; i++) dhist_count(h, series(nm, "http", w.sums[i].service, NULL), w.sums[i].n);
  dhist_end(h);
}
