/*
** jobs.c — see jobs.h.
*/
#include "jobs.h"
#include "jobq.h"
#include "jobrun.h"
#include "jobstore.h"
#include "pgq.h"
#include "base/log.h"
#include "registry/registry.h"
#include "runtime/events.h"
#include "runtime/rt.h"
#include "value/json.h"
#include "base/util.h"
#include "value/val.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct queue_rt {
  char *id;                   /* the entry's id (a copy: generations come and go) */
  struct jobq *q;
  struct jobstore *store;
  char *path;                 /* its database file (sqlite driver; the store holds its lock) */
};

struct jobs {
  struct queue_rt *queues;
  size_t nqueues;
  struct consumer **consumers;
  size_t nconsumers;
};

static int64_t dur(const struct reg_entry *e, const char *path, int64_t dflt) {
  return val_duration_ns(val_path(e->data, path), dflt);
}

static void config_of(const struct reg_entry *e, struct jobq_config *c) {
  const char *jitter = val_str(val_path(e->data, "backoff.jitter"), "full");
  *c = (struct jobq_config){
    .name = e->id,
    .capacity = (size_t)val_int(val_get(e->data, "capacity"), 10000),
    .capacity_bytes = val_size(val_get(e->data, "capacity_bytes"), 0),
    .max_waiting = (size_t)val_int(val_get(e->data, "max_waiting"), 0),
    .uuid_ids = strcmp(val_str(val_get(e->data, "ids"), "short"), "uuid") == 0,
    .max_retries = (int)val_int(val_get(e->data, "max_retries"), 3),
    .backoff_base_ns = dur(e, "backoff.base", NS_PER_S),
    .backoff_cap_ns = dur(e, "backoff.cap", 300 * NS_PER_S),
    .backoff_factor = val_num(val_path(e->data, "backoff.factor"), 2.0),
    .jitter = strcmp(jitter, "none") == 0 ? JITTER_NONE : strcmp(jitter, "equal") == 0 ? JITTER_EQUAL : JITTER_FULL,
    .timeout_ns = dur(e, "timeout", 300 * NS_PER_S),
    .retention_ns = dur(e, "retention", 24 * 3600 * NS_PER_S),
    .max_concurrent = (int)val_int(val_get(e->data, "max_concurrent"), 0),
    .max_recoveries = (int)val_int(val_get(e->data, "max_recoveries"), 3),
  };
}

/* data/<ns>.<name>.db under the project, or the entry's `database`. */
static char *db_path(const struct reg_entry *e, const char *project_dir) {
  const char *db = val_str(val_get(e->data, "database"), NULL);
  struct buf b;
  buf_init(&b);
  if (db && db[0] == '/') buf_adds(&b, db);
  else if (db) buf_printf(&b, "%s/%s", project_dir, db);
  else {
    buf_printf(&b, "%s/data/%s.db", project_dir, e->id);
    char *colon = strrchr(b.data, ':');
    if (colon) *colon = '.';
  }
  return buf_steal(&b);
}

struct restore_ctx { struct jobq *q; size_t n; };

static void restore_row(void *arg, const struct job_row *r) {
  struct restore_ctx *rc = arg;
  if (strcmp(r->queue, jobq_name(rc->q)) != 0) return;
  jobq_restore(rc->q, r);
  rc->n++;
}

/* jobq on_final: a "taskhost.queue" event, kind "job.<state>" (done, failed, cancelled),
** path the queue's id. */
static void job_final(void *ud, const char *queue, const char *id, int state, int attempt,
                      const char *error, size_t error_len) {
  struct rt *rt = ud;
  if (!evbus_active(rt->events)) return;
  char kind[32];
  struct buf b;
  buf_init(&b);
  snprintf(kind, sizeof kind, "job.%s", job_state_name(state));
  buf_adds(&b, "{\"id\":");
  json_put_string(&b, id, strlen(id));
  buf_adds(&b, ",\"queue\":");
  json_put_string(&b, queue, strlen(queue));
  buf_printf(&b, ",\"state\":\"%s\",\"attempt\":%d", job_state_name(state), attempt);
  if (error) {
    buf_adds(&b, ",\"error\":");
    json_put_string(&b, error, error_len);
  }
  buf_addc(&b, '}');
  buf_addc(&b, '\0');
  evbus_host(rt->events, "taskhost.queue", kind, queue, b.data);
  buf_free(&b);
}

