/*
** app.c — see app.h.
*/
#include "app.h"
#include "code.h"
#include "funcpool.h"
#include "http.h"
#include "jobs.h"
#include "jobrun.h"
#include "watch.h"
#include "router.h"
#include "log.h"
#include "msg.h"
#include "proc.h"
#include "project.h"
#include "registry.h"
#include "rt.h"
#include "scheduler.h"
#include "seri.h"
#include "supervise.h"
#include "term.h"
#include "timer.h"
#include "util.h"

#include <civetweb.h>
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct app {
  struct rt *rt;
  struct registry *gen;
  struct supervisor *sup;
  struct term **terms;
  char **term_ids;
  size_t nterms;
  struct term *exec_term;
  int64_t shutdown_timeout;
  _Atomic int exec_done;
  int restore_level;          /* log level to restore after a hide_logs terminal process, or -1 */
  struct http_server **servers;
  struct routes **routes;     /* each server's first table (later ones belong to reloads) */
  char **server_ids;
  size_t nservers;
  app_reloader reloader;      /* builds the project again (hot reload), or NULL */
  void *reloader_ctx;
  struct watch *watch;        /* source tree watcher, or NULL (--no-watch) */
  struct registry *adopted;   /* the generation the last reload adopted (a reference) */
  struct pool_ent { const char *func; struct funcpool *fp; } *pools;
  size_t npools;
  struct jobs *jobs;
  int mg_ready;
  int exit_code;
  char *exec_out;
};

static int auto_start(const struct reg_entry *e) {
  return val_bool(val_path(e->data, "lifecycle.auto_start"), 0);
}

static int is_kind(const struct reg_entry *e, const char *kind) { return strcmp(e->kind, kind) == 0; }

struct app *app_new(const struct project *proj, struct registry *gen, struct codeset *code) {
  struct app *a = xcalloc(1, sizeof *a);
  a->rt = rt_new(proj->dir);
  a->rt->proc_mem_limit = (size_t)proj->process_memory;
  a->gen = gen;
  a->rt->timers = timers_new();
  rt_set_generation(a->rt, registry_ref(gen), codeset_ref(code));
  a->sup = sup_new(a->rt);
  a->shutdown_timeout = proj->shutdown_timeout;
  a->restore_level = -1;
  return a;
}

static int start_process_host(struct app *a, const struct reg_entry *e) {
  int workers = (int)val_int(val_path(e->data, "host.workers"), 0);
  struct sched *s = sched_new(a->rt, e->id, workers);
  if (sched_start(s) != 0) return -1;
  rt_add_sched(a->rt, e->id, s, 0);
  log_debug("process host %s started with %d workers", e->id, sched_workers(s));
  return 0;
}

static int start_terminal_host(struct app *a, const struct reg_entry *e) {
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
static int add_services(struct app *a) {
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
static struct sched *background_host(struct app *a, const struct reg_entry *fn) {
  const char *id = val_str(val_path(fn->data, "pool.host"), NULL);
  if (id) return rt_find_sched(a->rt, id);
  for (size_t i = 0; i < a->rt->nscheds; i++)
    if (!a->rt->scheds[i].terminal) return a->rt->scheds[i].s;
  return NULL;
}

static struct funcpool *pool_for(struct app *a, const char *func) {
  for (size_t i = 0; i < a->npools; i++)
    if (strcmp(a->pools[i].func, func) == 0) return a->pools[i].fp;
  struct codeset *cs = rt_code(a->rt);
  const struct code *c = codeset_get(cs, func);
  codeset_unref(cs);
  if (!c) return NULL;
  size_t max = (size_t)val_int(val_path(c->e->data, "pool.max_size"), 100);
  struct funcpool *fp = funcpool_new(a->rt, c, background_host(a, c->e), max);
  a->pools = xrealloc(a->pools, (a->npools + 1) * sizeof *a->pools);
  a->pools[a->npools++] = (struct pool_ent){c->e->id, fp};
  return fp;
}

typedef struct funcpool *(*pool_getter)(void *ctx, const char *func);

/* Builds a service's routes from gen and gives every route its handler: the function's
** pool (from get) or the job queue of a queue.http entry. NULL with problems logged. */
static struct routes *build_routes(struct app *a, struct registry *gen, const char *service,
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
    }
  }
  return rs;
}

