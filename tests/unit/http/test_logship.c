/* Unit tests for http/logship.c without a server: the row JSON (escaping, DateTime + ms,
** fields, pid/entry), the CREATE TABLE text, and the ring: full drops and counts, the flush
** at stop gives up within its bound (ClickHouse unreachable). */
#include "t.h"
#include "http/logship.h"
#include "base/util.h"

#include <stdio.h>

TEST(row_json) {
  struct buf b;
  buf_init(&b);
  struct log_record r = {LOG_WARN, 1764658047123456789LL, "a \"quoted\"\nline\\\x01", "{\"k\":1}", "{app:p|0x2}", "app:w"};
  logship_row(&b, &r, "box-1");
  CHECK_STR(b.data, "{\"ts\":1764658047,\"ms\":123,\"level\":\"WARN\",\"message\":\"a \\\"quoted\\\"\\nline\\\\\\u0001\","
                    "\"fields\":\"{\\\"k\\\":1}\",\"host\":\"box-1\",\"pid\":\"{app:p|0x2}\",\"entry\":\"app:w\"}");
  buf_reset(&b);
  struct log_record host = {LOG_INFO, 5 * NS_PER_S + 999 * NS_PER_MS, "up", NULL, NULL, NULL};
  logship_row(&b, &host, "h");
  CHECK_STR(b.data, "{\"ts\":5,\"ms\":999,\"level\":\"INFO\",\"message\":\"up\",\"fields\":\"{}\",\"host\":\"h\","
                    "\"pid\":\"\",\"entry\":\"\"}");
  buf_free(&b);
}

TEST(create_sql) {
  char *s = logship_create_sql("logs", "t1");
  CHECK_CONTAINS(s, "CREATE TABLE IF NOT EXISTS logs.t1 (ts DateTime, ms UInt16, level String, message String, "
                    "fields String, host String, pid String, entry String) ENGINE = MergeTree ORDER BY ts");
  free(s);
  s = logship_create_sql(NULL, "taskhost_logs");
  CHECK_CONTAINS(s, "EXISTS taskhost_logs (");
  free(s);
}

TEST(full_ring_drops_and_counts) {
  /* port 1 on loopback refuses at once: every try fails, rows stay in the ring */
  struct logship_opts o = {.url = "http://127.0.0.1:1", .batch_size = 100, .batch_interval = 10 * NS_PER_MS,
                           .connection_attempts = 1, .try_connection_period = 10 * NS_PER_MS,
                           .buffer = 3, .level = LOG_INFO, .flush_timeout = 100 * NS_PER_MS};
  char err[256];
  log_init(LOG_DEBUG, 0);
  struct logship *ls = logship_start(&o, err, sizeof err);
  CHECK(ls != NULL);
  if (!ls) return;
  for (int i = 0; i < 10; i++) log_write(LOG_INFO, "row", "{\"i\":1}");
  log_write(LOG_DEBUG, "below the shipper's level", NULL);
  struct logship_stats st;
  logship_stats(ls, &st);
  CHECK_INT(st.dropped, 7);
  CHECK_INT(st.buffered, 3);
  CHECK_INT(st.shipped, 0);
  int64_t t0 = clock_mono_ns();
  logship_stop(ls);                               /* gives up after flush_timeout */
  CHECK(clock_mono_ns() - t0 < 5 * NS_PER_S);
  log_init(LOG_INFO, 0);
}

TEST(bad_url) {
  struct logship_opts o = {.url = "ftp://x"};
  char err[256] = "";
  CHECK(logship_start(&o, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, "http:// or https://");
}

int main(void) {
  RUN(row_json);
  RUN(create_sql);
  RUN(full_ring_drops_and_counts);
  RUN(bad_url);
  return T_DONE();
}