static int open_queue(struct jobs *js, struct rt *rt, const struct reg_entry *e, char *err, size_t errlen) {
  js->queues = xrealloc(js->queues, (js->nqueues + 1) * sizeof *js->queues);
  struct queue_rt *qr = &js->queues[js->nqueues];
  memset(qr, 0, sizeof *qr);
  struct jobq_config cfg;
  config_of(e, &cfg);
  cfg.on_final = job_final;
  cfg.on_final_ud = rt;
  const char *driver = val_str(val_get(e->data, "driver"), "sqlite");
  if (strcmp(driver, "postgres") == 0) {
    const char *dsn = val_str(val_get(e->data, "dsn"), "");
    if (!*dsn) {
      snprintf(err, errlen, "%s:%d: %s: driver postgres needs a dsn (a libpq connection string or URI)",
               e->file, e->line, e->id);
      return -1;
    }
    struct pgq_config pc = {.dsn = dsn, .lease_ns = dur(e, "lease", 30 * NS_PER_S),
                            .poll_ns = dur(e, "poll_interval", NS_PER_S),
                            .notify = val_bool(val_get(e->data, "notify"), 1)};
    struct pgq *pg = pgq_open(&cfg, &pc, err, errlen);
    if (!pg) return -1;
    qr->q = jobq_new_pg(&cfg, pg);
    qr->id = xstrdup(e->id);
    js->nqueues++;
    rt_add_queue(rt, e->id, qr->q);
    return 0;
  }
  if (strcmp(driver, "sqlite") == 0) {
    char *path = db_path(e, rt->project_dir);
    for (size_t i = 0; i < js->nqueues; i++)      /* one file per queue: seq is per queue */
      if (js->queues[i].path && strcmp(js->queues[i].path, path) == 0) {
        snprintf(err, errlen, "%s:%d: %s: database %s is already used by %s; give each queue its own",
                 e->file, e->line, e->id, path, js->queues[i].id);
        free(path);
        return -1;
      }
    int full = strcmp(val_str(val_get(e->data, "synchronous"), "normal"), "full") == 0;
    qr->store = jobstore_open(path, full, err, errlen);
    if (!qr->store) {
      free(path);
      return -1;
    }
    qr->path = path;
  }
  qr->q = jobq_new(&cfg, qr->store);
  qr->id = xstrdup(e->id);
  js->nqueues++;
  if (qr->store) {
    struct restore_ctx rc = {qr->q, 0};
    if (jobstore_load(qr->store, restore_row, &rc, err, errlen) != 0) return -1;
    if (rc.n) log_info("%s: %zu jobs restored", e->id, rc.n);
  }
  rt_add_queue(rt, e->id, qr->q);
  return 0;
}

static struct jobq *queue_by_id(struct jobs *js, const char *id) {
  for (size_t i = 0; i < js->nqueues; i++)
    if (strcmp(js->queues[i].id, id) == 0) return js->queues[i].q;
  return NULL;
}

int jobs_open_new(struct jobs *js, struct rt *rt, struct registry *gen, char *err, size_t errlen) {
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (strcmp(e->kind, "queue.queue") == 0 && !queue_by_id(js, e->id) &&
        open_queue(js, rt, e, err, errlen) != 0)
      return -1;
  }
  return 0;
}

struct jobs *jobs_open(struct rt *rt, struct registry *gen, char *err, size_t errlen) {
  struct jobs *js = xcalloc(1, sizeof *js);
  if (jobs_open_new(js, rt, gen, err, errlen) != 0) {
    jobs_free(js);
    return NULL;
  }
  return js;
}

static int consumer_running(const struct jobs *js, const char *id) {
  for (size_t i = 0; i < js->nconsumers; i++)
    if (strcmp(consumer_id(js->consumers[i]), id) == 0) return 1;
  return 0;
}

