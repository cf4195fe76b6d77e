/*
** jobq_view.c — reading a job queue (jobq.h): a job's record, its result, pages of jobs and
** the counters behind /metrics. Everything is read under the queue's lock; only committed
** states are shown (pub_state).
** Threads: any.
*/
#include "jobq_impl.h"
#include "value/json.h"
#include "pgq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A due scheduled/retrying job is waiting for a worker: shown as queued. */
static int shown_state(const struct job *j, int64_t now) {
  int s = j->pub_state;
  if ((s == JS_SCHEDULED || s == JS_RETRYING) && j->state == s && j->run_at <= now) return JS_QUEUED;
  return s;
}

void jobq_put_time(struct buf *b, const char *key, int64_t ms) {
  if (!ms) { buf_printf(b, ",\"%s\":null", key); return; }
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  buf_printf(b, ",\"%s\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", key, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}


static void put_info(const struct jobq *q, const struct job *j, int state, struct buf *b) {
  buf_adds(b, "{\"id\":");
  json_put_string(b, j->id, strlen(j->id));
  buf_adds(b, ",\"queue\":");
  json_put_string(b, q->name, strlen(q->name));
  buf_printf(b, ",\"state\":\"%s\",\"attempt\":%d,\"max_retries\":%d,\"priority\":%d",
             job_state_name(state), j->attempt, j->max_retries, j->priority);
  jobq_put_time(b, "created_at", j->created_at);
  jobq_put_time(b, "run_at", j->run_at);
  jobq_put_time(b, "started_at", j->started_at);
  jobq_put_time(b, "finished_at", state == j->state ? j->finished_at : 0);
  if (j->headers) buf_printf(b, ",\"headers\":%s", j->headers);
  buf_printf(b, ",\"progress\":%s", j->progress ? j->progress : "null");
  buf_printf(b, ",\"result\":%s", state == JS_DONE && j->result ? j->result : "null");
  buf_printf(b, ",\"errors\":%s}", j->errors.len ? j->errors.data : "[]");
}

int jobq_job_info(struct jobq *q, const char *id, struct buf *out) {
  if (q->pg) return pgq_job_info(q->pg, id, out);
  pthread_mutex_lock(&q->lock);
  struct job *j = jobq_find(q, id);
  int s = j ? shown_state(j, jobq_now_ms()) : -1;
  if (s >= 0) put_info(q, j, s, out);
  pthread_mutex_unlock(&q->lock);
  return s;
}

/* The "error" of the last history item, as a JSON string, into out. Items are written by
** add_error as {"attempt":N,"at":N,"error":"..."}; inside a JSON string every '"' is
** escaped, so the last `{"attempt":` is the start of the last item. */
static void put_last_error(const struct job *j, struct buf *out) {
  const char *item = NULL, *p = j->errors.len ? j->errors.data : "";
  while ((p = strstr(p, "{\"attempt\":"))) item = p++;
  const char *m = item ? strstr(item, ",\"error\":") : NULL;
  if (!m) { buf_adds(out, "null"); return; }
  m += 9;
  const char *end = m + 1;
  while (*end && *end != '"') end += *end == '\\' ? 2 : 1;
  buf_add(out, m, (size_t)(end + 1 - m));
}

int jobq_job_result(struct jobq *q, const char *id, struct buf *out) {
  if (q->pg) return pgq_job_result(q->pg, id, out);
  pthread_mutex_lock(&q->lock);
  struct job *j = jobq_find(q, id);
  int s = j ? shown_state(j, jobq_now_ms()) : -1;
  if (s == JS_DONE) buf_adds(out, j->result ? j->result : "null");
  else if (s == JS_FAILED || s == JS_CANCELLED) put_last_error(j, out);
  pthread_mutex_unlock(&q->lock);
  return s;
}

void jobq_list(struct jobq *q, int state, int64_t after, size_t limit, struct buf *out,
               int64_t *next) {
  if (q->pg) { pgq_list(q->pg, state, after, limit, out, next); return; }
  pthread_mutex_lock(&q->lock);
  int64_t now = jobq_now_ms();
  size_t lo = 0, hi = q->nall, n = 0;
  while (lo < hi) {                              /* first job with seq > after */
    size_t mid = (lo + hi) / 2;
    if (q->all[mid]->seq <= after) lo = mid + 1;
    else hi = mid;
  }
  *next = 0;
  buf_addc(out, '[');
  for (size_t i = lo; i < q->nall; i++) {
    struct job *j = q->all[i];
    int s = shown_state(j, now);
    if (s < 0 || (state >= 0 && s != state)) continue;
    if (n == limit) { *next = n ? q->all[i - 1]->seq : 0; break; }
    if (n++) buf_addc(out, ',');
    put_info(q, j, s, out);
  }
  buf_addc(out, ']');
  pthread_mutex_unlock(&q->lock);
}

int jobq_cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

void waitlog_add(struct waitlog *w, struct jobq_stats *st, int64_t ns) {
  if (ns < 0) ns = 0;
  double s = (double)ns / 1e9;
  int b = 0;
  while (b < HIST_BUCKETS - 1 && s > jobq_hist_bound(b)) b++;
  st->wait_hist[b]++;
  st->wait_ns_total += (uint64_t)ns;
  st->wait_count++;
  if (!w->v) w->v = xmalloc(WAIT_SAMPLES * sizeof *w->v);
  w->v[w->pos] = ns;
  w->pos = (w->pos + 1) % WAIT_SAMPLES;
  if (w->n < WAIT_SAMPLES) w->n++;
}

void waitlog_percentiles(const struct waitlog *w, struct jobq_stats *st) {
  st->wait_p50_ns = st->wait_p99_ns = 0;
  if (!w->n) return;
  int64_t *v = xmalloc(w->n * sizeof *v);
  memcpy(v, w->v, w->n * sizeof *v);
  qsort(v, w->n, sizeof *v, jobq_cmp_i64);
  st->wait_p50_ns = v[w->n / 2];
  st->wait_p99_ns = v[w->n * 99 / 100];
  free(v);
}

void waitlog_free(struct waitlog *w) {
  free(w->v);
  *w = (struct waitlog){0};
}

void jobq_stats(struct jobq *q, struct jobq_stats *out) {
  if (q->pg) { pgq_stats(q->pg, out); return; }
  pthread_mutex_lock(&q->lock);
  *out = q->st;
  out->live_bytes = q->live_bytes;
  waitlog_percentiles(&q->waits, out);
  memset(out->by_state, 0, sizeof out->by_state);
  int64_t now = jobq_now_ms();
  for (size_t i = 0; i < q->nall; i++) {
    int s = shown_state(q->all[i], now);
    if (s >= 0) out->by_state[s]++;
  }
  pthread_mutex_unlock(&q->lock);
}
