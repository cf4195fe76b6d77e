/*
** log.h — the host's log sink: one line per record on stderr (stdout stays the terminal
** process's). Console format: `2026-01-02T03:04:05.678Z INFO  message {"k":"v"}`;
** json format: one JSON object per line.
** Thread-safety: log_write may be called from any thread; each record is one write(2).
** The sink is a process-wide singleton: log_init/log_exit are called from main.
** Extra sinks (log_add_sink: the ClickHouse shipper, http/logship.c) are offered every record
** after its stderr line is written, on the logging thread; a sink must copy what it keeps and
** return without waiting (its own short lock at most). The sink list is guarded by a rwlock:
** adding/removing waits for calls in progress, so after log_remove_sink returns the sink's
** ud is no longer used.
*/
#ifndef TASKHOST_LOG_H
#define TASKHOST_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_init(enum log_level min, int json);
void log_exit(void);
void log_set_level(enum log_level min);
int log_enabled(enum log_level lv);
int log_level_parse(const char *s, enum log_level *out);   /* 0 / -1 */

/* `fields_json` is a JSON object text ("{...}") or NULL. */
void log_write(enum log_level lv, const char *msg, const char *fields_json);
void log_printf(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An INFO record written whatever the level: shutdown summaries (requests served …). */
void log_summary(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* What a sink is offered. Strings are valid only during the call. */
struct log_record {
  enum log_level level;
  int64_t time_ns;            /* wall clock, ns since the epoch (the stderr line's timestamp) */
  const char *msg;
  const char *fields_json;    /* a JSON object text, or NULL */
  const char *pid;            /* the logging process ("{app:processes|0x00004}") or NULL */
  const char *entry;          /* its entry id ("app:worker") or NULL */
};
typedef void (*log_sink_fn)(void *ud, const struct log_record *r);
#define LOG_MAX_SINKS 4
/* Offers records of level >= min to fn(ud, r). 0, or -1 when LOG_MAX_SINKS are set. */
int log_add_sink(log_sink_fn fn, void *ud, enum log_level min);
/* Removes the sink (fn, ud); waits for calls to it in progress. */
void log_remove_sink(log_sink_fn fn, void *ud);
/* log_write with the logging process's pid and entry id (either may be NULL) for sinks. */
void log_write_from(enum log_level lv, const char *msg, const char *fields_json, const char *pid,
                    const char *entry);
/* A record for stderr only, never offered to sinks: what a sink logs about itself. */
void log_local(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_printf(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_printf(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_printf(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_printf(LOG_ERROR, __VA_ARGS__)

#endif