static struct funcpool *app_pool(void *ctx, const char *func) { return pool_for(ctx, func); }

/* first: the table the server started with when the app owns it (freed by app_free), or NULL. */
static void add_server(struct app *a, const char *id, struct http_server *s, struct routes *first) {
  a->servers = xrealloc(a->servers, (a->nservers + 1) * sizeof *a->servers);
  a->routes = xrealloc(a->routes, (a->nservers + 1) * sizeof *a->routes);
  a->server_ids = xrealloc(a->server_ids, (a->nservers + 1) * sizeof *a->server_ids);
  a->servers[a->nservers] = s;
  a->server_ids[a->nservers] = xstrdup(id);
  a->routes[a->nservers++] = first;
}

static int start_http(struct app *a, const struct reg_entry *e) {
  struct routes *rs = build_routes(a, a->gen, e->id, app_pool, a);
  if (!rs) return -1;
  if (!a->mg_ready) { mg_init_library(0); a->mg_ready = 1; }
  char err[256];
  struct http_server *s = http_start(a->rt, e, rs, a->rt->project_dir, err, sizeof err);
  if (!s) { log_error("%s", err); routes_free(rs); return -1; }
  add_server(a, e->id, s, rs);
  return 0;
}

/* ---- hot reload ------------------------------------------------------------------- */

/* The function pools of one reloaded generation, shared by the route tables built from it;
** it holds that generation's registry and code until the last table is released. Used on
** the main thread only (tables are released by http_swap_routes/http_reclaim/http_stop). */
struct pool_set {
  struct app *a;
  struct registry *reg;
  struct codeset *code;
  struct pool_ent *v;
  size_t n;
  int refs;
};

struct table { struct routes *rs; struct pool_set *ps; };

static struct funcpool *set_pool(void *ctx, const char *func) {
  struct pool_set *ps = ctx;
  for (size_t i = 0; i < ps->n; i++)
    if (strcmp(ps->v[i].func, func) == 0) return ps->v[i].fp;
  const struct code *c = codeset_get(ps->code, func);
  if (!c) return NULL;
  size_t max = (size_t)val_int(val_path(c->e->data, "pool.max_size"), 100);
  struct funcpool *fp = funcpool_new(ps->a->rt, c, background_host(ps->a, c->e), max);
  ps->v = xrealloc(ps->v, (ps->n + 1) * sizeof *ps->v);
  ps->v[ps->n++] = (struct pool_ent){c->e->id, fp};
  return fp;
}

static void set_unref(struct pool_set *ps) {
  if (--ps->refs > 0) return;
  for (size_t i = 0; i < ps->n; i++) {
    funcpool_quiet(ps->v[i].fp);
    funcpool_free(ps->v[i].fp);
  }
  free(ps->v);
  codeset_unref(ps->code);
  registry_unref(ps->reg);
  free(ps);
}

static void release_table(void *ud) {
  struct table *t = ud;
  routes_free(t->rs);
  set_unref(t->ps);
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
static void start_new_servers(struct app *a, struct registry *gen, struct pool_set *ps) {
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (strcmp(e->kind, "http.service") != 0 || !auto_start(e)) continue;
    int known = 0;
    for (size_t j = 0; j < a->nservers && !known; j++) known = a->servers[j] && strcmp(a->server_ids[j], e->id) == 0;
    if (known) continue;
    struct routes *rs = build_routes(a, gen, e->id, set_pool, ps);
    char err[256];
    struct http_server *s = rs ? http_start(a->rt, e, rs, a->rt->project_dir, err, sizeof err) : NULL;
    if (!s) {
      if (rs) log_error("reload: %s", err);
      routes_free(rs);
      continue;
    }
    struct table *t = xmalloc(sizeof *t);
    *t = (struct table){rs, ps};
    ps->refs++;
    http_own_routes(s, release_table, t);
    add_server(a, e->id, s, NULL);
  }
}

