/*
** jobq.c — see jobq.h.
**
** Layout: jobs live in `all` (seq order, for listing) and an id hash (chained on
** str_hash); a waiting job is in exactly one heap: `ready` (priority, seq) or `delayed`
** (run_at, seq). A scheduled or retrying job whose run_at has come is moved to `ready`
** without a write; it is shown as queued from then on (shown_state).
**
** Threads: everything under q->lock. Store commits call back on the store's writer thread
** (committed()), which takes q->lock to publish the new state; jobstore_put is called with
** q->lock held (it only queues the row), so the writer must never hold its own lock while
** calling back — jobstore.c does not.
*/
#include "jobq_impl.h"
#include "jobstore.h"
#include "pgq.h"
#include "value/json.h"
#include "base/log.h"
#include "base/util.h"
#include "base/uuid.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char *const state_names[JS_COUNT] = {
  "queued", "scheduled", "running", "retrying", "done", "failed", "cancelled"};

const char *job_state_name(int s) { return s >= 0 && s < JS_COUNT ? state_names[s] : "unknown"; }

int job_state_parse(const char *name) {
  for (int i = 0; i < JS_COUNT; i++)
    if (strcmp(state_names[i], name) == 0) return i;
  return -1;
}

int64_t jobq_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t next_rand(struct jobq *q) {        /* xorshift64* */
  q->rnd ^= q->rnd >> 12;
  q->rnd ^= q->rnd << 25;
  q->rnd ^= q->rnd >> 27;
  return q->rnd * 2685821657736338717ULL;
}

static double rand01(struct jobq *q) { return (double)(next_rand(q) >> 11) / 9007199254740992.0; }

int64_t jobq_backoff_ns(const struct jobq_config *c, int retry, double r01) {
  double d = (double)c->backoff_base_ns * pow(c->backoff_factor, retry > 1 ? retry - 1 : 0);
  if (c->backoff_cap_ns > 0 && d > (double)c->backoff_cap_ns) d = (double)c->backoff_cap_ns;
  if (c->jitter == JITTER_FULL) d *= r01;
  else if (c->jitter == JITTER_EQUAL) d = d / 2 + d / 2 * r01;
  return d >= 9.2e18 ? INT64_MAX : (int64_t)d;      /* uncapped: no overflow */
}

/* Waiting job → the right heap for its run_at. */
static void enqueue(struct jobq *q, struct job *j, int64_t now) {
  j->ready_mono = clock_mono_ns() + (j->run_at > now ? (j->run_at - now) * 1000000 : 0);
  jobq_heap_push(q, j, j->run_at > now);
}

static void job_free(struct job *j) {
  free(j->id);
  free(j->idem_key);
  free(j->data);
  free(j->result);
  free(j->progress);
  free(j->headers);
  buf_free(&j->errors);
  free(j);
}

/* Finished jobs past retention leave memory and the store. Runs when a job finishes. */
static void prune(struct jobq *q, int64_t now) {
  if (!q->cfg.retention_ns || now - q->last_prune < 1000) return;     /* at most once a second */
  q->last_prune = now;
  int64_t cutoff = now - q->cfg.retention_ns / 1000000;
  size_t k = 0;
  for (size_t i = 0; i < q->nall; i++) {
    struct job *j = q->all[i];
    if (job_state_final(j->state) && !j->inflight && !j->claimed && j->finished_at &&
        j->finished_at < cutoff) {
      jobq_index_del(q, j);
      if (q->store) jobstore_delete(q->store, j->seq);
      job_free(j);
    } else {
      q->all[k++] = j;
    }
  }
  q->nall = k;
}

/* ---- lifecycle -------------------------------------------------------------------- */

struct jobq *jobq_new(const struct jobq_config *cfg, struct jobstore *store) {
  struct jobq *q = xcalloc(1, sizeof *q);
  q->cfg = *cfg;
  q->name = xstrdup(cfg->name);
  q->cfg.name = q->name;
  q->store = store;
  q->next_seq = 1;
  pthread_mutex_init(&q->lock, NULL);
  cond_init_monotonic(&q->cv);
  jobq_index_grow(q);
  if (getrandom(&q->rnd, sizeof q->rnd, 0) != sizeof q->rnd || !q->rnd)
    q->rnd = (uint64_t)clock_mono_ns() | 1;
  if (store) jobstore_on_event(store, jobq_store_event, q);
  return q;
}

