/*
** jobmetrics.c — the queues' series for the admin listener's GET /metrics (see jobs.h):
** the same figures a queue.http entry's metrics_path prints for its one queue (jobapi.c),
** here for every queue.queue of the host, one family at a time.
** Threads: runs on the rendering (admin) thread; each queue's stats are read under its lock
** (jobq_stats), the queue table is copied under the runtime's lock (rt_list_queues).
*/
#include "jobs.h"
#include "jobq.h"
#include "base/metrics.h"
#include "base/util.h"
#include "runtime/rt.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define Q(i) {"queue", ids[i], strlen(ids[i])}

/* One counter family with a value per queue (a field of struct jobq_stats). */
static void per_queue(struct mcollect *c, const char *name, const char *help, const char *const *ids,
                      const struct jobq_stats *st, size_t n, size_t field) {
  mc_family(c, name, "counter", help);
  for (size_t i = 0; i < n; i++) {
    struct mlabel l[] = {Q(i)};
    mc_sample(c, name, l, 1, (double)*(const uint64_t *)((const char *)&st[i] + field));
  }
}

static void wait_histogram(struct mcollect *c, const char *const *ids, const struct jobq_stats *st, size_t n) {
  mc_family(c, "taskhost_job_wait_seconds", "histogram", "Time from enqueue (or run_at) to start.");
  char le[40];
  for (size_t i = 0; i < n; i++) {
    uint64_t cum = 0;
    for (int b = 0; b < 16; b++) {
      cum += st[i].wait_hist[b];
      if (b == 15) strcpy(le, "+Inf");
      else metrics_fmt_value(jobq_hist_bound(b), le);
      struct mlabel l[] = {Q(i), {"le", le, strlen(le)}};
      mc_sample(c, "taskhost_job_wait_seconds_bucket", l, 2, (double)cum);
    }
    struct mlabel l[] = {Q(i)};
    mc_sample(c, "taskhost_job_wait_seconds_sum", l, 1, (double)st[i].wait_ns_total / 1e9);
    mc_sample(c, "taskhost_job_wait_seconds_count", l, 1, (double)st[i].wait_count);
  }
}

void jobs_collect_metrics(void *rt, struct mcollect *c) {
  struct queue_ent *qs;
  size_t n = rt_list_queues(rt, &qs);
  struct jobq_stats *st = xcalloc(n ? n : 1, sizeof *st);
  const char **ids = xcalloc(n ? n : 1, sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    jobq_stats(qs[i].q, &st[i]);
    ids[i] = qs[i].id;
  }
  mc_family(c, "taskhost_jobs", "gauge", "Jobs by queue and state.");
  for (size_t i = 0; i < n; i++)
    for (int s = 0; s < JS_COUNT; s++) {
      const char *sn = job_state_name(s);
      struct mlabel l[] = {Q(i), {"state", sn, strlen(sn)}};
      mc_sample(c, "taskhost_jobs", l, 2, (double)st[i].by_state[s]);
    }
  per_queue(c, "taskhost_jobs_published_total", "Jobs published.", ids, st, n, offsetof(struct jobq_stats, published));
  mc_family(c, "taskhost_jobs_rejected_total", "counter", "Publishes refused, by reason.");
  for (size_t i = 0; i < n; i++) {
    struct mlabel full[] = {Q(i), {"reason", "full", 4}}, drain[] = {Q(i), {"reason", "draining", 8}};
    mc_sample(c, "taskhost_jobs_rejected_total", full, 2, (double)st[i].rejected_full);
    mc_sample(c, "taskhost_jobs_rejected_total", drain, 2, (double)st[i].rejected_draining);
  }
  per_queue(c, "taskhost_jobs_retries_total", "Attempts scheduled again.", ids, st, n, offsetof(struct jobq_stats, retries));
  per_queue(c, "taskhost_jobs_finished_total", "Jobs that reached a final state.", ids, st, n, offsetof(struct jobq_stats, finished));
  wait_histogram(c, ids, st, n);
  free(ids);
  free(st);
  free(qs);
}