static void release_pool_ref(void *ud) { set_unref(ud); }

/* Consumers whose entry or function (code, imports) changed run their next jobs on the new
** code; jobs running finish on the old. Other queue and consumer changes need a restart. */
static void swap_consumer_pools(struct app *a, struct registry *old, struct registry *reg,
                                struct pool_set *ps) {
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
    ps->refs++;
    consumer_swap_pool(c, fp, release_pool_ref, ps);
    log_info("reload: %s runs its next jobs on the new code", e->id);
  }
}

/* A consumer a reload started holds a reference to the pool set its pool came from. */
static void adopt_consumer(void *ud, struct consumer *c) {
  struct pool_set *ps = ud;
  ps->refs++;
  consumer_own_pool(c, release_pool_ref, ps);
}

static struct funcpool *set_pool_cb(void *ud, const char *func) { return set_pool(ud, func); }

/* Process hosts that are new in gen start (their services may need them). Hosts, queues and
** consumers gone from gen keep running until the next restart (logged). */
static void start_new_hosts(struct app *a, struct registry *old, struct registry *gen) {
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (strcmp(e->kind, "process.host") == 0 && auto_start(e) && !rt_find_sched(a->rt, e->id) &&
        start_process_host(a, e) == 0)
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
  struct pool_set *ps = xcalloc(1, sizeof *ps);
  *ps = (struct pool_set){a, registry_ref(reg), codeset_ref(code), NULL, 0, 1};
  struct routes **tables = xcalloc(a->nservers + 1, sizeof *tables);
  int ok = 1;
  for (size_t i = 0; i < a->nservers && ok; i++) {
    const struct reg_entry *e = a->servers[i] ? registry_get(reg, a->server_ids[i]) : NULL;
    if (e && strcmp(e->kind, "http.service") == 0 && auto_start(e))
      ok = (tables[i] = build_routes(a, reg, a->server_ids[i], set_pool, ps)) != NULL;
  }
  if (!ok) {
    for (size_t i = 0; i < a->nservers; i++) routes_free(tables[i]);
    free(tables);
    set_unref(ps);
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
    ps->refs++;
    if (registry_entry_changed(old, reg, a->server_ids[i]))
      replace_server(a, i, registry_get(reg, a->server_ids[i]), tables[i], t);
    else
      http_swap_routes(a->servers[i], tables[i], release_table, t);
  }
  free(tables);
  start_new_servers(a, reg, ps);
  swap_consumer_pools(a, old, reg, ps);
  jobs_start_consumers(a->jobs, reg, set_pool_cb, ps, adopt_consumer);
  sup_reload(a->sup, old, reg);
  if (a->adopted) registry_unref(a->adopted);
  a->adopted = registry_ref(reg);
  a->gen = reg;
  registry_unref(old);
  set_unref(ps);                                  /* the tables hold it now */
  return 0;
}

void app_set_reloader(struct app *a, app_reloader fn, void *ctx, struct watch *w) {
  a->reloader = fn;
  a->reloader_ctx = ctx;
  a->watch = w;
}

/* Builds the project again and applies it; on any problem the running code stays. */
static void reload(struct app *a, const char *why) {
  if (!a->reloader) return;
  int64_t t0 = clock_mono_ns();
  struct registry *reg = NULL;
  struct codeset *code = NULL;
  if (a->reloader(a->reloader_ctx, &reg, &code) != 0 || app_reload(a, reg, code) != 0) {
    log_error("reload (%s) refused: the running code stays until the problem is fixed", why);
  } else {
    log_info("reloaded (%s): generation %llu, %zu entries, in %.1f ms", why,
             (unsigned long long)registry_version(reg), registry_count(reg),
             (double)(clock_mono_ns() - t0) / 1e6);
  }
  if (code) codeset_unref(code);
  if (reg) registry_unref(reg);
}

