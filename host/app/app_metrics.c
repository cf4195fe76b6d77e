/*
** app_metrics.c — the host's series registry and the admin listener: app_metrics_start makes
** the registry (the runtime's "metrics" service, for lua/lmod_metrics.c), adds the host's
** collectors (process hosts, mailboxes, memory, fds and reloads here, queues from jobs/,
** HTTP requests from http/httpstats.c, whose table is the runtime's "http_stats" service the
** servers find at start) and starts the admin listener when admin.addr is set;
** app_metrics_stop stops the listener first thing at shutdown, before the hosts and queues
** its collectors read are freed.
** Threads: start/stop on the main thread; the collectors run on the admin listener's threads.
*/
#include "app_impl.h"
#include "base/log.h"
#include "base/metrics.h"
#include "http/admin.h"
#include "http/httpstats.h"
#include "jobs/jobs.h"
#include "runtime/events.h"
#include "runtime/proc.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"

#include <civetweb.h>
#include <dirent.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>

/* Messages waiting and Lua heap per process host: one pass over the pid table (its read lock: spawns
** and exits wait, sends do not), each process's lock held only to read its mailbox. */
struct depth { uint64_t total, max, heap; };
struct depth_walk { const struct sched_ent *ss; size_t n; struct depth *d; };

static void add_depth(struct proc *p, void *ud) {
  struct depth_walk *w = ud;
  for (size_t i = 0; i < w->n; i++) {
    if (w->ss[i].s != p->sched) continue;
    uint64_t q = proc_queued(p);
    w->d[i].heap += atomic_load_explicit(&p->mem, memory_order_relaxed);
    w->d[i].total += q;
    if (q > w->d[i].max) w->d[i].max = q;
    return;
  }
}

static struct depth *mailbox_depths(struct rt *rt, const struct sched_ent *ss, size_t n) {
  struct depth_walk w = {ss, n, xcalloc(n ? n : 1, sizeof *w.d)};
  rt_foreach_proc(rt, NULL, add_depth, &w);
  return w.d;
}

/* Process hosts (process.host and terminal.host alike) and the host's memory. */
static void collect_runtime(void *ud, struct mcollect *c) {
  struct sched_ent *ss;
  size_t n = rt_list_scheds(ud, &ss);
  struct depth *d = mailbox_depths(ud, ss, n);
  static const struct { const char *name, *type, *help; } fam[] = {
    {"taskhost_processes", "gauge", "Live processes per host."},
    {"taskhost_processes_started_total", "counter", "Processes started on each host."},
    {"taskhost_host_workers", "gauge", "Worker threads of each host."},
    {"taskhost_run_queue_processes", "gauge", "Processes waiting in the host's run queue for a worker."},
    {"taskhost_worker_busy_seconds_total", "counter",
     "Time the host's workers spent running processes, summed over workers (rate / workers = utilisation)."},
    {"taskhost_mailbox_messages", "gauge", "Messages waiting for the host's processes (mailboxes and unread inboxes), in all."},
    {"taskhost_mailbox_messages_max", "gauge", "The most messages waiting for one process of the host."},
    {"taskhost_lua_heap_bytes", "gauge", "Lua heap held by the host's live processes (their states' allocators)."},
  };
  for (size_t f = 0; f < countof(fam); f++) {
    mc_family(c, fam[f].name, fam[f].type, fam[f].help);
    for (size_t i = 0; i < n; i++) {
      struct sched *s = ss[i].s;
      double v[] = {(double)sched_procs(s), (double)sched_started(s), sched_workers(s),
                    (double)sched_queued(s), (double)sched_busy_ns(s) / 1e9, (double)d[i].total,
                    (double)d[i].max, (double)d[i].heap};
      struct mlabel l[] = {{"host", ss[i].id, strlen(ss[i].id)},
                           {"kind", ss[i].terminal ? "terminal" : "process", ss[i].terminal ? 8 : 7}};
      mc_sample(c, fam[f].name, l, 2, v[f]);
    }
  }
  free(d);
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

/* Open file descriptors (the entries of /proc/self/fd, less the one reading it; -1 if it
** cannot be read) and their limit (RLIMIT_NOFILE's soft value). */
static double open_fds(void) {
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  long n = 0;
  for (struct dirent *e; (e = readdir(dir));)
    if (e->d_name[0] != '.') n++;
  closedir(dir);
  return (double)(n - 1);
}

/* The host itself: file descriptors and hot reloads (app_reload_event counts them). */
static void collect_host(void *ud, struct mcollect *c) {
  struct app *a = ud;
  mc_family(c, "taskhost_open_fds", "gauge", "Open file descriptors.");
  mc_sample(c, "taskhost_open_fds", NULL, 0, open_fds());
  struct rlimit rl;
  mc_family(c, "taskhost_max_fds", "gauge", "The open file descriptor limit (RLIMIT_NOFILE, soft).");
  mc_sample(c, "taskhost_max_fds", NULL, 0,
            getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (double)rl.rlim_cur : -1);
  mc_family(c, "taskhost_reloads_total", "counter",
            "Hot reloads (file changes and registry change sets): applied, or refused with the running code kept.");
  struct mlabel ok = {"result", "ok", 2}, refused = {"result", "refused", 7};
  mc_sample(c, "taskhost_reloads_total", &ok, 1, (double)atomic_load(&a->reloads_ok));
  mc_sample(c, "taskhost_reloads_total", &refused, 1, (double)atomic_load(&a->reloads_refused));
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
  a->httpstats = httpstats_new();
  metrics_add_collector(a->metrics, httpstats_collect, a->httpstats);
  metrics_add_collector(a->metrics, collect_host, a);
}

int app_metrics_start(struct app *a) {
  rt_add_service(a->rt, "metrics", a->metrics);
  rt_add_service(a->rt, HTTPSTATS_SERVICE, a->httpstats);
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
  httpstats_free(a->httpstats);             /* every server stopped before app_free gets here */
  a->httpstats = NULL;
  free(a->admin_addr);
  free(a->admin_token);
}
