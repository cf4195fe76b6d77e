/*
** log.h — the host's log sink: one line per record on stderr (stdout stays the terminal
** process's). Console format: `2026-01-02T03:04:05.678Z INFO  message {"k":"v"}`;
** json format: one JSON object per line.
** Thread-safety: log_write may be called from any thread; each record is one write(2).
** The sink is a process-wide singleton: log_init/log_exit are called from main.
*/
#ifndef TASKHOST_LOG_H
#define TASKHOST_LOG_H

#include <stdarg.h>

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

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_printf(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_printf(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_printf(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_printf(LOG_ERROR, __VA_ARGS__)

#endif