int app_start(struct app *a, const char *exec_host) {
  if (timers_start(a->rt->timers) != 0) return -1;
  char err[512];
  if (!(a->jobs = jobs_open(a->rt, a->gen, err, sizeof err))) { log_error("%s", err); return -1; }
  for (size_t i = 0; i < registry_count(a->gen); i++) {
    const struct reg_entry *e = registry_at(a->gen, i);
    int wanted = auto_start(e) || (exec_host && strcmp(exec_host, e->id) == 0);
    if (wanted && is_kind(e, "process.host") && start_process_host(a, e) != 0) return -1;
    if (wanted && is_kind(e, "terminal.host") && start_terminal_host(a, e) != 0) return -1;
  }
  if (jobs_start_consumers(a->jobs, a->gen, app_pool, a, NULL) != 0) return -1;
  if (add_services(a) != 0) return -1;
  sup_start_all(a->sup);
  for (size_t i = 0; i < registry_count(a->gen); i++) {
    const struct reg_entry *e = registry_at(a->gen, i);
    if (is_kind(e, "http.service") && auto_start(e) && start_http(a, e) != 0) return -1;
  }
  return 0;
}

/* An entry of `kind` named by the user as Wippy resolves it: an id ("ns:name") as given;
** else the entry whose meta.command.name is `name`; else the one entry called `name` in any
** namespace. Several candidates, or none, are an error naming them. */
static char *resolve_entry(const struct registry *gen, const char *name, const char *kind,
                           char *err, size_t errlen) {
  if (strchr(name, ':')) return xstrdup(name);
  const char *by_command = NULL, *by_name = NULL;
  int n_command = 0, n_name = 0;
  struct buf names;
  buf_init(&names);
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (!is_kind(e, kind)) continue;
    if (strcmp(val_str(val_path(e->meta, "command.name"), ""), name) == 0) { by_command = e->id; n_command++; }
    if (strcmp(e->name, name) == 0) {
      by_name = e->id;
      buf_printf(&names, "%s%s", n_name++ ? ", " : "", e->id);
    }
  }
  const char *found = n_command == 1 ? by_command : !n_command && n_name == 1 ? by_name : NULL;
  if (!found) {
    if (n_command > 1) snprintf(err, errlen, "%s: %d %s entries have meta.command.name %s; name one as NS:NAME", name, n_command, kind, name);
    else if (n_name > 1) snprintf(err, errlen, "%s is ambiguous: %s; name one as NS:NAME", name, names.data);
    else snprintf(err, errlen, "no %s entry named %s (give NS:NAME, a unique entry name or a meta.command.name)", kind, name);
  }
  buf_free(&names);
  return found ? xstrdup(found) : NULL;
}

int app_exec_target(struct app *a, const char *spec, char **host, char **entry, char *err, size_t errlen) {
  const char *slash = strchr(spec, '/');
  const char *ename = slash ? slash + 1 : spec;
  *host = *entry = NULL;
  if (!(*entry = resolve_entry(a->gen, ename, "process.lua", err, errlen))) return -1;
  if (slash) {
    char *hname = xstrndup(spec, (size_t)(slash - spec));
    *host = resolve_entry(a->gen, hname, "terminal.host", err, errlen);
    free(hname);
    return *host ? 0 : -1;
  }
  const char *only = NULL;
  int count = 0;
  for (size_t i = 0; i < registry_count(a->gen); i++) {
    const struct reg_entry *e = registry_at(a->gen, i);
    if (is_kind(e, "terminal.host")) { only = e->id; count++; }
  }
  if (count != 1) {
    snprintf(err, errlen, count ? "several terminal.host entries: say which, as -x HOST/%s"
                                : "no terminal.host entry in the registry to run %s on", *entry);
    return -1;
  }
  *host = xstrdup(only);
  return 0;
}

