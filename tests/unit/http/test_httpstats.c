/* test_httpstats.c — per-route HTTP counters: slots are shared by key (so reloads keep
** counting), statuses get their own series up to HS_CODES then "other", durations land in
** the right buckets (cumulative in the text), the method buckets of unmatched requests, the
** exact text through a metrics collector, and counts from several threads add up. */
#include "http/httpstats.h"
#include "base/metrics.h"
#include "base/util.h"
#include "t.h"

#include <pthread.h>

static char *render(struct httpstats *t) {
  struct metrics *m = metrics_new(NULL);
  metrics_add_collector(m, httpstats_collect, t);
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "");
  metrics_render(m, &b);
  metrics_free(m);
  return buf_steal(&b);
}

TEST(slots_by_key) {
  struct httpstats *t = httpstats_new();
  struct hstat *a = httpstats_slot(t, "app:gw", "/api/x/{id}", "GET");
  CHECK(httpstats_slot(t, "app:gw", "/api/x/{id}", "GET") == a);    /* a reload finds it again */
  CHECK(httpstats_slot(t, "app:gw", "/api/x/{id}", "POST") != a);
  CHECK(httpstats_slot(t, "app:other", "/api/x/{id}", "GET") != a);
  httpstats_free(t);
}

TEST(counts_and_histogram_text) {
  struct httpstats *t = httpstats_new();
  struct hstat *g = httpstats_slot(t, "app:gw", "/a/{id}", "GET");
  struct hstat *p = httpstats_slot(t, "app:gw", "/a/{id}", "POST");
  httpstats_count(g, 200, 50000);         /* 50 µs: the first bucket */
  httpstats_count(g, 200, 300000);        /* 300 µs: le=0.0005 */
  httpstats_count(g, 404, 2000000000);    /* 2 s: le=2.5 */
  httpstats_count(p, 201, 20000000000);   /* 20 s: +Inf only */
  char *s = render(t);
  CHECK_CONTAINS(s, "# TYPE taskhost_http_requests_total counter\n");
  CHECK_CONTAINS(s, "taskhost_http_requests_total{service=\"app:gw\",route=\"/a/{id}\",method=\"GET\",status=\"200\"} 2\n");
  CHECK_CONTAINS(s, "taskhost_http_requests_total{service=\"app:gw\",route=\"/a/{id}\",method=\"GET\",status=\"404\"} 1\n");
  CHECK_CONTAINS(s, "taskhost_http_requests_total{service=\"app:gw\",route=\"/a/{id}\",method=\"POST\",status=\"201\"} 1\n");
  CHECK_CONTAINS(s, "# TYPE taskhost_http_request_duration_seconds histogram\n");
  const char *r = "{service=\"app:gw\",route=\"/a/{id}\",";
  char want[256];
  static const struct { const char *le; int n; } b[] = {
    {"0.0001", 1}, {"0.00025", 1}, {"0.0005", 2}, {"1", 2}, {"2.5", 3}, {"10", 3}, {"+Inf", 4}};
  for (size_t i = 0; i < countof(b); i++) {
    snprintf(want, sizeof want, "taskhost_http_request_duration_seconds_bucket%sle=\"%s\"} %d\n", r, b[i].le, b[i].n);
    CHECK_CONTAINS(s, want);
  }
  CHECK_CONTAINS(s, "taskhost_http_request_duration_seconds_count{service=\"app:gw\",route=\"/a/{id}\"} 4\n");
  CHECK_CONTAINS(s, "taskhost_http_request_duration_seconds_sum{service=\"app:gw\",route=\"/a/{id}\"} 22.00035\n");
  free(s);
  httpstats_free(t);
}

TEST(status_codes_past_the_limit_are_other) {
  struct httpstats *t = httpstats_new();
  struct hstat *h = httpstats_slot(t, "s", "/", "GET");
  for (int code = 200; code < 220; code++) httpstats_count(h, code, 1);   /* 20 distinct codes */
  httpstats_count(h, 219, 1);
  httpstats_count(h, 200, 1);
  char *s = render(t);
  CHECK_CONTAINS(s, "status=\"200\"} 2\n");
  CHECK_CONTAINS(s, "status=\"215\"} 1\n");          /* the 16th code has its own series */
  CHECK(!strstr(s, "status=\"216\""));
  CHECK_CONTAINS(s, "status=\"other\"} 5\n");        /* 216..219, and 219 again */
  free(s);
  httpstats_free(t);
}