struct jobq *jobq_new_pg(const struct jobq_config *cfg, struct pgq *pg) {
  struct jobq *q = jobq_new(cfg, NULL);
  q->pg = pg;
  return q;
}

void jobq_free(struct jobq *q) {
  if (!q) return;
  pgq_free(q->pg);
  for (size_t i = 0; i < q->nall; i++) job_free(q->all[i]);
  free(q->all);
  free(q->buckets);
  free(q->ready.v);
  free(q->delayed.v);
  waitlog_free(&q->waits);
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->cv);
  free(q->name);
  free(q);
}

const char *jobq_name(const struct jobq *q) { return q->name; }

static void add_error(struct job *j, int64_t at, const char *msg, size_t len);

/* A job becomes live (unfinished) or stops being live: counts and bytes held (q->lock held). */
static void live_add(struct jobq *q, const struct job *j) {
  q->live++;
  q->live_bytes += j->data_len;
}

static void live_drop(struct jobq *q, const struct job *j) {
  q->live--;
  q->live_bytes -= j->data_len;
}

void jobq_restore(struct jobq *q, const struct job_row *r) {
  int64_t now0 = jobq_now_ms();
  if (r->state >= JS_DONE && q->cfg.retention_ns && r->finished_at &&
      r->finished_at < now0 - q->cfg.retention_ns / 1000000) {       /* past retention */
    pthread_mutex_lock(&q->lock);
    if (r->seq >= q->next_seq) q->next_seq = r->seq + 1;
    if (q->store) jobstore_delete(q->store, r->seq);
    pthread_mutex_unlock(&q->lock);
    return;
  }
  struct job *j = xcalloc(1, sizeof *j);
  j->seq = r->seq;
  j->id = xstrdup(r->id);
  j->idem_key = r->idem_key ? xstrdup(r->idem_key) : NULL;
  j->data = xstrdup(r->data ? r->data : "null");
  j->data_len = strlen(j->data);
  j->result = r->result ? xstrdup(r->result) : NULL;
  j->progress = r->progress ? xstrdup(r->progress) : NULL;
  j->headers = r->headers ? xstrdup(r->headers) : NULL;
  buf_init(&j->errors);
  if (r->errors) buf_adds(&j->errors, r->errors);
  j->state = r->state;
  j->priority = r->priority;
  j->attempt = r->attempt;
  j->max_retries = r->max_retries;
  j->recoveries = r->recoveries;
  j->run_at = r->run_at;
  j->created_at = r->created_at;
  j->started_at = r->started_at;
  j->finished_at = r->finished_at;
  pthread_mutex_lock(&q->lock);
  if (r->seq >= q->next_seq) q->next_seq = r->seq + 1;
  jobq_index_add(q, j);
  int64_t now = jobq_now_ms();
  if (j->state == JS_RUNNING) {                /* the host died while it ran */
    j->recoveries++;
    static const char lost[] = "worker lost: the host stopped while the job ran";
    add_error(j, now, lost, sizeof lost - 1);
    if (j->recoveries > q->cfg.max_recoveries || j->attempt > j->max_retries) {
      j->state = JS_FAILED;
      j->finished_at = now;
    } else {
      j->state = JS_RETRYING;
      j->run_at = now + jobq_backoff_ns(&q->cfg, j->attempt, rand01(q)) / 1000000;
    }
    jobq_persist(q, j, NULL);
    log_warn("%s: job %s was running when the host stopped: %s", q->name, j->id,
             job_state_name(j->state));
  }
  j->pub_state = j->state;
  if (!job_state_final(j->state)) {
    live_add(q, j);
    enqueue(q, j, now);
  }
  pthread_mutex_unlock(&q->lock);
}

/* ---- publish ---------------------------------------------------------------------- */

