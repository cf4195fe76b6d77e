/* test_metrics.c — the series registry: counters, gauges, histograms, label order, escaping,
** name rules, type clashes, cardinality refusal (counted), collectors, exact text output. */
#include "base/metrics.h"
#include "base/util.h"
#include "t.h"

#include <math.h>
#include <pthread.h>

#define L(n, v) {n, v, sizeof v - 1}

static char *render(struct metrics *m) {
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "");
  metrics_render(m, &b);
  return buf_steal(&b);
}

static const char refused_zero[] =
  "# HELP taskhost_metrics_series Series made by scripts through the metrics module.\n"
  "# TYPE taskhost_metrics_series gauge\n";

TEST(counter_gauge_exact_text) {
  struct metrics *m = metrics_new(NULL);
  char err[256];
  struct mlabel a[] = {L("method", "GET"), L("code", "200")};
  struct mlabel b[] = {L("code", "200"), L("method", "GET")};   /* same series, other order */
  CHECK_INT(metrics_counter_add(m, "http_requests_total", a, 2, 1, err, sizeof err), M_OK);
  CHECK_INT(metrics_counter_add(m, "http_requests_total", b, 2, 2.5, err, sizeof err), M_OK);
  CHECK_INT(metrics_gauge_set(m, "temp", NULL, 0, 20, err, sizeof err), M_OK);
  CHECK_INT(metrics_gauge_add(m, "temp", NULL, 0, -0.25, err, sizeof err), M_OK);
  char *t = render(m);
  const char *want =
    "# TYPE http_requests_total counter\n"
    "http_requests_total{code=\"200\",method=\"GET\"} 3.5\n"
    "# TYPE temp gauge\n"
    "temp 19.75\n";
  CHECK(strncmp(t, want, strlen(want)) == 0);
  if (strncmp(t, want, strlen(want)) != 0) printf("%s\n", t);
  CHECK_CONTAINS(t, refused_zero);
  CHECK_CONTAINS(t, "taskhost_metrics_series 2\n");
  CHECK_CONTAINS(t, "taskhost_metrics_series_refused_total{reason=\"series_total\"} 0\n");
  free(t);
  metrics_free(m);
}

TEST(histogram_buckets) {
  struct metrics *m = metrics_new(NULL);
  char err[256];
  struct mlabel l[] = {L("op", "read")};
  double obs[] = {0.00390625, 0.125, 0.25, 7, 100};
  for (size_t i = 0; i < 5; i++) CHECK_INT(metrics_observe(m, "lat_seconds", l, 1, obs[i], err, sizeof err), M_OK);
  char *t = render(m);
  const char *want =
    "# TYPE lat_seconds histogram\n"
    "lat_seconds_bucket{op=\"read\",le=\"0.005\"} 1\n"
    "lat_seconds_bucket{op=\"read\",le=\"0.01\"} 1\n"
    "lat_seconds_bucket{op=\"read\",le=\"0.025\"} 1\n"
    "lat_seconds_bucket{op=\"read\",le=\"0.05\"} 1\n"
    "lat_seconds_bucket{op=\"read\",le=\"0.1\"} 1\n"
    "lat_seconds_bucket{op=\"read\",le=\"0.25\"} 3\n"
    "lat_seconds_bucket{op=\"read\",le=\"0.5\"} 3\n"
    "lat_seconds_bucket{op=\"read\",le=\"1\"} 3\n"
    "lat_seconds_bucket{op=\"read\",le=\"2.5\"} 3\n"
    "lat_seconds_bucket{op=\"read\",le=\"5\"} 3\n"
    "lat_seconds_bucket{op=\"read\",le=\"10\"} 4\n"
    "lat_seconds_bucket{op=\"read\",le=\"+Inf\"} 5\n"
    "lat_seconds_sum{op=\"read\"} 107.37890625\n"
    "lat_seconds_count{op=\"read\"} 5\n";
  CHECK(strncmp(t, want, strlen(want)) == 0);
  if (strncmp(t, want, strlen(want)) != 0) printf("%s\n", t);
  free(t);
  metrics_free(m);
}

TEST(escaping_and_sorting) {
  struct metrics *m = metrics_new(NULL);
  char err[256];
  struct mlabel l[] = {L("path", "a\\b\"c\nd")};
  struct mlabel z[] = {L("path", "zz")};
  CHECK_INT(metrics_counter_add(m, "b_total", z, 1, 1, err, sizeof err), M_OK);
  CHECK_INT(metrics_counter_add(m, "b_total", l, 1, 1, err, sizeof err), M_OK);
  CHECK_INT(metrics_counter_add(m, "a_total", NULL, 0, 1, err, sizeof err), M_OK);
  char *t = render(m);
  const char *want =
    "# TYPE a_total counter\na_total 1\n"
    "# TYPE b_total counter\n"
    "b_total{path=\"a\\\\b\\\"c\\nd\"} 1\n"
    "b_total{path=\"zz\"} 1\n";
  CHECK(strncmp(t, want, strlen(want)) == 0);
  if (strncmp(t, want, strlen(want)) != 0) printf("%s\n", t);
  free(t);
  metrics_free(m);
}