TEST(method_buckets) {
  CHECK_STR(httpstats_methods[httpstats_method("GET")], "GET");
  CHECK_STR(httpstats_methods[httpstats_method("OPTIONS")], "OPTIONS");
  CHECK_STR(httpstats_methods[httpstats_method("PROPFIND")], "other");
  CHECK_STR(httpstats_methods[httpstats_method("get")], "other");
}

static void *hammer(void *arg) {
  for (int i = 0; i < 20000; i++) httpstats_count(arg, 200 + i % 3, 1000);
  return NULL;
}

TEST(threads_add_up) {
  struct httpstats *t = httpstats_new();
  struct hstat *h = httpstats_slot(t, "s", "/t", "GET");
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, hammer, h);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  char *s = render(t);
  CHECK_CONTAINS(s, "status=\"200\"} 26668\n");
  CHECK_CONTAINS(s, "status=\"201\"} 26668\n");
  CHECK_CONTAINS(s, "status=\"202\"} 26664\n");
  CHECK(!strstr(s, "status=\"other\""));
  CHECK_CONTAINS(s, "taskhost_http_request_duration_seconds_count{service=\"s\",route=\"/t\"} 80000\n");
  free(s);
  httpstats_free(t);
}

struct seen { int n; struct hs_view v[4]; char route[4][32]; };

static void keep(void *ud, const struct hs_view *v) {
  struct seen *s = ud;
  if (s->n == 4) return;
  s->v[s->n] = *v;
  snprintf(s->route[s->n], sizeof s->route[0], "%s", v->route);
  s->n++;
}

/* httpstats_each: one view per route, its methods summed, codes merged, percentiles from
** the histogram (linear within the bucket that holds the rank). */
TEST(views_per_route) {
  struct httpstats *t = httpstats_new();
  struct hstat *g = httpstats_slot(t, "app:gw", "/a", "GET");
  struct hstat *p = httpstats_slot(t, "app:gw", "/a", "POST");
  httpstats_slot(t, "app:gw", "/idle", "GET");
  for (int i = 0; i < 98; i++) httpstats_count(g, 200, 50000);   /* 50 µs: bucket 0..100 µs */
  httpstats_count(p, 201, 2000000000);                          /* 2 s: bucket 1..2.5 s */
  httpstats_count(p, 200, 2000000000);
  struct seen s = {0};
  httpstats_each(t, keep, &s);
  CHECK_INT(s.n, 2);
  struct hs_view *a = NULL, *idle = NULL;
  for (int i = 0; i < s.n; i++) {
    if (strcmp(s.route[i], "/a") == 0) a = &s.v[i];
    if (strcmp(s.route[i], "/idle") == 0) idle = &s.v[i];
  }
  CHECK(a && idle);
  if (!a || !idle) { httpstats_free(t); return; }
  CHECK_INT(a->requests, 100);
  CHECK_INT(a->ncodes, 2);
  for (int i = 0; i < a->ncodes; i++) {
    if (a->code[i] == 200) CHECK_INT(a->code_n[i], 99);         /* GET's and POST's 200s merged */
    else { CHECK_INT(a->code[i], 201); CHECK_INT(a->code_n[i], 1); }
  }
  CHECK(a->p50_s > 0.000051 && a->p50_s < 0.0000511);         /* 100 µs · 50/98 */
  CHECK(a->p99_s > 1.7499 && a->p99_s < 1.7501);              /* 1 s + 1.5 s · 1/2 */
  CHECK(a->sum_s > 4.0048 && a->sum_s < 4.0050);
  CHECK_INT(idle->requests, 0);
  CHECK(idle->p50_s == 0 && idle->p99_s == 0);
  httpstats_free(t);
}

int main(void) {
  RUN(slots_by_key);
  RUN(counts_and_histogram_text);
  RUN(status_codes_past_the_limit_are_other);
  RUN(method_buckets);
  RUN(threads_add_up);
  RUN(views_per_route);
  return T_DONE();
}