static struct job *find_idem(struct jobq *q, const char *key) {
  for (size_t i = q->nall; i-- > 0;)
    if (q->all[i]->idem_key && !job_state_final(q->all[i]->state) &&
        strcmp(q->all[i]->idem_key, key) == 0)
      return q->all[i];
  return NULL;
}

/* Builds a new job (q->lock held). */
static struct job *new_job(struct jobq *q, const char *data, size_t len, const struct jobq_publish_opts *o) {
  struct job *j = xcalloc(1, sizeof *j);
  j->seq = q->next_seq++;
  if (o->id) j->id = xstrdup(o->id);
  else {
    char tmp[40];
    if (!q->cfg.uuid_ids || uuid_v4(tmp) != 0)      /* short ids; or no random source */
      snprintf(tmp, sizeof tmp, "%llx%08x", (unsigned long long)j->seq, (unsigned)next_rand(q));
    j->id = xstrdup(tmp);
  }
  j->idem_key = o->idem_key ? xstrdup(o->idem_key) : NULL;
  j->data = xstrndup(data, len);
  j->data_len = len;
  j->headers = o->headers ? xstrdup(o->headers) : NULL;
  buf_init(&j->errors);
  j->priority = o->priority;
  j->max_retries = o->max_retries >= 0 ? o->max_retries : q->cfg.max_retries;
  j->created_at = jobq_now_ms();
  j->run_at = j->created_at + o->delay_ns / 1000000;
  j->state = o->delay_ns > 0 ? JS_SCHEDULED : JS_QUEUED;
  j->pub_state = -1;
  jobq_index_add(q, j);
  live_add(q, j);
  q->st.published++;
  return j;
}

/* Takes j out of q->all, which is in seq order (q->lock held). */
static void all_remove(struct jobq *q, struct job *j) {
  size_t lo = 0, hi = q->nall;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (q->all[mid]->seq < j->seq) lo = mid + 1;
    else hi = mid;
  }
  if (lo < q->nall && q->all[lo] == j) {
    memmove(&q->all[lo], &q->all[lo + 1], (q->nall - lo - 1) * sizeof *q->all);
    q->nall--;
  }
}

/* Forgets a job whose publish could not be stored (q->lock held; no write of it is in
** flight): it was never visible, so no id, key or row may outlive it. */
static void unpublish(struct jobq *q, struct job *j) {
  all_remove(q, j);
  jobq_index_del(q, j);
  live_drop(q, j);
  q->st.published--;
  job_free(j);
}

/* After a publish's commit (q->lock held): a stored job waits for a worker unless a cancel
** got to it meanwhile; one that could not be stored is taken back. */
static void settle_published(struct jobq *q, struct job *j, int ok, int64_t now) {
  if (job_state_final(j->state)) return;         /* cancelled meanwhile */
  if (ok) enqueue(q, j, now);
  else unpublish(q, j);
}

/* JQ_OK, or JQ_INVALID for an empty or too long caller-given id or key. */
static int check_identity(const struct jobq_publish_opts *o, char *err, size_t errlen) {
  const char *const vals[] = {o->id, o->idem_key}, *const names[] = {"id", "idempotency key"};
  for (int i = 0; i < 2; i++) {
    size_t n = vals[i] ? strlen(vals[i]) : 1;
    if (n >= 1 && n <= JOBQ_KEY_MAX) continue;
    snprintf(err, errlen, "the job's %s must be 1 to %d bytes long (got %zu)", names[i],
             JOBQ_KEY_MAX, n);
    return JQ_INVALID;
  }
  return JQ_OK;
}

/* JQ_UNAVAILABLE while the store is not writable (q->lock held), else JQ_OK. */
static int check_store(struct jobq *q, char *err, size_t errlen) {
  if (!q->store || jobstore_healthy(q->store)) return JQ_OK;
  snprintf(err, errlen, "queue %s: its database is not writable; try again later", q->name);
  return JQ_UNAVAILABLE;
}

/* The answer to a publish whose commit failed. */
static int store_failed(struct jobq *q, const char *what, char *err, size_t errlen) {
  int down = q->store && !jobstore_healthy(q->store);
  snprintf(err, errlen, "queue %s: the %s could not be stored%s", q->name, what,
           down ? " (its database is not writable; try again later)" : "");
  return down ? JQ_UNAVAILABLE : JQ_ERROR;
}