int jobs_start_consumers(struct jobs *js, struct registry *gen, jobs_pool_fn pool_for, void *ud,
                         void (*adopt)(void *ud, struct consumer *c)) {
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (strcmp(e->kind, "queue.consumer") != 0 || consumer_running(js, e->id)) continue;
    if (!val_bool(val_path(e->data, "lifecycle.auto_start"), 0)) continue;
    const char *qid = val_str(val_get(e->data, "queue"), ""), *fid = val_str(val_get(e->data, "func"), "");
    struct jobq *q = queue_by_id(js, qid);
    struct funcpool *fp = pool_for(ud, fid);
    if (!q || !fp) {
      log_error("%s: %s is not %s", e->id, q ? fid : qid, q ? "a function.lua entry" : "a queue.queue entry");
      return -1;
    }
    char err[256];
    int conc = (int)val_int(val_get(e->data, "concurrency"), 1);
    struct consumer *c = consumer_start(e->id, q, fp, conc, err, sizeof err);
    if (!c) { log_error("%s", err); return -1; }
    js->consumers = xrealloc(js->consumers, (js->nconsumers + 1) * sizeof *js->consumers);
    js->consumers[js->nconsumers++] = c;
    if (adopt) adopt(ud, c);
    log_info("%s: %d workers on %s", e->id, conc, qid);
  }
  return 0;
}

size_t jobs_consumer_count(const struct jobs *js) { return js ? js->nconsumers : 0; }
struct consumer *jobs_consumer_at(struct jobs *js, size_t i) { return js->consumers[i]; }

void jobs_reclaim(struct jobs *js) {
  for (size_t i = 0; js && i < js->nconsumers; i++) consumer_reclaim(js->consumers[i]);
}

static size_t running_total(struct jobs *js) {
  size_t n = 0;
  for (size_t i = 0; i < js->nqueues; i++) n += jobq_running(js->queues[i].q);
  return n;
}

/* Waits up to `until` (monotonic ns) for running jobs to end; returns how many still run. */
static size_t wait_running(struct jobs *js, int64_t until) {
  size_t n;
  struct timespec tick = {0, 10 * 1000 * 1000};
  while ((n = running_total(js)) && clock_mono_ns() < until) nanosleep(&tick, NULL);
  return n;
}

void jobs_drain(struct jobs *js, int64_t timeout_ns) {
  if (!js || !js->nqueues) return;
  for (size_t i = 0; i < js->nqueues; i++) jobq_drain(js->queues[i].q);
  size_t left = running_total(js);
  log_info("jobs: draining: no new jobs; waiting up to %.1fs for %zu running jobs",
           (double)timeout_ns / 1e9, left);
  if (wait_running(js, clock_mono_ns() + timeout_ns)) {
    for (size_t i = 0; i < js->nqueues; i++) {
      size_t n = jobq_interrupt_running(js->queues[i].q);
      if (n) log_warn("%s: %zu running jobs stopped and put back in the queue", js->queues[i].id, n);
    }
    if (wait_running(js, clock_mono_ns() + 5 * NS_PER_S))
      log_error("jobs: %zu jobs did not stop", running_total(js));
  }
  for (size_t i = 0; i < js->nqueues; i++) jobq_stop(js->queues[i].q);
  for (size_t i = 0; i < js->nconsumers; i++) consumer_join(js->consumers[i]);
  js->nconsumers = 0;
  for (size_t i = 0; i < js->nqueues; i++)
    if (js->queues[i].store) jobstore_flush(js->queues[i].store);
}

void jobs_free(struct jobs *js) {
  if (!js) return;
  for (size_t i = 0; i < js->nqueues; i++) jobq_stop(js->queues[i].q);
  for (size_t i = 0; i < js->nconsumers; i++) consumer_join(js->consumers[i]);
  for (size_t i = 0; i < js->nqueues; i++) {
    jobstore_close(js->queues[i].store);     /* flushes: every callback has run */
    jobq_free(js->queues[i].q);
    free(js->queues[i].path);
    free(js->queues[i].id);
  }
  free(js->queues);
  free(js->consumers);
  free(js);
}
