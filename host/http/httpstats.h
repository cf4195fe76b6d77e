/*
** httpstats.h — request counts by status and latency histograms of every http.service, one
** slot per (service, route pattern, method), for the admin listener's GET /metrics:
** taskhost_http_requests_total{service,route,method,status} and
** taskhost_http_request_duration_seconds{service,route} (a histogram).
**
** A route's slot is found (or made) when its route table is given to a server (http_start,
** http_swap_routes) and kept on the route, so a request only adds to the slot's relaxed
** atomics: no lock and no lookup per request. Slots are keyed by service, pattern and method
** and never freed before the table, so the counters go on across hot reloads and server
** restarts. Requests no route took (404, 405, OPTIONS, refused heads) go to the service's
** route "(unmatched)" slot of their method (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS or
** "other"). Cardinality is bounded by the registry's routes: the raw URL is never a label.
** Status codes: the first HS_CODES distinct codes of a slot get their own series; later ones
** are counted under status="other".
**
** Threads: httpstats_slot takes the table's lock (server start and reload, on the main
** thread); httpstats_count runs on any civetweb thread, lock-free; httpstats_collect runs
** on the rendering (admin) thread and takes the lock only to walk the slot list.
*/
#ifndef TASKHOST_HTTPSTATS_H
#define TASKHOST_HTTPSTATS_H

#include <stdint.h>

struct mcollect;
struct httpstats;
struct hstat;

/* The rt service name under which the app registers the table (http.c finds it there). */
#define HTTPSTATS_SERVICE "http_stats"
#define HTTPSTATS_UNMATCHED "(unmatched)"

struct httpstats *httpstats_new(void);
void httpstats_free(struct httpstats *t);   /* after every server using it stopped */

/* The slot of (service, route, method), made on first use; lives as long as t. */
struct hstat *httpstats_slot(struct httpstats *t, const char *service, const char *route,
                             const char *method);
/* The methods an unmatched request is counted under, and which one a request method is
** (its index; "other" for any method not listed). A server makes the HS_METHODS
** "(unmatched)" slots once, at start. */
#define HS_METHODS 8
extern const char *const httpstats_methods[HS_METHODS];
int httpstats_method(const char *method);

/* One finished request: its status and how long it took (ns). Lock-free. */
void httpstats_count(struct hstat *h, int status, int64_t ns);

/* A view of one route (service, pattern), its methods summed, for the dashboard
** (app/dashboard.c). Strings are valid during the visit only. Percentiles are estimated from
** the histogram: linear within the bucket that holds the rank (the last finite bound for
** the +Inf bucket); 0 with no request. */
#define HS_VIEW_CODES 16
struct hs_view {
  const char *service, *route;
  uint64_t requests;
  int ncodes;                          /* distinct codes in code[] (summed over methods) */
  int code[HS_VIEW_CODES];
  uint64_t code_n[HS_VIEW_CODES];
  uint64_t other;                      /* requests whose code did not fit */
  double sum_s, p50_s, p99_s;
};
/* Calls fn for every route under the table's lock (fn must not call into t). */
void httpstats_each(struct httpstats *t, void (*fn)(void *ud, const struct hs_view *v), void *ud);

/* A metrics collector (base/metrics.h); ud is the struct httpstats. */
void httpstats_collect(void *ud, struct mcollect *c);

#endif