/* Whether n more jobs fit (q->lock held): live ones within capacity, waiting ones (live, not
** running: reserved ones wait too) within max_waiting. */
static int has_room(const struct jobq *q, size_t n, uint64_t bytes) {
  if (q->cfg.capacity && q->live + n > q->cfg.capacity) return 0;
  if (q->cfg.capacity_bytes && q->live_bytes + bytes > q->cfg.capacity_bytes) return 0;
  return !q->cfg.max_waiting || q->live - q->running + n <= q->cfg.max_waiting;
}

int jobq_publish(struct jobq *q, const char *data, size_t len, const struct jobq_publish_opts *o,
                 char *id_out, size_t idlen, int *existed, char *err, size_t errlen) {
  if (q->pg) return pgq_publish(q->pg, data, len, o, id_out, idlen, existed, err, errlen);
  static const struct jobq_publish_opts none = {.max_retries = -1};
  if (!o) o = &none;
  *existed = 0;
  if (check_identity(o, err, errlen) != JQ_OK) return JQ_INVALID;
  pthread_mutex_lock(&q->lock);
  struct job *old = o->id ? jobq_find(q, o->id) : NULL;
  if (!old && o->idem_key) old = find_idem(q, o->idem_key);
  if (old) {
    snprintf(id_out, idlen, "%s", old->id);
    *existed = 1;
    pthread_mutex_unlock(&q->lock);
    return JQ_OK;
  }
  if (q->draining) {
    q->st.rejected_draining++;
    pthread_mutex_unlock(&q->lock);
    snprintf(err, errlen, "queue %s is shutting down", q->name);
    return JQ_DRAINING;
  }
  if (!has_room(q, 1, len)) {
    q->st.rejected_full++;
    size_t waiting = q->live - q->running;
    uint64_t held = q->live_bytes;
    pthread_mutex_unlock(&q->lock);
    snprintf(err, errlen, "queue %s is full (%zu jobs waiting, %llu bytes of data held)", q->name,
             waiting, (unsigned long long)held);
    return JQ_FULL;
  }
  if (check_store(q, err, errlen) != JQ_OK) {
    pthread_mutex_unlock(&q->lock);
    return JQ_UNAVAILABLE;
  }
  struct job *j = new_job(q, data, len, o);
  snprintf(id_out, idlen, "%s", j->id);
  struct waiter w;
  jobq_waiter_init(&w);
  jobq_persist(q, j, &w);
  pthread_mutex_unlock(&q->lock);
  int ok = jobq_waiter_wait(&w);
  pthread_mutex_lock(&q->lock);
  settle_published(q, j, ok, jobq_now_ms());
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->lock);
  return ok ? JQ_OK : store_failed(q, "job", err, errlen);
}

int jobq_publish_many(struct jobq *q, const char *const *data, const size_t *lens, size_t n,
                      const struct jobq_publish_opts *o, char (*ids)[JOBQ_ID_MAX], char *err,
                      size_t errlen) {
  if (q->pg) return pgq_publish_many(q->pg, data, lens, n, o, ids, err, errlen);
  struct jobq_publish_opts opts = o ? *o : (struct jobq_publish_opts){.max_retries = -1};
  opts.id = opts.idem_key = NULL;
  if (!n) return JQ_OK;
  pthread_mutex_lock(&q->lock);
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++) bytes += lens[i];
  int rc = q->draining ? JQ_DRAINING : !has_room(q, n, bytes) ? JQ_FULL : JQ_OK;
  if (rc == JQ_OK && (rc = check_store(q, err, errlen)) != JQ_OK) {
    pthread_mutex_unlock(&q->lock);
    return rc;
  }
  if (rc != JQ_OK) {
    if (rc == JQ_FULL) q->st.rejected_full += n;
    else q->st.rejected_draining += n;
    pthread_mutex_unlock(&q->lock);
    snprintf(err, errlen, rc == JQ_FULL ? "queue %s has no room for %zu more jobs" : "queue %s is shutting down",
             q->name, n);
    return rc;
  }
  struct job **js = xmalloc(n * sizeof *js);
  struct waiter w;
  jobq_waiter_init(&w);
  for (size_t i = 0; i < n; i++) {
    js[i] = new_job(q, data[i], lens[i], &opts);
    snprintf(ids[i], JOBQ_ID_MAX, "%s", js[i]->id);
  }
  jobq_persist_all(q, js, n, &w);                       /* one transaction: the last one is enough */
  pthread_mutex_unlock(&q->lock);
  int ok = jobq_waiter_wait(&w);
  pthread_mutex_lock(&q->lock);
  int64_t now = jobq_now_ms();
  for (size_t i = 0; i < n; i++) settle_published(q, js[i], ok, now);
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->lock);
  free(js);
  return ok ? JQ_OK : store_failed(q, "jobs", err, errlen);
}

