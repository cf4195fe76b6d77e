/*
** app_reload.c — hot reload: applying a new generation to a running host (app_reload),
** the pool sets and route tables of reloaded generations, replacing changed servers,
** starting new hosts and servers, swapping consumer pools, and the reload tick
** (see app_impl.h). Main thread only.
*/
#include "app_impl.h"
#include "registry/code.h"
#include "runtime/events.h"
#include "runtime/funcpool.h"
#include "runtime/poolset.h"
#include "value/json.h"
#include "http/http.h"
#include "jobs/jobs.h"
#include "jobs/jobrun.h"
#include "base/log.h"
#include "registry/registry.h"
#include "http/router.h"
#include "runtime/rt.h"
#include "runtime/supervise.h"
#include "base/util.h"
#include "base/watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reloaded generation's route tables and consumers share one pool set (runtime/poolset.h):
** each table and consumer pool holds a reference, released on the main thread (by
** http_swap_routes/http_reclaim/http_stop and consumer_reclaim/consumer_join). */
struct table { struct routes *rs; struct poolset *ps; };

static struct funcpool *set_pool(void *ctx, const char *func) { return poolset_get(ctx, func); }

static void release_table(void *ud) {
  struct table *t = ud;
  routes_free(t->rs);
  poolset_unref(t->ps);
  free(t);
}

/* A service whose entry changed (addr, timeouts, threads): a new listener with the new
** settings starts before the old one stops. Same address: only its routes change now (two
** listeners cannot share it); the other settings apply at the next restart. */
static void replace_server(struct app *a, size_t i, const struct reg_entry *e, struct routes *rs,
                           struct table *t) {
  const struct reg_entry *old = registry_get(a->gen, a->server_ids[i]);
  const char *was = old ? val_str(val_get(old->data, "addr"), "") : "";
  if (strcmp(was, val_str(val_get(e->data, "addr"), "")) == 0) {
    log_warn("reload: %s changed but keeps its address; new settings apply at restart", e->id);
    http_swap_routes(a->servers[i], rs, release_table, t);
    return;
  }
  char err[256];
  struct http_server *s = http_start(a->rt, e, rs, a->rt->project_dir, err, sizeof err);
  if (!s) {
    log_error("reload: %s: %s; the old listener stays", e->id, err);
    http_swap_routes(a->servers[i], rs, release_table, t);
    return;
  }
  http_own_routes(s, release_table, t);
  http_stop(a->servers[i]);                       /* its requests in flight finish first */
  routes_free(a->routes[i]);                      /* its first table, if it still had it */
  a->routes[i] = NULL;
  a->servers[i] = s;
}

/* http.service entries that are new in gen start with its routes. */
static void start_new_servers(struct app *a, struct registry *gen, struct poolset *ps) {
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (strcmp(e->kind, "http.service") != 0 || !auto_start(e)) continue;
    int known = 0;
    for (size_t j = 0; j < a->nservers && !known; j++) known = a->servers[j] && strcmp(a->server_ids[j], e->id) == 0;
    if (known) continue;
    struct routes *rs = app_build_routes(a, gen, e->id, set_pool, ps);
    char err[256];
    struct http_server *s = rs ? http_start(a->rt, e, rs, a->rt->project_dir, err, sizeof err) : NULL;
    if (!s) {
      if (rs) log_error("reload: %s", err);
      routes_free(rs);
      continue;
    }
    struct table *t = xmalloc(sizeof *t);
    *t = (struct table){rs, ps};
    poolset_ref(ps);
    http_own_routes(s, release_table, t);
    app_add_server(a, e->id, s, NULL);
  }
}

static void release_pool_ref(void *ud) { poolset_unref(ud); }