static void exec_exited(void *ud, const struct exit_info *info) {
  struct app *a = ud;
  a->exit_code = info->failed ? 1 : info->exit_code;
  if (info->failed) fprintf(stderr, "%s\n", info->error ? info->error : "failed");
  else if (info->out_text) a->exec_out = xstrdup(info->out_text);
  atomic_store(&a->exec_done, 1);
}

static int pack_args(char **args, int nargs, struct buf *out) {
  lua_State *L = luaL_newstate();
  for (int i = 0; i < nargs; i++) lua_pushstring(L, args[i]);
  char err[128];
  int rc = nargs ? seri_pack(L, 1, nargs, out, err, sizeof err) : 0;
  lua_close(L);
  return rc;
}

int app_exec(struct app *a, const char *host, const char *entry, char **args, int nargs,
             char *err, size_t errlen) {
  struct term *t = NULL;
  for (size_t i = 0; i < a->nterms; i++)
    if (strcmp(a->term_ids[i], host) == 0) t = a->terms[i];
  if (!t) { snprintf(err, errlen, "%s is not a terminal.host", host); return -1; }
  struct codeset *cs = rt_code(a->rt);
  const struct code *c = codeset_get(cs, entry);
  if (!c || strcmp(c->e->kind, "process.lua") != 0) {
    snprintf(err, errlen, "%s is not a process.lua entry", entry);
    codeset_unref(cs);
    return -1;
  }
  struct buf b;
  buf_init(&b);
  pack_args(args, nargs, &b);
  a->exec_term = t;
  const struct reg_entry *he = registry_get(a->gen, host);
  a->restore_level = -1;
  if (he && val_bool(val_get(he->data, "hide_logs"), 0)) {   /* quiet while it owns the terminal */
    for (int lv = LOG_DEBUG; lv < LOG_OFF && a->restore_level < 0; lv++)
      if (log_enabled((enum log_level)lv)) a->restore_level = lv;
    log_set_level(LOG_OFF);
  }
  uint64_t pid = term_run(t, c, b.data, b.len, exec_exited, a);
  buf_free(&b);
  codeset_unref(cs);
  if (!pid) { snprintf(err, errlen, "cannot start %s", entry); return -1; }
  return 0;
}

/* Once a tick: a finished burst of file changes reloads; retired route tables are freed. */
static void tick_reload(struct app *a) {
  char *first = NULL;
  size_t count = 0;
  if (a->watch && watch_take(a->watch, &first, &count)) {
    char why[512];
    snprintf(why, sizeof why, "%s changed%s", first ? first : "?", count > 1 ? " and more" : "");
    reload(a, why);
    free(first);
  }
  for (size_t i = 0; i < a->nservers; i++)
    if (a->servers[i]) http_reclaim(a->servers[i]);
  jobs_reclaim(a->jobs);
}

int app_wait(struct app *a) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  struct timespec tick = {0, 10 * 1000 * 1000};
  for (;;) {
    int sig = sigtimedwait(&set, NULL, &tick);
    if (sig == SIGHUP) reload(a, "SIGHUP");
    if (sig != SIGINT && sig != SIGTERM) tick_reload(a);   /* no new reload once stopping */
    if (sig == SIGINT || sig == SIGTERM) {
      log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
      return a->exec_term ? 130 : 0;
    }
    if (atomic_load(&a->exec_done)) {
      if (a->restore_level >= 0) log_set_level((enum log_level)a->restore_level);
      if (a->exec_out) { fputs(a->exec_out, stdout); fputc('\n', stdout); fflush(stdout); }
      return a->exit_code;
    }
  }
}

/* A second SIGINT/SIGTERM during shutdown ends the process at once. */
static void *second_signal(void *arg) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig;
  if (sigwait(&set, &sig) == 0) {
    static const char msg[] = "taskhost: second signal, exiting now\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {}
    _exit(130);
  }
  return NULL;
}