/* ---- claim and finish -------------------------------------------------------------- */

static void promote_due(struct jobq *q, int64_t now) {
  while (q->delayed.n && q->delayed.v[0]->run_at <= now) {
    struct job *j = q->delayed.v[0];
    jobq_heap_remove(q, j);
    jobq_heap_push(q, j, 0);
  }
}

/* Running and reserved jobs together stay under max_concurrent. */
static int can_claim(struct jobq *q) {
  return !q->draining && q->ready.n && (!q->store || jobstore_healthy(q->store)) &&
         (!q->cfg.max_concurrent || q->running + q->reserved < (size_t)q->cfg.max_concurrent);
}

double jobq_hist_bound(int i) {
  static const double b[HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5, 1, 2.5, 5, 10, 30, 60, INFINITY};
  return b[i];
}

/* Reserves ready jobs (q->lock held), shown as they were until job_begin: one when the queue
** is shallow or has max_concurrent (a reserved job holds a slot another worker could use),
** more when it is deep, so a durable claim costs one commit per batch, not one per job. */
static size_t take_ready(struct jobq *q, struct job **out, size_t max) {
  size_t want = q->cfg.max_concurrent ? 1 : 1 + q->ready.n / 8, n = 0;
  if (want > max) want = max;
  while (n < want && can_claim(q)) {
    struct job *j = q->ready.v[0];
    jobq_heap_remove(q, j);
    j->claimed = 1;
    atomic_store(&j->cancel, 0);
    j->wake = NULL;
    j->deadline = 0;
    q->reserved++;
    out[n++] = j;
  }
  return n;
}

size_t jobq_claim_batch(struct jobq *q, int64_t until_ns, struct job **out, size_t max) {
  if (q->pg) return pgq_claim_batch(q->pg, until_ns, out, max);
  pthread_mutex_lock(&q->lock);
  for (;;) {
    if (q->stopped) break;
    int64_t now = jobq_now_ms();
    promote_due(q, now);
    size_t n = take_ready(q, out, max);
    if (n) {
      struct waiter w;
      jobq_waiter_init(&w);
      for (size_t i = 0; i < n; i++) jobq_persist_reserved(q, out[i], now, i + 1 == n ? &w : NULL);
      pthread_mutex_unlock(&q->lock);
      jobq_waiter_wait(&w);         /* the attempts are on disk before the jobs run */
      return n;
    }
    int64_t wake = until_ns;
    if (q->delayed.n && !q->draining) {
      int64_t due = clock_mono_ns() + (q->delayed.v[0]->run_at - now) * 1000000;
      if (!wake || due < wake) wake = due;
    }
    if (until_ns && clock_mono_ns() >= until_ns) break;
    if (!wake) pthread_cond_wait(&q->cv, &q->lock);
    else {
      struct timespec ts = ns_timespec(wake);
      pthread_cond_timedwait(&q->cv, &q->lock, &ts);
    }
  }
  pthread_mutex_unlock(&q->lock);
  return 0;
}

struct job *jobq_claim(struct jobq *q, int64_t until_ns) {
  struct job *j;
  if (!jobq_claim_batch(q, until_ns, &j, 1)) return NULL;
  job_begin(q, j);
  return j;
}

