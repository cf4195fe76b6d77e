/*
** log.c — see log.h. The level is an atomic so it can change while workers log. The sink
** list is written by the main thread (add/remove, under the write lock) and read by every
** logging thread (under the read lock).
*/
#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = LOG_INFO;
static int json_format;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static struct { log_sink_fn fn; void *ud; int min; } sinks[LOG_MAX_SINKS];
static _Atomic int nsinks;          /* a hint read without the lock: 0 = no sink, skip */
static pthread_rwlock_t sinks_lock = PTHREAD_RWLOCK_INITIALIZER;

int log_add_sink(log_sink_fn fn, void *ud, enum log_level min) {
  pthread_rwlock_wrlock(&sinks_lock);
  int n = atomic_load(&nsinks), rc = -1;
  if (n < LOG_MAX_SINKS) {
    sinks[n].fn = fn;
    sinks[n].ud = ud;
    sinks[n].min = (int)min;
    atomic_store(&nsinks, n + 1);
    rc = 0;
  }
  pthread_rwlock_unlock(&sinks_lock);
  return rc;
}

void log_remove_sink(log_sink_fn fn, void *ud) {
  pthread_rwlock_wrlock(&sinks_lock);
  int n = atomic_load(&nsinks);
  for (int i = 0; i < n; i++) {
    if (sinks[i].fn != fn || sinks[i].ud != ud) continue;
    memmove(&sinks[i], &sinks[i + 1], (size_t)(n - i - 1) * sizeof sinks[0]);
    atomic_store(&nsinks, --n);
    break;
  }
  pthread_rwlock_unlock(&sinks_lock);
}

static void offer_sinks(const struct log_record *r) {
  if (atomic_load_explicit(&nsinks, memory_order_relaxed) == 0) return;
  pthread_rwlock_rdlock(&sinks_lock);
  int n = atomic_load(&nsinks);
  for (int i = 0; i < n; i++)
    if ((int)r->level >= sinks[i].min) sinks[i].fn(sinks[i].ud, r);
  pthread_rwlock_unlock(&sinks_lock);
}

void log_init(enum log_level min, int json) {
  atomic_store(&min_level, (int)min);
  json_format = json;
}

void log_exit(void) { fflush(stderr); }

void log_set_level(enum log_level min) { atomic_store(&min_level, (int)min); }

int log_enabled(enum log_level lv) { return (int)lv >= atomic_load_explicit(&min_level, memory_order_relaxed); }

int log_level_parse(const char *s, enum log_level *out) {
  static const struct { const char *name; enum log_level lv; } names[] = {
    {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN}, {"warning", LOG_WARN},
    {"error", LOG_ERROR}, {"off", LOG_OFF}, {"none", LOG_OFF},
  };
  for (size_t i = 0; i < countof(names); i++)
    if (strcasecmp(s, names[i].name) == 0) { *out = names[i].lv; return 0; }
  return -1;
}

static void add_timestamp(struct buf *b, int64_t now) {
  time_t sec = (time_t)(now / NS_PER_S);
  struct tm tm;
  gmtime_r(&sec, &tm);
  char ts[40];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  buf_printf(b, "%s.%03dZ", ts, (int)((now % NS_PER_S) / NS_PER_MS));
}

static void add_json_string(struct buf *b, const char *s) {
  buf_addc(b, '"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { buf_addc(b, '\\'); buf_addc(b, (char)c); }
    else if (c == '\n') buf_adds(b, "\\n");
    else if (c == '\t') buf_adds(b, "\\t");
    else if (c < 0x20) buf_printf(b, "\\u%04x", c);
    else buf_addc(b, (char)c);
  }
  buf_addc(b, '"');
}

/* The console format's message: control characters (newline, CR, ESC, ...) are written as
** escapes (\n, \r, \t, \xHH), so a message a script controls can neither start a forged
** record on a new line nor drive the terminal. The fields are JSON, escaped already. */
static void add_console_text(struct buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (const char *run = s;; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c != 0x7f) continue;
    buf_add(b, run, (size_t)(s - run));
    if (c == 0) return;
    run = s + 1;
    buf_addc(b, '\\');
    if (c == '\n') buf_addc(b, 'n');
    else if (c == '\r') buf_addc(b, 'r');
    else if (c == '\t') buf_addc(b, 't');
    else { buf_addc(b, 'x'); buf_addc(b, hex[c >> 4]); buf_addc(b, hex[c & 15]); }
  }
}

static int64_t write_record(enum log_level lv, const char *msg, const char *fields_json);

void log_write_from(enum log_level lv, const char *msg, const char *fields_json, const char *pid,
                    const char *entry) {
  if (!log_enabled(lv) || lv >= LOG_OFF) return;
  struct log_record r = {lv, write_record(lv, msg, fields_json), msg, fields_json, pid, entry};
  offer_sinks(&r);
}

void log_write(enum log_level lv, const char *msg, const char *fields_json) {
  log_write_from(lv, msg, fields_json, NULL, NULL);
}

void log_local(enum log_level lv, const char *fmt, ...) {
  if (!log_enabled(lv) || lv >= LOG_OFF) return;
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  write_record(lv, msg, NULL);
  free(msg);
}

void log_summary(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  struct log_record r = {LOG_INFO, write_record(LOG_INFO, msg, NULL), msg, NULL, NULL, NULL};
  offer_sinks(&r);
  free(msg);
}

/* Writes the stderr line; returns the record's time. */
static int64_t write_record(enum log_level lv, const char *msg, const char *fields_json) {
  int64_t now = clock_wall_ns();
  struct buf b;
  buf_init(&b);
  buf_reserve(&b, 128);
  if (json_format) {
    buf_adds(&b, "{\"ts\":\"");
    add_timestamp(&b, now);
    buf_printf(&b, "\",\"level\":\"%s\",\"msg\":", level_names[lv]);
    add_json_string(&b, msg);
    if (fields_json && fields_json[0] == '{' && fields_json[1] != '}') {
      buf_addc(&b, ',');
      buf_adds(&b, fields_json + 1);          /* splice the object's members */
    } else {
      buf_addc(&b, '}');
    }
  } else {
    add_timestamp(&b, now);
    buf_printf(&b, " %-5s ", level_names[lv]);
    add_console_text(&b, msg);
    if (fields_json && strcmp(fields_json, "{}") != 0 && strcmp(fields_json, "[]") != 0) {
      buf_addc(&b, ' ');
      buf_adds(&b, fields_json);
    }
  }
  buf_addc(&b, '\n');
  ssize_t off = 0;
  while ((size_t)off < b.len) {
    ssize_t n = write(STDERR_FILENO, b.data + off, b.len - (size_t)off);
    if (n <= 0) break;
    off += n;
  }
  buf_free(&b);
  return now;
}

void log_printf(enum log_level lv, const char *fmt, ...) {
  if (!log_enabled(lv)) return;
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  log_write(lv, msg, NULL);
  free(msg);
}
