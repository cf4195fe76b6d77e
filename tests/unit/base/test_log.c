/* Unit tests for log.c's sinks: every record reaches a sink with its fields, pid and entry;
** the sink's level filters; log_local stays on stderr; the stderr line is unchanged. */
#include "t.h"
#include "base/log.h"
#include "base/util.h"

#include <stdio.h>
#include <unistd.h>

struct seen { int n; char msg[8][64], fields[8][64], pid[8][32], entry[8][32]; int level[8]; int64_t t[8]; };

static void copy(char *dst, size_t n, const char *s) { snprintf(dst, n, "%s", s ? s : "(null)"); }

static void record(void *ud, const struct log_record *r) {
  struct seen *s = ud;
  if (s->n >= 8) return;
  copy(s->msg[s->n], sizeof s->msg[0], r->msg);
  copy(s->fields[s->n], sizeof s->fields[0], r->fields_json);
  copy(s->pid[s->n], sizeof s->pid[0], r->pid);
  copy(s->entry[s->n], sizeof s->entry[0], r->entry);
  s->level[s->n] = (int)r->level;
  s->t[s->n] = r->time_ns;
  s->n++;
}

/* Runs fn with stderr sent to a temp file; returns what was written (static buffer). */
static const char *capture_stderr(void (*fn)(void)) {
  static char out[4096];
  FILE *tmp = tmpfile();
  int saved = dup(STDERR_FILENO);
  dup2(fileno(tmp), STDERR_FILENO);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
  rewind(tmp);
  size_t n = fread(out, 1, sizeof out - 1, tmp);
  out[n] = '\0';
  fclose(tmp);
  return out;
}

static void write_three(void) {
  log_write_from(LOG_INFO, "hello", "{\"k\":1,\"pid\":\"{a|0x1}\"}", "{a|0x1}", "app:w");
  log_write(LOG_WARN, "plain", NULL);
  log_local(LOG_ERROR, "local %d", 7);
  log_write(LOG_DEBUG, "below the host level", NULL);
}

TEST(sink_gets_every_record) {
  struct seen s = {0};
  log_init(LOG_INFO, 0);
  CHECK_INT(log_add_sink(record, &s, LOG_DEBUG), 0);
  int64_t before = clock_wall_ns();
  const char *err = capture_stderr(write_three);
  log_remove_sink(record, &s);
  CHECK_INT(s.n, 2);                              /* log_local and the DEBUG line are not offered */
  CHECK_STR(s.msg[0], "hello");
  CHECK_STR(s.fields[0], "{\"k\":1,\"pid\":\"{a|0x1}\"}");
  CHECK_STR(s.pid[0], "{a|0x1}");
  CHECK_STR(s.entry[0], "app:w");
  CHECK_INT(s.level[0], LOG_INFO);
  CHECK(s.t[0] >= before && s.t[0] <= clock_wall_ns());
  CHECK_STR(s.msg[1], "plain");
  CHECK_STR(s.fields[1], "(null)");
  CHECK_STR(s.pid[1], "(null)");
  CHECK_INT(s.level[1], LOG_WARN);
  /* stderr is as before sinks: three lines, console format */
  CHECK_CONTAINS(err, "Z INFO  hello {\"k\":1,\"pid\":\"{a|0x1}\"}\n");
  CHECK_CONTAINS(err, "Z WARN  plain\n");
  CHECK_CONTAINS(err, "Z ERROR local 7\n");
  CHECK(!strstr(err, "below the host level"));
  int lines = 0;
  for (const char *p = err; *p; p++) lines += *p == '\n';
  CHECK_INT(lines, 3);
  /* removed: no more calls */
  log_write(LOG_ERROR, "after", NULL);
  CHECK_INT(s.n, 2);
}

TEST(sink_level_and_json_format) {
  struct seen s = {0};
  log_init(LOG_DEBUG, 1);
  CHECK_INT(log_add_sink(record, &s, LOG_WARN), 0);
  const char *err = capture_stderr(write_three);
  log_remove_sink(record, &s);
  CHECK_INT(s.n, 1);
  CHECK_STR(s.msg[0], "plain");
  CHECK_CONTAINS(err, "\"level\":\"INFO\",\"msg\":\"hello\",\"k\":1,\"pid\":\"{a|0x1}\"}\n");
  CHECK_CONTAINS(err, "\"level\":\"DEBUG\",\"msg\":\"below the host level\"}\n");
  log_init(LOG_INFO, 0);
}

TEST(sink_slots_are_bounded) {
  struct seen s[LOG_MAX_SINKS + 1];
  for (int i = 0; i < LOG_MAX_SINKS; i++) CHECK_INT(log_add_sink(record, &s[i], LOG_DEBUG), 0);
  CHECK_INT(log_add_sink(record, &s[LOG_MAX_SINKS], LOG_DEBUG), -1);
  for (int i = 0; i < LOG_MAX_SINKS; i++) log_remove_sink(record, &s[i]);
  CHECK_INT(log_add_sink(record, &s[0], LOG_DEBUG), 0);
  log_remove_sink(record, &s[0]);
}

int main(void) {
  RUN(sink_gets_every_record);
  RUN(sink_level_and_json_format);
  RUN(sink_slots_are_bounded);
  return T_DONE();
}