int job_begin(struct jobq *q, struct job *j) {
  if (q->pg) return pgq_begin(q->pg, j);
  pthread_mutex_lock(&q->lock);
  q->reserved--;
  int flag = job_state_final(j->state) ? 1 : q->draining ? 2 : atomic_load(&j->cancel);
  if (flag == 0) {
    j->claimed = 2;
    j->state = JS_RUNNING;
    j->attempt++;
    j->started_at = jobq_now_ms();
    jobq_show_running(q, j);
    q->running++;
    j->claimed_mono = clock_mono_ns();
    j->deadline = q->cfg.timeout_ns ? j->claimed_mono + q->cfg.timeout_ns : 0;
    waitlog_add(&q->waits, &q->st, j->claimed_mono - j->ready_mono);
  }
  pthread_mutex_unlock(&q->lock);
  return flag;
}

const char *job_id(const struct job *j) { return j->id; }
const char *job_data(const struct job *j, size_t *len) { *len = j->data_len; return j->data; }
const char *job_headers(const struct job *j) { return j->headers; }
int job_attempt(const struct job *j) { return j->attempt; }
int job_max_retries(const struct job *j) { return j->max_retries; }
int64_t job_deadline(const struct job *j) { return j->deadline; }
_Atomic int *job_cancel_flag(struct job *j) { return &j->cancel; }

void job_on_cancel(struct jobq *q, struct job *j, void (*wake)(void *), void *arg) {
  if (q->pg) { pgq_on_cancel(q->pg, j, wake, arg); return; }
  pthread_mutex_lock(&q->lock);
  j->wake = wake;            /* set by the runner before the job's code starts */
  j->wake_arg = arg;
  pthread_mutex_unlock(&q->lock);
}

void job_set_progress(struct jobq *q, struct job *j, const char *json, size_t len) {
  if (q->pg) { pgq_set_progress(q->pg, j, json, len); return; }
  pthread_mutex_lock(&q->lock);
  free(j->progress);
  j->progress = xstrndup(json, len);
  pthread_mutex_unlock(&q->lock);
}

/* Appends {"attempt":n,"at":ms,"error":"..."} to the job's history. */
static void add_error(struct job *j, int64_t at, const char *msg, size_t len) {
  struct buf *b = &j->errors;
  if (b->len) b->len--;                          /* drop the closing ']' */
  else buf_addc(b, '[');
  if (b->len > 1) buf_addc(b, ',');
  buf_printf(b, "{\"attempt\":%d,\"at\":%lld,\"error\":", j->attempt, (long long)at);
  json_put_string(b, msg, len);
  buf_add(b, "}]", 2);
}

/* A reserved job that never began (q->lock held): one cancelled meanwhile is already final;
** any other goes back to wait, its row rewritten over the reservation. */
static void release_reserved(struct jobq *q, struct job *j, int64_t now) {
  j->claimed = 0;
  if (job_state_final(j->state)) return;
  enqueue(q, j, now);
  jobq_persist(q, j, NULL);
}