/* Consumers whose entry or function (code, imports) changed run their next jobs on the new
** code; jobs running finish on the old. Other queue and consumer changes need a restart. */
static void swap_consumer_pools(struct app *a, struct registry *old, struct registry *reg,
                                struct poolset *ps) {
  for (size_t i = 0; i < jobs_consumer_count(a->jobs); i++) {
    struct consumer *c = jobs_consumer_at(a->jobs, i);
    const struct reg_entry *e = registry_get(reg, consumer_id(c));
    if (!e || strcmp(e->kind, "queue.consumer") != 0) {
      log_warn("reload: %s is gone from the registry; it keeps running until restart", consumer_id(c));
      continue;
    }
    if (!registry_entry_changed(old, reg, e->id)) continue;
    struct funcpool *fp = set_pool(ps, val_str(val_get(e->data, "func"), ""));
    if (!fp) continue;                             /* validated by the load: not reached */
    poolset_ref(ps);
    consumer_swap_pool(c, fp, release_pool_ref, ps);
    log_info("reload: %s runs its next jobs on the new code", e->id);
  }
}

/* A consumer a reload started holds a reference to the pool set its pool came from. */
static void adopt_consumer(void *ud, struct consumer *c) {
  struct poolset *ps = ud;
  poolset_ref(ps);
  consumer_own_pool(c, release_pool_ref, ps);
}

/* Process hosts that are new in gen start (their services may need them). Hosts, queues and
** consumers gone from gen keep running until the next restart (logged). */
static void start_new_hosts(struct app *a, struct registry *old, struct registry *gen) {
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (strcmp(e->kind, "process.host") == 0 && auto_start(e) && !rt_find_sched(a->rt, e->id) &&
        app_start_process_host(a, e) == 0)
      log_info("reload: process host %s started", e->id);
  }
  static const char *const kinds[] = {"process.host", "terminal.host", "queue.queue", "queue.consumer"};
  for (size_t i = 0; i < registry_count(old); i++) {
    const struct reg_entry *e = registry_at(old, i);
    for (size_t k = 0; k < countof(kinds); k++)
      if (strcmp(e->kind, kinds[k]) == 0 && !registry_get(gen, e->id))
        log_warn("reload: %s is gone from the registry; it stops at the next restart", e->id);
  }
}

int app_reload(struct app *a, struct registry *reg, struct codeset *code) {
  char err[512];
  if (jobs_open_new(a->jobs, a->rt, reg, err, sizeof err) != 0) {   /* routes may use them */
    log_error("%s", err);
    return -1;
  }
  start_new_hosts(a, a->gen, reg);                /* pools made below may hand work to them */
  app_db_reload(a, reg);
  struct poolset *ps = poolset_new(a->rt, code);   /* code holds reg */
  struct routes **tables = xcalloc(a->nservers + 1, sizeof *tables);
  int ok = 1;
  for (size_t i = 0; i < a->nservers && ok; i++) {
    const struct reg_entry *e = a->servers[i] ? registry_get(reg, a->server_ids[i]) : NULL;
    if (e && strcmp(e->kind, "http.service") == 0 && auto_start(e))
      ok = (tables[i] = app_build_routes(a, reg, a->server_ids[i], set_pool, ps)) != NULL;
  }
  if (!ok) {
    for (size_t i = 0; i < a->nservers; i++) routes_free(tables[i]);
    free(tables);
    poolset_unref(ps);
    return -1;
  }
  struct registry *old = registry_ref(a->gen);
  rt_set_generation(a->rt, registry_ref(reg), codeset_ref(code));
  size_t n = a->nservers;
  for (size_t i = 0; i < n; i++) {
    if (!a->servers[i]) continue;
    if (!tables[i]) {                             /* gone from the registry */
      log_info("reload: %s is gone from the registry: stopping it", a->server_ids[i]);
      http_stop(a->servers[i]);
      a->servers[i] = NULL;
      continue;
    }
    struct table *t = xmalloc(sizeof *t);
    *t = (struct table){tables[i], ps};
    poolset_ref(ps);
    if (registry_entry_changed(old, reg, a->server_ids[i]))
      replace_server(a, i, registry_get(reg, a->server_ids[i]), tables[i], t);
    else
      http_swap_routes(a->servers[i], tables[i], release_table, t);
  }
  free(tables);
  start_new_servers(a, reg, ps);
  swap_consumer_pools(a, old, reg, ps);
  jobs_start_consumers(a->jobs, reg, set_pool, ps, adopt_consumer);
  sup_reload(a->sup, old, reg);
  if (a->adopted) registry_unref(a->adopted);
  a->adopted = registry_ref(reg);
  a->gen = reg;
  registry_unref(old);
  poolset_unref(ps);                              /* the tables hold it now */
  return 0;
}