TEST(names_values_and_types_refused) {
  struct metrics *m = metrics_new(NULL);
  char err[256];
  CHECK_INT(metrics_counter_add(m, "9bad", NULL, 0, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "bad-name", NULL, 0, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "", NULL, 0, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "ns:ok_total", NULL, 0, 1, err, sizeof err), M_OK);
  CHECK_INT(metrics_counter_add(m, "taskhost_mine", NULL, 0, 1, err, sizeof err), M_INVALID);
  struct mlabel bad1[] = {L("__x", "v")}, bad2[] = {L("a:b", "v")}, bad3[] = {L("le", "1")};
  struct mlabel dup[] = {L("a", "1"), L("a", "2")}, badutf[] = {L("a", "\xff")};
  CHECK_INT(metrics_counter_add(m, "c_total", bad1, 1, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "c_total", bad2, 1, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_observe(m, "h", bad3, 1, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "c_total", dup, 2, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "c_total", badutf, 1, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "c_total", NULL, 0, -1, err, sizeof err), M_INVALID);
  CHECK_CONTAINS(err, "only goes up");
  CHECK_INT(metrics_gauge_set(m, "g", NULL, 0, NAN, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_gauge_set(m, "g", NULL, 0, INFINITY, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_gauge_set(m, "ns:ok_total", NULL, 0, 1, err, sizeof err), M_INVALID);
  CHECK_CONTAINS(err, "is a counter, not a gauge");
  struct mlabel many[METRICS_MAX_LABELS + 1];
  char names[METRICS_MAX_LABELS + 1][8];
  for (int i = 0; i <= METRICS_MAX_LABELS; i++) {
    snprintf(names[i], sizeof names[i], "l%d", i);
    many[i] = (struct mlabel){names[i], "v", 1};
  }
  CHECK_INT(metrics_counter_add(m, "c_total", many, METRICS_MAX_LABELS + 1, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "c_total", many, METRICS_MAX_LABELS, 1, err, sizeof err), M_OK);
  char big[1100];
  memset(big, 'x', sizeof big);
  struct mlabel bigl[] = {{"a", big, 1025}}, okl[] = {{"a", big, 1024}};
  CHECK_INT(metrics_counter_add(m, "c_total", bigl, 1, 1, err, sizeof err), M_INVALID);
  CHECK_INT(metrics_counter_add(m, "c_total", okl, 1, 1, err, sizeof err), M_OK);
  metrics_free(m);
}

TEST(cardinality_refused_and_counted) {
  struct metrics_limits lim = {.max_names = 3, .max_series_per_name = 4, .max_series = 6};
  struct metrics *m = metrics_new(&lim);
  char err[256], v[16];
  for (int i = 0; i < 6; i++) {
    snprintf(v, sizeof v, "%d", i);
    struct mlabel l = {"id", v, strlen(v)};
    CHECK_INT(metrics_counter_add(m, "a_total", &l, 1, 1, err, sizeof err), i < 4 ? M_OK : M_LIMIT);
  }
  CHECK_CONTAINS(err, "series per metric");
  struct mlabel l0 = {"id", "0", 1};
  CHECK_INT(metrics_counter_add(m, "a_total", &l0, 1, 1, err, sizeof err), M_OK);   /* existing: fine */
  CHECK_INT(metrics_gauge_set(m, "b", NULL, 0, 1, err, sizeof err), M_OK);
  CHECK_INT(metrics_gauge_set(m, "c", NULL, 0, 1, err, sizeof err), M_OK);           /* 6 series */
  CHECK_INT(metrics_gauge_set(m, "d", NULL, 0, 1, err, sizeof err), M_LIMIT);        /* 4th name */
  CHECK_INT(metrics_gauge_set(m, "c", &l0, 1, 1, err, sizeof err), M_LIMIT);         /* 7th series */
  char *t = render(m);
  CHECK_CONTAINS(t, "taskhost_metrics_series_refused_total{reason=\"series_per_metric\"} 2\n");
  CHECK_CONTAINS(t, "taskhost_metrics_series_refused_total{reason=\"metric_names\"} 1\n");
  CHECK_CONTAINS(t, "taskhost_metrics_series_refused_total{reason=\"series_total\"} 1\n");
  CHECK_CONTAINS(t, "taskhost_metrics_series 6\n");
  CHECK_CONTAINS(t, "a_total{id=\"0\"} 2\n");
  CHECK(!strstr(t, "a_total{id=\"4\"}"));
  free(t);
  metrics_free(m);
}

static void collect(void *ud, struct mcollect *c) {
  mc_family(c, "taskhost_things", "gauge", "Things.");
  struct mlabel l = {"host", "a\"b", 3};
  mc_sample(c, "taskhost_things", &l, 1, *(double *)ud);
}

TEST(collectors_and_values) {
  struct metrics *m = metrics_new(NULL);
  double v = 7;
  metrics_add_collector(m, collect, &v);
  char *t = render(m);
  CHECK_CONTAINS(t, "# HELP taskhost_things Things.\n# TYPE taskhost_things gauge\ntaskhost_things{host=\"a\\\"b\"} 7\n");
  free(t);
  char num[40];
  CHECK_STR(metrics_fmt_value(0.1, num), "0.1");
  CHECK_STR(metrics_fmt_value(1e20, num), "1e+20");
  CHECK_STR(metrics_fmt_value(-3, num), "-3");
  CHECK_STR(metrics_fmt_value(1.0 / 3, num), "0.3333333333333333");
  CHECK_STR(metrics_fmt_value(INFINITY, num), "+Inf");
  metrics_free(m);
}

static void *bump(void *ud) {
  char err[128];
  struct mlabel l = {"t", "x", 1};
  for (int i = 0; i < 10000; i++) metrics_counter_add(ud, "n_total", &l, 1, 1, err, sizeof err);
  return NULL;
}

TEST(threads) {
  struct metrics *m = metrics_new(NULL);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, bump, m);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  char *t = render(m);
  CHECK_CONTAINS(t, "n_total{t=\"x\"} 40000\n");
  free(t);
  metrics_free(m);
}

int main(void) {
  RUN(counter_gauge_exact_text);
  RUN(histogram_buckets);
  RUN(escaping_and_sorting);
  RUN(names_values_and_types_refused);
  RUN(cardinality_refused_and_counted);
  RUN(collectors_and_values);
  RUN(threads);
  return T_DONE();
}