void jobq_finish(struct jobq *q, struct job *j, enum job_outcome o, const char *text, size_t len) {
  if (q->pg) { pgq_finish(q->pg, j, o, text, len); return; }
  pthread_mutex_lock(&q->lock);
  int64_t now = jobq_now_ms();
  if (j->claimed != 2) {
    release_reserved(q, j, now);
    pthread_cond_signal(&q->cv);                 /* its max_concurrent slot is free */
    pthread_mutex_unlock(&q->lock);
    return;
  }
  j->claimed = 0;
  q->running--;
  q->st.run_ns_total += (uint64_t)(clock_mono_ns() - j->claimed_mono);
  q->st.run_count++;
  if (o == JO_ERROR || o == JO_TIMEOUT || o == JO_FATAL || o == JO_CANCELLED)
    add_error(j, now, text ? text : "", text ? len : 0);
  if (o == JO_OK) {
    j->state = JS_DONE;
    j->result = text ? xstrndup(text, len) : NULL;
  } else if (o == JO_REQUEUE) {
    j->state = JS_QUEUED;
    j->attempt--;
    j->run_at = now;
  } else if ((o == JO_ERROR || o == JO_TIMEOUT) && j->attempt <= j->max_retries) {
    j->state = JS_RETRYING;
    j->run_at = now + jobq_backoff_ns(&q->cfg, j->attempt, rand01(q)) / 1000000;
    q->st.retries++;
  } else {
    j->state = o == JO_CANCELLED ? JS_CANCELLED : JS_FAILED;
  }
  if (job_state_final(j->state)) {
    j->finished_at = now;
    live_drop(q, j);
    q->st.finished++;
  } else {
    enqueue(q, j, now);
  }
  j->wake = NULL;
  jobq_persist(q, j, NULL);
  int final = job_state_final(j->state), state = j->state, attempt = j->attempt;
  char id[JOBQ_KEY_MAX + 1];
  if (final && q->cfg.on_final) snprintf(id, sizeof id, "%s", j->id);   /* prune may free j */
  if (final) prune(q, now);
  pthread_cond_signal(&q->cv);                   /* a slot is free, or a job is back */
  pthread_mutex_unlock(&q->lock);
  if (final && q->cfg.on_final)
    q->cfg.on_final(q->cfg.on_final_ud, q->name, id, state, attempt, o == JO_OK ? NULL : text,
                    o == JO_OK ? 0 : len);
}

int jobq_forget(struct jobq *q, const char *id) {
  if (q->pg) return pgq_forget(q->pg, id);
  pthread_mutex_lock(&q->lock);
  struct job *j = jobq_find(q, id);
  int rc = !j || j->pub_state < 0 ? -1 : job_state_final(j->pub_state) && !j->inflight && !j->claimed ? 0 : 1;
  if (rc == 0) {
    all_remove(q, j);
    jobq_index_del(q, j);
    if (q->store) jobstore_delete(q->store, j->seq);
    job_free(j);
  }
  pthread_mutex_unlock(&q->lock);
  return rc;
}

int jobq_cancel(struct jobq *q, const char *id) {
  if (q->pg) return pgq_cancel(q->pg, id);
  pthread_mutex_lock(&q->lock);
  struct job *j = jobq_find(q, id);
  if (!j || j->pub_state < 0) {
    pthread_mutex_unlock(&q->lock);
    return -1;
  }
  int was = j->state;
  if (was == JS_RUNNING) {
    int zero = 0;
    if (atomic_compare_exchange_strong(&j->cancel, &zero, 1) && j->wake) j->wake(j->wake_arg);
    pthread_mutex_unlock(&q->lock);
    return was;
  }
  if (job_state_final(was)) {
    pthread_mutex_unlock(&q->lock);
    return was;
  }
  jobq_heap_remove(q, j);
  j->state = JS_CANCELLED;
  j->finished_at = jobq_now_ms();
  live_drop(q, j);
  q->st.finished++;
  static const char msg[] = "cancelled before it ran";
  add_error(j, j->finished_at, msg, sizeof msg - 1);
  struct waiter w;
  jobq_waiter_init(&w);
  jobq_persist(q, j, &w);
  int attempt = j->attempt;
  pthread_mutex_unlock(&q->lock);
  jobq_waiter_wait(&w);
  if (q->cfg.on_final)
    q->cfg.on_final(q->cfg.on_final_ud, q->name, id, JS_CANCELLED, attempt, msg, sizeof msg - 1);
  return was;
}

/* ---- retry and requeue (an operator's hand: the dashboard, the job API) ------------- */

/* Writes j's new row and waits for its commit, then wakes a consumer (q->lock held; it is
** released). */
static void commit_waiting(struct jobq *q, struct job *j) {
  struct waiter w;
  jobq_waiter_init(&w);
  jobq_persist(q, j, &w);
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->lock);
  jobq_waiter_wait(&w);
}

