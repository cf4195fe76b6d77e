/*
** logship.c — see logship.h.
** Threads: the sink runs on every logging thread and only touches the ring (under `lock`,
** O(1), never waits); the shipper thread owns the curl handle, the batch and table_ok;
** logship_start/stop run on the main thread. Counters are atomics (read by the metrics
** collector on the admin listener's threads).
** Invariant: a row is counted exactly once: shipped (its INSERT got 200), dropped (the ring
** was full, or the flush at stop ran out of time), or it is still in the ring/batch.
*/
#include "logship.h"
#include "value/json.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TABLE "taskhost_logs"

struct row { char *data; size_t len; };

struct logship {
  struct logship_opts o;        /* strings are the copies below */
  char *url, *database, *table, *user, *password;
  char host[256];
  char *insert_url, *create_url;
  struct curl_slist *headers;

  pthread_mutex_t lock;         /* guards the ring, stopping, oldest_ns */
  pthread_cond_t cv;            /* rows arrived / stop; monotonic */
  struct row *ring;
  size_t cap, head, count, bytes;
  int64_t oldest_ns;            /* mono time the oldest ring row (roughly) arrived */
  int stopping;
  int64_t stop_deadline;

  pthread_t thread;
  CURL *curl;                   /* shipper thread (and logship_start before it runs) */
  int table_ok;
  char curl_err[CURL_ERROR_SIZE];
  char answer[256];             /* the start of ClickHouse's last answer (its error text) */
  size_t answer_len;
  _Atomic uint64_t shipped, dropped, failures, buffered;
};

/* ---- rows ----------------------------------------------------------------------------- */

static void put_str(struct buf *b, const char *key, const char *s) {
  buf_printf(b, ",\"%s\":", key);
  json_put_string(b, s ? s : "", s ? strlen(s) : 0);
}

void logship_row(struct buf *out, const struct log_record *r, const char *host) {
  static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  int64_t t = r->time_ns < 0 ? 0 : r->time_ns;
  buf_printf(out, "{\"ts\":%lld,\"ms\":%d", (long long)(t / NS_PER_S), (int)(t % NS_PER_S / NS_PER_MS));
  put_str(out, "level", r->level < LOG_OFF ? names[r->level] : "INFO");
  put_str(out, "message", r->msg);
  put_str(out, "fields", r->fields_json && r->fields_json[0] ? r->fields_json : "{}");
  put_str(out, "host", host);
  put_str(out, "pid", r->pid);
  put_str(out, "entry", r->entry);
  buf_addc(out, '}');
}

char *logship_create_sql(const char *db, const char *table) {
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "CREATE TABLE IF NOT EXISTS ");
  if (db && *db) buf_printf(&b, "%s.", db);
  buf_printf(&b, "%s (ts DateTime, ms UInt16, level String, message String, fields String, "
                 "host String, pid String, entry String) ENGINE = MergeTree ORDER BY ts", table);
  return buf_steal(&b);
}

/* ---- the sink (any logging thread) ---------------------------------------------------- */

static void sink(void *ud, const struct log_record *r) {
  struct logship *ls = ud;
  struct buf b;
  buf_init(&b);
  logship_row(&b, r, ls->host);
  int kept = 0, wake = 0;
  pthread_mutex_lock(&ls->lock);
  if (ls->count < ls->cap && ls->bytes + b.len <= ls->o.buffer_bytes && !ls->stopping) {
    if (ls->count == 0) ls->oldest_ns = clock_mono_ns();
    ls->ring[(ls->head + ls->count) % ls->cap] = (struct row){b.data, b.len};
    ls->count++;
    ls->bytes += b.len;
    wake = ls->count == (size_t)ls->o.batch_size || ls->count == 1;
    atomic_fetch_add(&ls->buffered, 1);
    kept = 1;
  }
  pthread_mutex_unlock(&ls->lock);
  if (kept) {
    if (wake) pthread_cond_signal(&ls->cv);
  } else {
    atomic_fetch_add(&ls->dropped, 1);
    buf_free(&b);
  }
}

/* ---- HTTP (shipper thread) ------------------------------------------------------------ */

/* Keeps the first bytes of the answer: ClickHouse's error text for the failure line. */
static size_t keep_answer(char *p, size_t size, size_t n, void *ud) {
  struct logship *ls = ud;
  size_t room = sizeof ls->answer - 1 - ls->answer_len, take = size * n < room ? size * n : room;
  memcpy(ls->answer + ls->answer_len, p, take);
  ls->answer_len += take;
  ls->answer[ls->answer_len] = '\0';
  return size * n;
}

