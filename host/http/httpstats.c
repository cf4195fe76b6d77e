/*
** httpstats.c — see httpstats.h.
** Two lists under `lock`, both only growing until httpstats_free: routes (service, pattern:
** the histogram) and slots (service, pattern, method: the status counts, pointing at their
** route's histogram). A request touches three relaxed atomics of its slot (a status count,
** a bucket, the duration sum); the request total and the histogram's count are sums of
** those, made when the text is rendered.
*/
#include "httpstats.h"
#include "base/metrics.h"
#include "base/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HS_CODES 16          /* distinct status codes with their own series, per slot */
#define HS_BOUNDS 16         /* histogram bounds (+Inf is one more bucket) */

/* Bucket upper bounds, ns: 100 µs … 10 s (handlers here answer in tens of µs, so the
** default Prometheus buckets, starting at 5 ms, would put nearly every request in one). */
static const int64_t bounds_ns[HS_BOUNDS] = {
  100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
  100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

const char *const httpstats_methods[HS_METHODS] = {"GET", "HEAD", "POST", "PUT", "DELETE",
                                                   "PATCH", "OPTIONS", "other"};

struct hroute {
  struct hroute *next;
  char *service, *route;
  _Atomic uint64_t bucket[HS_BOUNDS + 1];   /* per bucket, not cumulative */
  _Atomic uint64_t sum_ns;
};

struct hstat {
  struct hstat *next;
  struct hroute *r;
  char *method;
  _Atomic int code[HS_CODES];               /* 0 = free; claimed once by compare-exchange */
  _Atomic uint64_t by_code[HS_CODES];
  _Atomic uint64_t other;                   /* codes past the first HS_CODES */
};

struct httpstats {
  pthread_mutex_t lock;
  struct hroute *routes;
  struct hstat *slots;
};

struct httpstats *httpstats_new(void) {
  struct httpstats *t = xcalloc(1, sizeof *t);
  pthread_mutex_init(&t->lock, NULL);
  return t;
}

void httpstats_free(struct httpstats *t) {
  if (!t) return;
  for (struct hstat *h = t->slots, *n; h; h = n) { n = h->next; free(h->method); free(h); }
  for (struct hroute *r = t->routes, *n; r; r = n) { n = r->next; free(r->service); free(r->route); free(r); }
  pthread_mutex_destroy(&t->lock);
  free(t);
}

int httpstats_method(const char *method) {
  for (int i = 0; i < HS_METHODS - 1; i++)
    if (strcmp(method, httpstats_methods[i]) == 0) return i;
  return HS_METHODS - 1;
}

/* Under lock. Linear: called per route at build and reload time, never per request. */
static struct hroute *route_of(struct httpstats *t, const char *service, const char *route) {
  for (struct hroute *r = t->routes; r; r = r->next)
    if (strcmp(r->service, service) == 0 && strcmp(r->route, route) == 0) return r;
  struct hroute *r = xcalloc(1, sizeof *r);
  r->service = xstrdup(service);
  r->route = xstrdup(route);
  r->next = t->routes;
  t->routes = r;
  return r;
}

struct hstat *httpstats_slot(struct httpstats *t, const char *service, const char *route,
                             const char *method) {
  pthread_mutex_lock(&t->lock);
  struct hroute *r = route_of(t, service, route);
  struct hstat *h;
  for (h = t->slots; h; h = h->next)
    if (h->r == r && strcmp(h->method, method) == 0) break;
  if (!h) {
    h = xcalloc(1, sizeof *h);
    h->r = r;
    h->method = xstrdup(method);
    h->next = t->slots;
    t->slots = h;
  }
  pthread_mutex_unlock(&t->lock);
  return h;
}

/* The status's counter: the slot that holds the code, or the first free one claimed. */
static _Atomic uint64_t *code_counter(struct hstat *h, int status) {
  for (int i = 0; i < HS_CODES; i++) {
    int c = atomic_load_explicit(&h->code[i], memory_order_acquire);
    if (c == 0 && !atomic_compare_exchange_strong(&h->code[i], &c, status) && c != status) continue;
    if (c == 0 || c == status) return &h->by_code[i];
  }
  return &h->other;
}

void httpstats_count(struct hstat *h, int status, int64_t ns) {
  atomic_fetch_add_explicit(code_counter(h, status), 1, memory_order_relaxed);
  int b = 0;
  while (b < HS_BOUNDS && ns > bounds_ns[b]) b++;
  atomic_fetch_add_explicit(&h->r->bucket[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->r->sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

#define LBL(n, v) {n, v, strlen(v)}

static void collect_counts(struct httpstats *t, struct mcollect *c) {
  const char *name = "taskhost_http_requests_total";
  mc_family(c, name, "counter", "HTTP requests answered, by route pattern, method and status.");
  for (struct hstat *h = t->slots; h; h = h->next) {
    for (int i = 0; i < HS_CODES; i++) {
      int code = atomic_load_explicit(&h->code[i], memory_order_acquire);
      if (!code) break;
      char st[24];
      size_t n;
      const char *s = i64_dec(code, st, &n);
      struct mlabel l[] = {LBL("service", h->r->service), LBL("route", h->r->route),
                           LBL("method", h->method), {"status", s, n}};
      mc_sample(c, name, l, 4, (double)atomic_load_explicit(&h->by_code[i], memory_order_relaxed));
    }
    uint64_t other = atomic_load_explicit(&h->other, memory_order_relaxed);
    if (!other) continue;
    struct mlabel l[] = {LBL("service", h->r->service), LBL("route", h->r->route),
                         LBL("method", h->method), LBL("status", "other")};
    mc_sample(c, name, l, 4, (double)other);
  }
}

static void collect_durations(struct httpstats *t, struct mcollect *c) {
  mc_family(c, "taskhost_http_request_duration_seconds", "histogram",
            "Time from routing a request to its response written.");
  for (struct hroute *r = t->routes; r; r = r->next) {
    uint64_t cum = 0;
    char le[40];
    for (int b = 0; b <= HS_BOUNDS; b++) {
      cum += atomic_load_explicit(&r->bucket[b], memory_order_relaxed);
      if (b == HS_BOUNDS) strcpy(le, "+Inf");
      else metrics_fmt_value((double)bounds_ns[b] / 1e9, le);
      struct mlabel l[] = {LBL("service", r->service), LBL("route", r->route), LBL("le", le)};
      mc_sample(c, "taskhost_http_request_duration_seconds_bucket", l, 3, (double)cum);
    }
    struct mlabel l[] = {LBL("service", r->service), LBL("route", r->route)};
    mc_sample(c, "taskhost_http_request_duration_seconds_sum", l, 2,
              (double)atomic_load_explicit(&r->sum_ns, memory_order_relaxed) / 1e9);
    mc_sample(c, "taskhost_http_request_duration_seconds_count", l, 2, (double)cum);
  }
}

void httpstats_collect(void *ud, struct mcollect *c) {
  struct httpstats *t = ud;
  pthread_mutex_lock(&t->lock);
  collect_counts(t, c);
  collect_durations(t, c);
  pthread_mutex_unlock(&t->lock);
}

/* The q-quantile (0..1) of a histogram of HS_BOUNDS + 1 buckets holding n, in seconds. */
static double quantile(const uint64_t *bucket, uint64_t n, double q) {
  if (!n) return 0;
  double rank = q * (double)n, cum = 0;
  for (int b = 0; b <= HS_BOUNDS; b++) {
    double in = (double)bucket[b];
    if (cum + in >= rank && in > 0) {
      if (b == HS_BOUNDS) return (double)bounds_ns[HS_BOUNDS - 1] / 1e9;
      double lo = b ? (double)bounds_ns[b - 1] : 0, hi = (double)bounds_ns[b];
      return (lo + (hi - lo) * ((rank - cum) / in)) / 1e9;
    }
    cum += in;
  }
  return (double)bounds_ns[HS_BOUNDS - 1] / 1e9;
}

/* Adds one slot's counts to v (codes merged by value). */
static void add_slot(struct hs_view *v, struct hstat *h) {
  for (int i = 0; i < HS_CODES; i++) {
    int code = atomic_load_explicit(&h->code[i], memory_order_acquire);
    if (!code) break;
    uint64_t n = atomic_load_explicit(&h->by_code[i], memory_order_relaxed);
    int k = 0;
    while (k < v->ncodes && v->code[k] != code) k++;
    if (k == v->ncodes && k < HS_VIEW_CODES) { v->code[k] = code; v->code_n[k] = 0; v->ncodes++; }
    if (k < v->ncodes) v->code_n[k] += n;
    else v->other += n;
  }
  v->other += atomic_load_explicit(&h->other, memory_order_relaxed);
}

void httpstats_each(struct httpstats *t, void (*fn)(void *ud, const struct hs_view *v), void *ud) {
  pthread_mutex_lock(&t->lock);
  for (struct hroute *r = t->routes; r; r = r->next) {
    struct hs_view v = {.service = r->service, .route = r->route};
    uint64_t bucket[HS_BOUNDS + 1];
    for (int b = 0; b <= HS_BOUNDS; b++) {
      bucket[b] = atomic_load_explicit(&r->bucket[b], memory_order_relaxed);
      v.requests += bucket[b];
    }
    for (struct hstat *h = t->slots; h; h = h->next)
      if (h->r == r) add_slot(&v, h);
    v.sum_s = (double)atomic_load_explicit(&r->sum_ns, memory_order_relaxed) / 1e9;
    v.p50_s = quantile(bucket, v.requests, 0.5);
    v.p99_s = quantile(bucket, v.requests, 0.99);
    fn(ud, &v);
  }
  pthread_mutex_unlock(&t->lock);
}