/* Why a failed or cancelled job cannot run again now (q->lock held): JQ_OK when it can. */
static int can_revive(struct jobq *q, const struct job *j) {
  if (j->claimed || j->inflight || j->pub_state != j->state) return JQ_CONFLICT;  /* settling */
  if (j->idem_key && find_idem(q, j->idem_key)) return JQ_CONFLICT;  /* its key is taken */
  if (q->draining) return JQ_DRAINING;
  if (!has_room(q, 1, j->data_len)) return JQ_FULL;
  if (q->store && !jobstore_healthy(q->store)) return JQ_UNAVAILABLE;
  return JQ_OK;
}

int jobq_retry(struct jobq *q, const char *id) {
  if (q->pg) return pgq_revive(q->pg, id, 0);
  pthread_mutex_lock(&q->lock);
  struct job *j = jobq_find(q, id);
  int was = !j || j->pub_state < 0 ? -1 : j->state;
  int rc = was == JS_FAILED || was == JS_CANCELLED ? can_revive(q, j) : was < 0 ? -1 : JQ_CONFLICT;
  if (rc != JQ_OK) {
    pthread_mutex_unlock(&q->lock);
    return rc;
  }
  int64_t now = jobq_now_ms();
  j->state = JS_QUEUED;
  j->attempt = j->recoveries = 0;
  j->run_at = now;
  j->finished_at = 0;
  free(j->result);
  j->result = NULL;
  atomic_store(&j->cancel, 0);
  live_add(q, j);
  enqueue(q, j, now);
  commit_waiting(q, j);
  return was;
}

const char *jobq_revive_refusal(int requeue) {
  return requeue ? "only a scheduled or retrying job can be requeued"
                 : "only a failed or cancelled job can be retried (and not while a live job holds "
                   "its idempotency key)";
}

int jobq_requeue(struct jobq *q, const char *id) {
  if (q->pg) return pgq_revive(q->pg, id, 1);
  pthread_mutex_lock(&q->lock);
  struct job *j = jobq_find(q, id);
  int was = !j || j->pub_state < 0 ? -1 : j->state;
  if (was != JS_SCHEDULED && was != JS_RETRYING) {
    pthread_mutex_unlock(&q->lock);
    return was < 0 ? -1 : JQ_CONFLICT;
  }
  if (j->claimed) {                       /* already due and taken: it starts now anyway */
    pthread_mutex_unlock(&q->lock);
    return was;
  }
  int64_t now = jobq_now_ms();
  jobq_heap_remove(q, j);
  j->state = JS_QUEUED;
  j->run_at = now;
  enqueue(q, j, now);
  commit_waiting(q, j);
  return was;
}

/* ---- shutdown ---------------------------------------------------------------------- */

void jobq_drain(struct jobq *q) {
  if (q->pg) pgq_drain(q->pg);
  pthread_mutex_lock(&q->lock);
  q->draining = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->lock);
}

void jobq_stop(struct jobq *q) {
  if (q->pg) pgq_stop(q->pg);
  pthread_mutex_lock(&q->lock);
  q->draining = q->stopped = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->lock);
}

int jobq_available(struct jobq *q) {
  if (q->pg) return pgq_available(q->pg);
  return !q->store || jobstore_healthy(q->store);    /* an atomic: no lock needed */
}

int jobq_draining(struct jobq *q) {
  if (q->pg) return pgq_draining(q->pg);
  pthread_mutex_lock(&q->lock);
  int d = q->draining;
  pthread_mutex_unlock(&q->lock);
  return d;
}

size_t jobq_running(struct jobq *q) {
  if (q->pg) return pgq_running(q->pg);
  pthread_mutex_lock(&q->lock);
  size_t n = q->running;
  pthread_mutex_unlock(&q->lock);
  return n;
}

size_t jobq_interrupt_running(struct jobq *q) {
  if (q->pg) return pgq_interrupt_running(q->pg);
  size_t n = 0;
  pthread_mutex_lock(&q->lock);
  for (size_t i = 0; i < q->nall; i++) {
    struct job *j = q->all[i];
    int zero = 0;
    if (j->state != JS_RUNNING || !atomic_compare_exchange_strong(&j->cancel, &zero, 2)) continue;
    if (j->wake) j->wake(j->wake_arg);
    n++;
  }
  pthread_mutex_unlock(&q->lock);
  return n;
}
