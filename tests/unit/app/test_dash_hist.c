/* test_dash_hist.c — the dashboard's history ring: gauges and counters (stored as rates, null
** on the first sample and after a counter went back), series missing from a sample read null,
** the ring keeps the newest `cap` samples in order, `since` selects the later ones, the series
** budget drops (and counts) the excess, long names are cut, and a reader never sees the
** sample being written. */
#include "app/dash_hist.h"
#include "base/util.h"
#include "t.h"

#include <math.h>

static char *json(struct dhist *h, int64_t since) {
  struct buf b;
  buf_init(&b);
  dhist_json(h, since, &b);
  buf_addc(&b, '\0');
  return buf_steal(&b);
}

TEST(gauges_counters_and_nulls) {
  struct dhist *h = dhist_new(10, 8);
  dhist_begin(h, 1000);
  dhist_put(h, "g", 5);
  dhist_count(h, "c", 100);
  dhist_end(h);
  CHECK(isnan(dhist_last(h, "c")));              /* no previous total: no rate */
  dhist_begin(h, 3000);                          /* 2 s later */
  dhist_count(h, "c", 160);
  dhist_put(h, "new", 1);
  dhist_end(h);
  CHECK(dhist_last(h, "c") == 30);               /* (160 - 100) / 2 s */
  CHECK(isnan(dhist_last(h, "g")));              /* not put in this sample */
  dhist_begin(h, 4000);
  dhist_count(h, "c", 10);                       /* went back (a restart): no rate */
  dhist_end(h);
  CHECK(isnan(dhist_last(h, "c")));
  char *s = json(h, 0);
  CHECK_STR(s, "{\"t\":[1000,3000,4000],\"series\":{\"g\":[5,null,null],\"c\":[null,30,null],"
               "\"new\":[null,1,null]},\"dropped\":0}");
  free(s);
  CHECK(isnan(dhist_last(h, "nope")));
  dhist_free(h);
}

TEST(ring_keeps_the_newest_in_order) {
  struct dhist *h = dhist_new(3, 4);
  for (int i = 1; i <= 5; i++) {
    dhist_begin(h, i * 1000);
    dhist_put(h, "x", i);
    dhist_end(h);
  }
  CHECK_INT(dhist_len(h), 3);
  char *s = json(h, 0);
  CHECK_STR(s, "{\"t\":[3000,4000,5000],\"series\":{\"x\":[3,4,5]},\"dropped\":0}");
  free(s);
  s = json(h, 4000);                             /* only the samples after since */
  CHECK_STR(s, "{\"t\":[5000],\"series\":{\"x\":[5]},\"dropped\":0}");
  free(s);
  s = json(h, 9000);
  CHECK_STR(s, "{\"t\":[],\"series\":{\"x\":[]},\"dropped\":0}");
  free(s);
  dhist_free(h);
}

TEST(the_sample_being_written_is_not_shown) {
  struct dhist *h = dhist_new(2, 4);
  for (int i = 1; i <= 2; i++) { dhist_begin(h, i); dhist_put(h, "x", i); dhist_end(h); }
  dhist_begin(h, 3);                             /* the ring is full: a third slot is written */
  dhist_put(h, "x", 99);
  char *s = json(h, 0);
  CHECK_STR(s, "{\"t\":[1,2],\"series\":{\"x\":[1,2]},\"dropped\":0}");
  free(s);
  CHECK(dhist_last(h, "x") == 2);
  dhist_end(h);
  CHECK(dhist_last(h, "x") == 99);
  dhist_free(h);
}

TEST(series_budget_and_long_names) {
  struct dhist *h = dhist_new(4, 2);
  char longname[400];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  dhist_begin(h, 1);
  dhist_put(h, "a", 1);
  dhist_put(h, longname, 2);
  dhist_put(h, "c", 3);                          /* a third name: over the budget */
  dhist_count(h, "d", 3);
  dhist_end(h);
  char *s = json(h, 0);
  CHECK_CONTAINS(s, "\"dropped\":2");
  CHECK(!strstr(s, "\"c\""));
  char cut[DH_NAME_MAX + 3];
  snprintf(cut, sizeof cut, "\"%.*s\"", DH_NAME_MAX, longname);
  CHECK_CONTAINS(s, cut);                        /* stored under its first DH_NAME_MAX bytes */
  free(s);
  CHECK(dhist_last(h, longname) == 2);           /* and found again by the whole name */
  dhist_free(h);
}

TEST(json_escapes_names) {
  struct dhist *h = dhist_new(2, 2);
  dhist_begin(h, 1);
  dhist_put(h, "rps|app:gw|/a\"b", 1.5);
  dhist_put(h, "inf", INFINITY);
  dhist_end(h);
  char *s = json(h, 0);
  CHECK_STR(s, "{\"t\":[1],\"series\":{\"rps|app:gw|/a\\\"b\":[1.5],\"inf\":[null]},\"dropped\":0}");
  free(s);
  dhist_free(h);
}

int main(void) {
  RUN(gauges_counters_and_nulls);
  RUN(ring_keeps_the_newest_in_order);
  RUN(the_sample_being_written_is_not_shown);
  RUN(series_budget_and_long_names);
  RUN(json_escapes_names);
  return T_DONE();
}
