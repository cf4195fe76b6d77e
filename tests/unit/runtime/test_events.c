/*
** Unit tests for the event bus core (host/runtime/events.c) without processes: budgets of
** subscribe and send, the message body's round trip and its malformed forms, subscription
** topics, and a subscription whose process is gone being taken off the bus by the next send.
** Delivery, order and drops between real processes are in tests/e2e/test_events.py.
*/
#include "runtime/events.h"
#include "runtime/msg.h"
#include "runtime/rt.h"
#include "t.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

static char *rep(char c, size_t n) {
  char *s = xmalloc(n + 1);
  memset(s, c, n);
  s[n] = 0;
  return s;
}

TEST(subscribe_budgets) {
  struct rt *rt = rt_new(".");
  struct evbus *b = evbus_new(rt);
  char err[160] = "";
  char *long_name = rep('s', EV_NAME_MAX + 1);
  CHECK(evbus_subscribe(b, 1, "", NULL, 4, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, "system pattern must be 1 to 128 bytes");
  CHECK(evbus_subscribe(b, 1, long_name, NULL, 4, err, sizeof err) == NULL);
  CHECK(evbus_subscribe(b, 1, "x", long_name, 4, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, "kind");
  CHECK(evbus_subscribe(b, 1, "x", NULL, 0, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, "buffer must be 1 to 65536");
  CHECK(evbus_subscribe(b, 1, "x", NULL, EV_CAP_MAX + 1, err, sizeof err) == NULL);
  CHECK(!evbus_active(b));
  struct evsub *s = evbus_subscribe(b, 1, "orders.*", "created", EV_CAP_MAX, err, sizeof err);
  CHECK(s != NULL);
  CHECK(evbus_active(b));
  CHECK(evsub_id(s) > 0);
  evsub_close(b, s);
  CHECK(!evbus_active(b));
  evsub_close(b, s);                         /* twice: nothing more to drop */
  evsub_unref(s);
  free(long_name);
  evbus_free(b);
  rt_free(rt);
}

TEST(send_budgets) {
  struct rt *rt = rt_new(".");
  struct evbus *b = evbus_new(rt);
  char err[160] = "";
  char *long_name = rep('k', EV_NAME_MAX + 1), *long_path = rep('p', EV_PATH_MAX + 1);
  CHECK_INT(evbus_send(b, 0, NULL, "", "k", "/", EV_DATA_NONE, NULL, 0, err, sizeof err), -1);
  CHECK_INT(evbus_send(b, 0, NULL, "s", long_name, "/", EV_DATA_NONE, NULL, 0, err, sizeof err), -1);
  CHECK_INT(evbus_send(b, 0, NULL, "s", "k", long_path, EV_DATA_NONE, NULL, 0, err, sizeof err), -1);
  CHECK_CONTAINS(err, "path must be at most 1024 bytes");
  CHECK_INT(evbus_send(b, 0, NULL, "s", "k", "/", EV_DATA_SERI, "x", EV_DATA_MAX + 1, err, sizeof err), -1);
  CHECK_CONTAINS(err, "data must be at most");
  CHECK_INT(evbus_send(b, 0, NULL, "s", "k", "/", EV_DATA_JSON, "{}", 2, err, sizeof err), 0);
  struct evbus_stats st;
  evbus_stats(b, &st);
  CHECK_INT(st.sent, 1);
  CHECK_INT(st.delivered, 0);
  free(long_name);
  free(long_path);
  evbus_free(b);
  rt_free(rt);
}

/* pid 77 is no process: the post fails, the subscription is marked gone and swept. */
TEST(gone_subscriber_is_swept) {
  struct rt *rt = rt_new(".");
  struct evbus *b = evbus_new(rt);
  char err[160] = "";
  struct evsub *s = evbus_subscribe(b, 77, "a*", NULL, 2, err, sizeof err);
  struct evsub *other = evbus_subscribe(b, 78, "zzz", NULL, 2, err, sizeof err);
  CHECK_INT(evbus_send(b, 0, NULL, "abc", "k", "/", EV_DATA_NONE, NULL, 0, err, sizeof err), 0);
  struct evbus_stats st;
  evbus_stats(b, &st);
  CHECK_INT(st.subscriptions, 1);            /* "zzz" did not match: still there */
  evsub_close(b, s);                          /* already off the bus: harmless */
  evsub_unref(s);
  evsub_close(b, other);
  evsub_unref(other);
  evbus_stats(b, &st);
  CHECK_INT(st.subscriptions, 0);
  evbus_free(b);
  rt_free(rt);
}

TEST(body_round_trip_and_malformed) {
  struct buf body;
  buf_init(&body);
  evbus_format(&body, "orders.eu", "created", "/orders/7", EV_DATA_JSON, "{\"i\":7}", 7);
  struct msg *m = msg_new(MK_USER, 5, "@events:3", 9, body.data, body.len);
  struct evparts e;
  CHECK_INT(evbus_parse(m, &e), 0);
  CHECK(e.nsystem == 9 && memcmp(e.system, "orders.eu", 9) == 0);
  CHECK(e.nkind == 7 && memcmp(e.kind, "created", 7) == 0);
  CHECK(e.npath == 9 && memcmp(e.path, "/orders/7", 9) == 0);
  CHECK_INT(e.enc, EV_DATA_JSON);
  CHECK(e.len == 7 && memcmp(e.data, "{\"i\":7}", 7) == 0);
  msg_free(m);
  for (size_t cut = 0; cut < body.len - 7; cut++) {  /* any cut into the names is refused */
    m = msg_new(MK_USER, 5, "@events:3", 9, body.data, cut);
    CHECK_INT(evbus_parse(m, &e), -1);
    msg_free(m);
  }
  body.data[0] = 9;                            /* an unknown data encoding */
  m = msg_new(MK_USER, 5, "@events:3", 9, body.data, body.len);
  CHECK_INT(evbus_parse(m, &e), -1);
  msg_free(m);
  buf_free(&body);
}

TEST(topics) {
  CHECK_INT(evbus_topic_sub("@events:42"), 42);
  CHECK_INT(evbus_topic_sub("@events:"), 0);
  CHECK_INT(evbus_topic_sub("@events:4x"), 0);
  CHECK_INT(evbus_topic_sub("events:4"), 0);
  CHECK_INT(evbus_topic_sub("@event:4"), 0);
}

int main(void) {
  RUN(subscribe_budgets);
  RUN(send_budgets);
  RUN(gone_subscriber_is_swept);
  RUN(body_round_trip_and_malformed);
  RUN(topics);
  return T_DONE();
}