/* POSTs body to url; 0 when ClickHouse answered 200. timeout_ns bounds the whole call. */
static int post(struct logship *ls, const char *url, const char *body, size_t len, int64_t timeout_ns,
                long *status) {
  CURL *c = ls->curl;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, ls->headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_answer);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, ls);
  ls->answer_len = 0;
  ls->answer[0] = '\0';
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ls->curl_err);
  long ms = (long)(timeout_ns / NS_PER_MS);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms > 1 ? ms : 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms > 2000 ? 2000L : (ms > 1 ? ms : 1L));
  ls->curl_err[0] = '\0';
  *status = 0;
  if (curl_easy_perform(c) != CURLE_OK) return -1;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  return *status == 200 ? 0 : -1;
}

static int ensure_table(struct logship *ls, int64_t timeout_ns) {
  if (ls->table_ok) return 0;
  char *sql = logship_create_sql(ls->database, ls->table);
  long st;
  int rc = post(ls, ls->create_url, sql, strlen(sql), timeout_ns, &st);
  free(sql);
  if (rc == 0) ls->table_ok = 1;
  return rc;
}

/* ClickHouse answered that it cannot store these rows (HTTP 400, or one of its parse and
** type error codes, which 18.16 sends as 500): a retry cannot help. */
static int rows_refused(const struct logship *ls, long status) {
  static const int codes[] = {6, 25, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131};
  if (status == 400) return 1;
  int code;
  if (status < 400 || sscanf(ls->answer, "Code: %d", &code) != 1) return 0;
  for (size_t i = 0; i < countof(codes); i++)
    if (codes[i] == code) return 1;
  return 0;
}

static void describe_failure(struct logship *ls, long status, char *out, size_t n) {
  if (status) {
    size_t line = strcspn(ls->answer, "\r\n");
    snprintf(out, n, "HTTP status %ld: %.*s", status, (int)line, ls->answer);
  }
  else snprintf(out, n, "%s", ls->curl_err[0] ? ls->curl_err : "no answer");
}

/* ---- the shipper thread --------------------------------------------------------------- */

