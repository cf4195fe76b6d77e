/*
** app_build.c — the parts of a running host made from a generation: process hosts,
** terminal hosts, services in dependency order, function pools, route tables and HTTP
** servers (see app_impl.h). Main thread only.
*/
#include "app_impl.h"
#include "registry/code.h"
#include "runtime/funcpool.h"
#include "http/http.h"
#include "jobs/jobapi.h"
#include "base/log.h"
#include "registry/registry.h"
#include "http/router.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"
#include "runtime/supervise.h"
#include "runtime/term.h"
#include "base/util.h"

#include <civetweb.h>
#include <stdlib.h>
#include <string.h>

int app_start_process_host(struct app *a, const struct reg_entry *e) {
  int workers = (int)val_int(val_path(e->data, "host.workers"), 0);
  struct sched *s = sched_new(a->rt, e->id, workers);
  if (sched_start(s) != 0) return -1;
  rt_add_sched(a->rt, e->id, s, 0);
  log_debug("process host %s started with %d workers", e->id, sched_workers(s));
  return 0;
}

int app_start_terminal_host(struct app *a, const struct reg_entry *e) {
  struct term *t = term_new(a->rt, e->id);
  if (sched_start(term_sched(t)) != 0) return -1;
  rt_add_sched(a->rt, e->id, term_sched(t), 1);
  a->terms = xrealloc(a->terms, (a->nterms + 1) * sizeof *a->terms);
  a->term_ids = xrealloc(a->term_ids, (a->nterms + 1) * sizeof *a->term_ids);
  a->terms[a->nterms] = t;
  a->term_ids[a->nterms++] = xstrdup(e->id);
  return 0;
}

/* Is every `lifecycle.requires` / `depends_on` of e already placed (or not a service)? */
static int deps_ready(struct registry *r, const struct reg_entry *e, const char **placed, size_t n) {
  static const char *const keys[] = {"lifecycle.requires", "lifecycle.depends_on"};
  for (size_t k = 0; k < countof(keys); k++) {
    const struct val *deps = val_path(e->data, keys[k]);
    for (size_t i = 0; i < val_len(deps); i++) {
      const char *id = val_str(val_at(deps, i), "");
      const struct reg_entry *d = registry_get(r, id);
      if (!d || !is_kind(d, "process.service")) continue;
      int found = 0;
      for (size_t j = 0; j < n && !found; j++) found = strcmp(placed[j], id) == 0;
      if (!found) return 0;
    }
  }
  return 1;
}

/* Adds auto_start services to the supervisor in dependency order. */
int app_add_services(struct app *a) {
  struct registry *r = a->gen;
  size_t total = registry_count(r), n = 0;
  const char **placed = xcalloc(total + 1, sizeof *placed);
  char *done = xcalloc(total + 1, 1);
  for (int progress = 1; progress;) {
    progress = 0;
    for (size_t i = 0; i < total; i++) {
      const struct reg_entry *e = registry_at(r, i);
      if (done[i] || !is_kind(e, "process.service") || !auto_start(e)) continue;
      if (!deps_ready(r, e, placed, n)) continue;
      done[i] = 1;
      placed[n++] = e->id;
      progress = 1;
      if (sup_add(a->sup, e) != 0) { free(placed); free(done); return -1; }
    }
  }
  int rc = 0;
  for (size_t i = 0; i < total; i++) {
    const struct reg_entry *e = registry_at(r, i);
    if (!done[i] && is_kind(e, "process.service") && auto_start(e)) {
      log_error("%s:%d: %s: its lifecycle.requires form a cycle or name a service that does not start",
                e->file, e->line, e->id);
      rc = -1;
    }
  }
  free(placed);
  free(done);
  return rc;
}

/* The process host for coroutines a function's calls leave running: pool.host, else the
** first process host started. */
struct sched *app_background_host(struct app *a, const struct reg_entry *fn) {
  return rt_background_sched(a->rt, val_str(val_path(fn->data, "pool.host"), NULL));
}

static struct funcpool *pool_for(struct app *a, const char *func) {
  for (size_t i = 0; i < a->npools; i++)
    if (strcmp(a->pools[i].func, func) == 0) return a->pools[i].fp;
  struct codeset *cs = rt_code(a->rt);
  const struct code *c = codeset_get(cs, func);
  codeset_unref(cs);
  if (!c) return NULL;
  size_t max = (size_t)val_int(val_path(c->e->data, "pool.max_size"), 100);
  struct funcpool *fp = funcpool_new(a->rt, c, app_background_host(a, c->e), max);
  a->pools = xrealloc(a->pools, (a->npools + 1) * sizeof *a->pools);
  a->pools[a->npools++] = (struct pool_ent){c->e->id, fp};
  return fp;
}

/* Builds a service's routes from gen and gives every route its handler: the function's
** pool (from get) or the job queue of a queue.http entry. NULL with problems logged. */
struct routes *app_build_routes(struct app *a, struct registry *gen, const char *service,
                                pool_getter get, void *ctx) {
  struct diag d;
  diag_init(&d);
  struct routes *rs = routes_build(gen, service, &d);
  for (size_t i = 0; i < d.n; i++) log_error("%s", d.items[i]);
  diag_free(&d);
  for (size_t i = 0; rs && i < routes_count(rs); i++) {
    struct route *r = routes_at(rs, i);
    const char *qid = val_str(val_get(r->endpoint->data, "queue"), "");
    if (r->action != RA_FUNCTION ? !(r->handler = rt_find_queue(a->rt, qid))
                                 : !(r->handler = get(ctx, r->func))) {
      log_error("%s:%d: %s: %s is not a %s entry", r->endpoint->file, r->endpoint->line, r->endpoint->id,
                r->action != RA_FUNCTION ? qid : r->func, r->action != RA_FUNCTION ? "queue.queue" : "function.lua");
      routes_free(rs);
      rs = NULL;
    } else if (r->action != RA_FUNCTION) {
      r->serve = jobapi_serve;
    }
  }
  return rs;
}

struct funcpool *app_pool(void *ctx, const char *func) { return pool_for(ctx, func); }

/* first: the table the server started with when the app owns it (freed by app_free), or NULL. */
void app_add_server(struct app *a, const char *id, struct http_server *s, struct routes *first) {
  a->servers = xrealloc(a->servers, (a->nservers + 1) * sizeof *a->servers);
  a->routes = xrealloc(a->routes, (a->nservers + 1) * sizeof *a->routes);
  a->server_ids = xrealloc(a->server_ids, (a->nservers + 1) * sizeof *a->server_ids);
  a->servers[a->nservers] = s;
  a->server_ids[a->nservers] = xstrdup(id);
  a->routes[a->nservers++] = first;
}

int app_start_http(struct app *a, const struct reg_entry *e) {
  struct routes *rs = app_build_routes(a, a->gen, e->id, app_pool, a);
  if (!rs) return -1;
  if (!a->mg_ready) { mg_init_library(0); a->mg_ready = 1; }
  char err[256];
  struct http_server *s = http_start(a->rt, e, rs, a->rt->project_dir, err, sizeof err);
  if (!s) { log_error("%s", err); routes_free(rs); return -1; }
  app_add_server(a, e->id, s, rs);
  return 0;
}