void app_set_reloader(struct app *a, app_reloader fn, void *ctx, struct watch *w) {
  a->reloader = fn;
  a->reloader_ctx = ctx;
  a->watch = w;
}

/* A "taskhost.registry" event: kind "reload" (path: the new version) or "reload.refused". */
/* Keeps the outcome for the dashboard (what it shows as the last reload, or refused one). */
static void note_reload(struct app *a, const struct registry *reg, const char *why, const char *problems) {
  struct reload_note n = {clock_wall_ns(), reg ? registry_version(reg) : 0, reg ? registry_count(reg) : 0,
                          xstrdup(why), problems && *problems ? xstrdup(problems) : NULL};
  pthread_mutex_lock(&a->notes_lock);
  struct reload_note *slot = reg ? &a->last_reload : &a->last_refused, old = *slot;
  *slot = n;
  pthread_mutex_unlock(&a->notes_lock);
  free(old.why);
  free(old.problems);
}

void app_reload_event(struct app *a, const struct registry *reg, const char *why, const char *problems) {
  atomic_fetch_add_explicit(reg ? &a->reloads_ok : &a->reloads_refused, 1, memory_order_relaxed);
  note_reload(a, reg, why, problems);
  if (!evbus_active(a->rt->events)) return;
  struct buf b;
  char path[32] = "";
  buf_init(&b);
  buf_adds(&b, "{\"why\":");
  json_put_string(&b, why, strlen(why));
  if (reg) {
    snprintf(path, sizeof path, "%llu", (unsigned long long)registry_version(reg));
    buf_printf(&b, ",\"version\":%s,\"entries\":%zu", path, registry_count(reg));
  }
  buf_addc(&b, '}');
  buf_addc(&b, '\0');
  evbus_host(a->rt->events, "taskhost.registry", reg ? "reload" : "reload.refused", path, b.data);
  buf_free(&b);
}

/* Builds the project again and applies it; on any problem the running code stays. */
void app_reload_project(struct app *a, const char *why) {
  if (!a->reloader) return;
  int64_t t0 = clock_mono_ns();
  struct registry *reg = NULL;
  struct codeset *code = NULL;
  char *problems = NULL;
  if (a->reloader(a->reloader_ctx, &reg, &code, &problems) != 0 || app_registry_overlay(a, &reg, &code) != 0 ||
      app_reload(a, reg, code) != 0) {
    log_error("reload (%s) refused: the running code stays until the problem is fixed", why);
    app_reload_event(a, NULL, why, problems);
  } else {
    app_reload_event(a, reg, why, NULL);
    app_registry_adopted(a, reg);
    log_info("reloaded (%s): generation %llu, %zu entries, in %.1f ms", why,
             (unsigned long long)registry_version(reg), registry_count(reg),
             (double)(clock_mono_ns() - t0) / 1e6);
  }
  free(problems);
  if (code) codeset_unref(code);
  if (reg) registry_unref(reg);
}

/* Once a tick: a finished burst of file changes reloads; retired route tables are freed. */
void app_tick_reload(struct app *a) {
  char *first = NULL;
  size_t count = 0;
  if (a->watch && watch_take(a->watch, &first, &count)) {
    char why[512];
    snprintf(why, sizeof why, "%s changed%s", first ? first : "?", count > 1 ? " and more" : "");
    app_reload_project(a, why);
    free(first);
  }
  app_registry_tick(a);
  for (size_t i = 0; i < a->nservers; i++)
    if (a->servers[i]) http_reclaim(a->servers[i]);
  jobs_reclaim(a->jobs);
}