struct control { int kind; const char *reason; };

static void post_kind(struct proc *p, void *ud) {
  const struct control *c = ud;
  struct msg *m = msg_new(c->kind, 0, c->reason, strlen(c->reason), NULL, 0);
  m->at = clock_wall_ns();
  proc_deliver(p, m, NULL);
}

static void broadcast(struct rt *rt, struct sched *s, int kind, const char *reason) {
  struct control c = {kind, reason};
  rt_foreach_proc(rt, s, post_kind, &c);
}

/* CANCEL every process of s, wait, then terminate the rest. Returns 0 when s is empty. */
static int drain_sched(struct app *a, struct sched *s) {
  sched_close(s);
  if (sched_procs(s) == 0) return 0;
  broadcast(a->rt, s, MK_CANCEL, "scheduler shutdown");
  if (sched_wait_empty(s, clock_mono_ns() + a->shutdown_timeout) == 0) return 0;
  log_warn("%s: %ld processes did not stop; terminating them", sched_name(s), sched_procs(s));
  broadcast(a->rt, s, MK_KILL, "terminated");
  if (sched_wait_empty(s, clock_mono_ns() + 2 * NS_PER_S) == 0) return 0;
  log_error("%s: %ld processes are stuck (busy in Lua?); leaving them", sched_name(s), sched_procs(s));
  return -1;
}

void app_stop(struct app *a) {
  pthread_t th;
  if (pthread_create(&th, NULL, second_signal, NULL) == 0) pthread_detach(th);
  jobs_drain(a->jobs, a->shutdown_timeout);      /* HTTP still answers: publishing gets 503 */
  for (size_t i = 0; i < a->nservers; i++) {      /* stop accepting; in-flight requests end */
    http_stop(a->servers[i]);
    a->servers[i] = NULL;
  }
  for (size_t i = 0; i < a->npools; i++) funcpool_free(a->pools[i].fp);   /* idle states */
  a->npools = 0;
  for (size_t i = 0; i < a->nterms; i++) term_stop_reader(a->terms[i]);
  sup_stop_all(a->sup);
  int stuck = 0;
  for (size_t i = 0; i < a->rt->nscheds; i++)
    if (drain_sched(a, a->rt->scheds[i].s) != 0) stuck = 1;
  if (stuck) { fflush(stdout); _exit(a->exit_code ? a->exit_code : 1); }
  for (size_t i = 0; i < a->rt->nscheds; i++)
    if (!a->rt->scheds[i].terminal) sched_free(a->rt->scheds[i].s);
  for (size_t i = 0; i < a->nterms; i++) { term_free(a->terms[i]); a->terms[i] = NULL; }
  timers_free(a->rt->timers);
  a->rt->timers = NULL;
}

void app_free(struct app *a) {
  if (!a) return;
  for (size_t i = 0; i < a->nservers; i++) {
    if (a->servers[i]) http_stop(a->servers[i]);
    routes_free(a->routes[i]);
  }
  free(a->servers);
  free(a->routes);
  for (size_t i = 0; i < a->nservers; i++) free(a->server_ids[i]);
  free(a->server_ids);
  if (a->adopted) registry_unref(a->adopted);
  jobs_free(a->jobs);
  for (size_t i = 0; i < a->npools; i++) funcpool_free(a->pools[i].fp);
  free(a->pools);
  if (a->mg_ready) mg_exit_library();
  sup_free(a->sup);
  for (size_t i = 0; i < a->nterms; i++) { if (a->terms[i]) term_free(a->terms[i]); free(a->term_ids[i]); }
  free(a->terms);
  free(a->term_ids);
  free(a->exec_out);
  if (a->rt->timers) timers_free(a->rt->timers);    /* never started (app_stop frees them) */
  rt_free(a->rt);
  free(a);
}
