/*
** app_metrics.c — the host's series registry and the admin listener: app_metrics_start makes
** the registry (the runtime's "metrics" service, for lua/lmod_metrics.c), adds the host's
** collectors (process hosts and memory here, queues from jobs/) and starts the admin
** listener when admin.addr is set; app_metrics_stop stops the listener first thing at
** shutdown, before the hosts and queues its collectors read are freed.
** Threads: start/stop on the main thread; the collectors run on the admin listener's threads.
*/
#include "app_impl.h"
#include "base/log.h"
#include "base/metrics.h"
#include "http/admin.h"
#include "jobs/jobs.h"
#include "runtime/events.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"

#include <civetweb.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Process hosts (process.host and terminal.host alike) and the host's memory. */
static void collect_runtime(void *ud, struct mcollect *c) {
  struct sched_ent *ss;
  size_t n = rt_list_scheds(ud, &ss);
  static const struct { const char *name, *type, *help; } fam[] = {
    {"taskhost_processes", "gauge", "Live processes per host."},
    {"taskhost_processes_started_total", "counter", "Processes started on each host."},
    {"taskhost_host_workers", "gauge", "Worker threads of each host."},
  };
  for (size_t f = 0; f < countof(fam); f++) {
    mc_family(c, fam[f].name, fam[f].type, fam[f].help);
    for (size_t i = 0; i < n; i++) {
      struct sched *s = ss[i].s;
      double v = f == 0 ? (double)sched_procs(s) : f == 1 ? (double)sched_started(s) : sched_workers(s);
      struct mlabel l[] = {{"host", ss[i].id, strlen(ss[i].id)},
                           {"kind", ss[i].terminal ? "terminal" : "process", ss[i].terminal ? 8 : 7}};
      mc_sample(c, fam[f].name, l, 2, v);
    }
  }
  free(ss);
  mc_family(c, "taskhost_messages_sent_total", "counter", "process.send messages delivered to a mailbox.");
  mc_sample(c, "taskhost_messages_sent_total", NULL, 0,
            (double)atomic_load_explicit(&((struct rt *)ud)->messages_sent, memory_order_relaxed));
  struct host_mem hm;
  metrics_host_memory(&hm);
  mc_family(c, "taskhost_memory_heap_bytes", "gauge", "malloc bytes in use (every Lua state included).");
  mc_sample(c, "taskhost_memory_heap_bytes", NULL, 0, (double)hm.heap_in_use);
  mc_family(c, "taskhost_memory_heap_system_bytes", "gauge", "Bytes malloc obtained from the system.");
  mc_sample(c, "taskhost_memory_heap_system_bytes", NULL, 0, (double)hm.heap_system);
  mc_family(c, "taskhost_memory_resident_bytes", "gauge", "Resident set size.");
  mc_sample(c, "taskhost_memory_resident_bytes", NULL, 0, (double)hm.rss);
}

/* The event bus (events.h): sends, deliveries, drops (full subscriber buffers), subscriptions. */
static void collect_events(void *ud, struct mcollect *c) {
  struct evbus *b = ((struct rt *)ud)->events;
  if (!b) return;
  struct evbus_stats st;
  evbus_stats(b, &st);
  static const struct { const char *name, *type, *help; } fam[] = {
    {"taskhost_events_sent_total", "counter", "events.send calls and host events that passed their checks."},
    {"taskhost_events_delivered_total", "counter", "Events put in a subscriber's mailbox."},
    {"taskhost_events_dropped_total", "counter", "Events dropped because a subscriber's buffer was full."},
    {"taskhost_events_subscriptions", "gauge", "Open event subscriptions."},
  };
  double v[] = {(double)st.sent, (double)st.delivered, (double)st.dropped, (double)st.subscriptions};
  for (size_t f = 0; f < countof(fam); f++) {
    mc_family(c, fam[f].name, fam[f].type, fam[f].help);
    mc_sample(c, fam[f].name, NULL, 0, v[f]);
  }
}

/* log.clickhouse: rows shipped, dropped (ring full or unsent at stop), failed requests. */
static void collect_logship(void *ud, struct mcollect *c) {
  struct app *a = ud;
  if (!a->logship) return;
  struct logship_stats st;
  logship_stats(a->logship, &st);
  static const struct { const char *name, *type, *help; } fam[] = {
    {"taskhost_log_shipped_total", "counter", "Log records stored in ClickHouse."},
    {"taskhost_log_dropped_total", "counter", "Log records dropped: the shipping buffer was full, or unsent at exit."},
    {"taskhost_log_ship_failures_total", "counter", "ClickHouse requests that failed (the batch is kept and retried)."},
    {"taskhost_log_buffered", "gauge", "Log records waiting to be shipped."},
  };
  double v[] = {(double)st.shipped, (double)st.dropped, (double)st.failures, (double)st.buffered};
  for (size_t f = 0; f < countof(fam); f++) {
    mc_family(c, fam[f].name, fam[f].type, fam[f].help);
    mc_sample(c, fam[f].name, NULL, 0, v[f]);
  }
}

void app_metrics_init(struct app *a) {
  struct metrics_limits lim = {.max_names = (size_t)a->metrics_limits[0],
                               .max_series_per_name = (size_t)a->metrics_limits[1],
                               .max_series = (size_t)a->metrics_limits[2]};
  a->metrics = metrics_new(&lim);
  metrics_add_collector(a->metrics, collect_runtime, a->rt);
  metrics_add_collector(a->metrics, jobs_collect_metrics, a->rt);
  metrics_add_collector(a->metrics, collect_events, a->rt);
  metrics_add_collector(a->metrics, collect_logship, a);
}

int app_metrics_start(struct app *a) {
  rt_add_service(a->rt, "metrics", a->metrics);
  if (!a->admin_addr) return 0;
  if (!a->mg_ready) { mg_init_library(0); a->mg_ready = 1; }
  char err[256];
  if (!(a->admin = admin_start(a->admin_addr, a->admin_token, a->metrics, err, sizeof err))) {
    log_error("%s", err);
    return -1;
  }
  return 0;
}

void app_metrics_stop(struct app *a) {
  admin_stop(a->admin);
  a->admin = NULL;
}

void app_metrics_free(struct app *a) {
  app_metrics_stop(a);
  metrics_free(a->metrics);
  a->metrics = NULL;
  free(a->admin_addr);
  free(a->admin_token);
}