/* Moves up to batch_size ring rows into batch (lines). Called with lock held. */
static size_t take_batch(struct logship *ls, struct buf *batch) {
  size_t n = 0;
  while (ls->count > 0 && n < (size_t)ls->o.batch_size) {
    struct row *r = &ls->ring[ls->head];
    buf_add(batch, r->data, r->len);
    buf_addc(batch, '\n');
    ls->bytes -= r->len;
    free(r->data);
    ls->head = (ls->head + 1) % ls->cap;
    ls->count--;
    n++;
  }
  if (ls->count) ls->oldest_ns = clock_mono_ns();
  return n;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* One stderr line (never a sink: it must not feed the ring) per period with new drops. */
static void report_drops(struct logship *ls, uint64_t *reported) {
  uint64_t d = atomic_load(&ls->dropped);
  if (d == *reported) return;
  log_local(LOG_WARN, "log.clickhouse: %llu log records dropped (buffer full; %llu in total)",
            (unsigned long long)(d - *reported), (unsigned long long)d);
  *reported = d;
}

static void *ship_main(void *arg) {
  struct logship *ls = arg;
  const int64_t period = ls->o.try_connection_period;
  int64_t backoff = period, next_try = 0, next_report = clock_mono_ns() + period;
  uint64_t reported = 0;
  size_t nbatch = 0;
  int failing = 0;
  struct buf batch;
  buf_init(&batch);
  pthread_mutex_lock(&ls->lock);
  for (;;) {
    int64_t now = clock_mono_ns();
    if (now >= next_report) {
      pthread_mutex_unlock(&ls->lock);
      report_drops(ls, &reported);
      pthread_mutex_lock(&ls->lock);
      next_report = now + period;
    }
    if (ls->stopping && ((nbatch == 0 && ls->count == 0) || now >= ls->stop_deadline)) break;
    int ready = nbatch ? now >= next_try
                       : ls->count >= (size_t)ls->o.batch_size ||
                             (ls->count > 0 && (ls->stopping || now - ls->oldest_ns >= ls->o.batch_interval));
    if (!ready) {
      int64_t until = next_report;
      if (nbatch) until = min64(until, next_try);
      else if (ls->count) until = min64(until, ls->oldest_ns + ls->o.batch_interval);
      if (ls->stopping) until = min64(until, ls->stop_deadline);
      struct timespec ts = ns_timespec(until);
      pthread_cond_timedwait(&ls->cv, &ls->lock, &ts);
      continue;
    }
    if (!nbatch) nbatch = take_batch(ls, &batch);
    int64_t limit = ls->stopping ? ls->stop_deadline - now : 10 * NS_PER_S;
    pthread_mutex_unlock(&ls->lock);
    long status = 0;
    int rc = ensure_table(ls, limit);
    if (rc == 0) {
      rc = post(ls, ls->insert_url, batch.data, batch.len, limit, &status);
      if (rc != 0) ls->table_ok = 0;                     /* re-check the table next time */
    }
    if (rc != 0 && rows_refused(ls, status)) {
      /* e.g. a table made with other columns: the batch is dropped, counted and reported
      ** instead of blocking every later one. */
      char why[CURL_ERROR_SIZE + 300];
      describe_failure(ls, status, why, sizeof why);
      log_local(LOG_ERROR, "log.clickhouse: %s.%s refused %zu rows (%s); dropped",
                ls->database ? ls->database : "default", ls->table, nbatch, why);
      atomic_fetch_add(&ls->failures, 1);
      atomic_fetch_add(&ls->dropped, nbatch);
      atomic_fetch_sub(&ls->buffered, nbatch);
      reported += nbatch;                                 /* reported here, not as "buffer full" */
      nbatch = 0;
      buf_reset(&batch);
    } else if (rc == 0) {
      atomic_fetch_add(&ls->shipped, nbatch);
      atomic_fetch_sub(&ls->buffered, nbatch);
      nbatch = 0;
      buf_reset(&batch);
      backoff = period;
      if (failing) log_local(LOG_INFO, "log.clickhouse: %s answers again", ls->url);
      failing = 0;
    } else {
      atomic_fetch_add(&ls->failures, 1);
      if (!failing) {
        char why[CURL_ERROR_SIZE + 300];
        describe_failure(ls, status, why, sizeof why);
        log_local(LOG_WARN, "log.clickhouse: cannot ship to %s (%s); buffering, retrying every %lld ms or less",
                  ls->url, why, (long long)(8 * period / NS_PER_MS));
      }
      failing = 1;
      next_try = clock_mono_ns() + backoff;
      backoff = min64(backoff * 2, 8 * period);
    }
    pthread_mutex_lock(&ls->lock);
  }
  size_t left = nbatch + ls->count;                      /* out of time at stop */
  while (ls->count) take_batch(ls, &batch);
  pthread_mutex_unlock(&ls->lock);
  if (left) {
    atomic_fetch_add(&ls->dropped, left);
    atomic_fetch_sub(&ls->buffered, left);
  }
  report_drops(ls, &reported);
  buf_free(&batch);
  return NULL;
}

/* ---- start / stop --------------------------------------------------------------------- */

static char *query_url(struct logship *ls, const char *sql) {
  char *q = curl_easy_escape(ls->curl, sql, 0);
  struct buf b;
  buf_init(&b);
  buf_printf(&b, "%s%s", ls->url, strchr(ls->url, '?') ? "&" : (ls->url[strlen(ls->url) - 1] == '/' ? "?" : "/?"));
  if (ls->database) {
    char *d = curl_easy_escape(ls->curl, ls->database, 0);
    buf_printf(&b, "database=%s&", d);
    curl_free(d);
  }
  buf_printf(&b, "query=%s", q);
  curl_free(q);
  return buf_steal(&b);
}

static char *dup_or_null(const char *s) { return s && *s ? xstrdup(s) : NULL; }

static void free_ship(struct logship *ls) {
  for (size_t i = 0; i < ls->count; i++) free(ls->ring[(ls->head + i) % ls->cap].data);
  free(ls->ring);
  if (ls->curl) curl_easy_cleanup(ls->curl);
  curl_slist_free_all(ls->headers);
  free(ls->url); free(ls->database); free(ls->table); free(ls->user); free(ls->password);
  free(ls->insert_url); free(ls->create_url);
  pthread_mutex_destroy(&ls->lock);
  pthread_cond_destroy(&ls->cv);
  free(ls);
  curl_global_cleanup();                       /* pairs logship_start's curl_global_init */
}

static void set_defaults(struct logship_opts *o) {
  if (o->batch_size <= 0) o->batch_size = 1000;
  if (o->batch_interval <= 0) o->batch_interval = NS_PER_S;
  if (o->connection_attempts <= 0) o->connection_attempts = 3;
  if (o->try_connection_period <= 0) o->try_connection_period = NS_PER_S;
  if (o->buffer <= 0) o->buffer = 100000;
  if (!o->buffer_bytes) o->buffer_bytes = (uint64_t)64 << 20;
  if (o->flush_timeout <= 0) o->flush_timeout = 5 * NS_PER_S;
}

static void add_header(struct logship *ls, const char *name, const char *value) {
  struct buf h;
  buf_init(&h);
  buf_printf(&h, "%s: %s", name, value);
  ls->headers = curl_slist_append(ls->headers, h.data);
  buf_free(&h);
}

/* Start-up: up to connection_attempts tries, try_connection_period apart. */
static void first_contact(struct logship *ls) {
  long status = 0;
  for (long i = 0; i < ls->o.connection_attempts; i++) {
    if (i) {
      struct timespec ts = {(time_t)(ls->o.try_connection_period / NS_PER_S),
                            (long)(ls->o.try_connection_period % NS_PER_S)};
      nanosleep(&ts, NULL);
    }
    char *sql = logship_create_sql(ls->database, ls->table);
    int rc = post(ls, ls->create_url, sql, strlen(sql), 5 * NS_PER_S, &status);
    free(sql);
    if (rc == 0) { ls->table_ok = 1; return; }
  }
  char why[CURL_ERROR_SIZE + 300];
  describe_failure(ls, status, why, sizeof why);
  log_local(LOG_WARN, "log.clickhouse: %s not usable after %ld attempts (%s); starting anyway, "
            "records are buffered (up to %ld) until it does", ls->url, ls->o.connection_attempts, why, ls->o.buffer);
}

struct logship *logship_start(const struct logship_opts *o, char *err, size_t errlen) {
  if (!o->url || (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0)) {
    snprintf(err, errlen, "log.clickhouse.url must be an http:// or https:// URL");
    return NULL;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(err, errlen, "log.clickhouse: libcurl cannot start");
    return NULL;
  }
  struct logship *ls = xcalloc(1, sizeof *ls);
  ls->o = *o;
  set_defaults(&ls->o);
  ls->url = xstrdup(o->url);
  ls->database = dup_or_null(o->database);
  ls->table = xstrdup(o->table && *o->table ? o->table : DEFAULT_TABLE);
  ls->user = dup_or_null(o->user);
  ls->password = dup_or_null(o->password);
  ls->o.url = ls->url; ls->o.database = ls->database; ls->o.table = ls->table;
  ls->o.user = ls->user; ls->o.password = ls->password;
  if (gethostname(ls->host, sizeof ls->host - 1) != 0) snprintf(ls->host, sizeof ls->host, "unknown");
  pthread_mutex_init(&ls->lock, NULL);
  cond_init_monotonic(&ls->cv);
  ls->cap = (size_t)ls->o.buffer;
  ls->ring = xcalloc(ls->cap, sizeof *ls->ring);
  if (!(ls->curl = curl_easy_init())) {
    snprintf(err, errlen, "log.clickhouse: libcurl cannot start");
    free_ship(ls);
    return NULL;
  }
  struct buf ins;
  buf_init(&ins);
  buf_printf(&ins, "INSERT INTO %s FORMAT JSONEachRow", ls->table);
  ls->insert_url = query_url(ls, ins.data);
  buf_free(&ins);
  ls->create_url = query_url(ls, "");
  ls->create_url[strlen(ls->create_url) - strlen("query=")] = '\0';   /* the SQL is the body */
  add_header(ls, "Content-Type", "text/plain");
  if (ls->user) add_header(ls, "X-ClickHouse-User", ls->user);
  if (ls->password) add_header(ls, "X-ClickHouse-Key", ls->password);
  add_header(ls, "Expect", "");
  first_contact(ls);
  if (pthread_create(&ls->thread, NULL, ship_main, ls) != 0) {
    snprintf(err, errlen, "log.clickhouse: cannot start its thread");
    free_ship(ls);
    return NULL;
  }
  if (log_add_sink(sink, ls, ls->o.level) != 0) {
    snprintf(err, errlen, "log.clickhouse: too many log sinks");
    logship_stop(ls);
    return NULL;
  }
  return ls;
}

void logship_stop(struct logship *ls) {
  if (!ls) return;
  log_remove_sink(sink, ls);                   /* after this no thread calls sink(ls) */
  pthread_mutex_lock(&ls->lock);
  ls->stopping = 1;
  ls->stop_deadline = clock_mono_ns() + ls->o.flush_timeout;
  pthread_cond_signal(&ls->cv);
  pthread_mutex_unlock(&ls->lock);
  pthread_join(ls->thread, NULL);
  log_local(LOG_INFO, "log.clickhouse: %llu records shipped, %llu dropped, %llu failed requests",
            (unsigned long long)atomic_load(&ls->shipped), (unsigned long long)atomic_load(&ls->dropped),
            (unsigned long long)atomic_load(&ls->failures));
  free_ship(ls);
}

void logship_stats(struct logship *ls, struct logship_stats *st) {
  st->shipped = atomic_load(&ls->shipped);
  st->dropped = atomic_load(&ls->dropped);
  st->failures = atomic_load(&ls->failures);
  st->buffered = atomic_load(&ls->buffered);
}
