/*
** logship.h — ships the host's log records to ClickHouse over its HTTP interface
** (taskhost.yaml log.clickhouse; README "taskhost.yaml"). A log sink (base/log.h) turns each
** record into one JSONEachRow row and puts it in a bounded ring; a shipper thread sends
** batches (`INSERT INTO db.table FORMAT JSONEachRow`) of batch_size rows or every
** batch_interval, creates the table if missing, keeps a failed batch and retries it with
** backoff, and flushes what is left on logship_stop within a bounded wait.
** Threads: logship_start/stop on the main thread; the sink on any logging thread (copies
** the row under the ring's lock, never waits: a full ring drops and counts); the curl easy
** handle lives on the shipper thread only.
*/
#ifndef TASKHOST_LOGSHIP_H
#define TASKHOST_LOGSHIP_H

#include <stddef.h>
#include <stdint.h>
#include "base/log.h"
#include "base/util.h"

struct logship_opts {
  const char *url;              /* the HTTP interface, "http://127.0.0.1:8123" */
  const char *database;         /* NULL = the server's default */
  const char *table;            /* NULL = "taskhost_logs" */
  const char *user, *password;  /* NULL = none; sent as X-ClickHouse-User / -Key, never logged */
  long batch_size;              /* rows per INSERT (0 = 1000) */
  int64_t batch_interval;       /* ns: a partial batch is sent after this (0 = 1 s) */
  long connection_attempts;     /* start-up tries before the host starts anyway (0 = 3) */
  int64_t try_connection_period;/* ns between tries; the retry backoff starts here (0 = 1 s) */
  long buffer;                  /* rows the ring holds while ClickHouse is away (0 = 100000) */
  uint64_t buffer_bytes;        /* bytes those rows may take (0 = 64 MiB) */
  enum log_level level;         /* records below it are not shipped */
  int64_t flush_timeout;        /* ns logship_stop waits for the last rows (0 = 5 s) */
};

struct logship_stats { uint64_t shipped, dropped, failures, buffered; };

struct logship;

/* Starts the shipper: up to connection_attempts tries of CREATE TABLE IF NOT EXISTS (the
** host waits for them), then the thread and the sink. When every try failed the host
** starts anyway (a warning on stderr) and the records are buffered until ClickHouse
** answers. NULL with err only on a bad URL or when the thread cannot start. */
struct logship *logship_start(const struct logship_opts *o, char *err, size_t errlen);
/* Removes the sink, sends what is buffered (bounded by flush_timeout), stops the thread,
** logs one stderr line with the totals. NULL is ignored. */
void logship_stop(struct logship *ls);
void logship_stats(struct logship *ls, struct logship_stats *st);

/* One row of the table as a JSONEachRow line (no newline) appended to out:
** {"ts":<epoch s>,"ms":<0-999>,"level":"INFO","message":"…","fields":"<fields JSON text>",
**  "host":"…","pid":"…","entry":"…"}; missing fields are "{}", missing pid/entry "". */
void logship_row(struct buf *out, const struct log_record *r, const char *host);
/* The CREATE TABLE statement for table (with database. when db is set). */
char *logship_create_sql(const char *db, const char *table);

#endif
