/*
** app_impl.h — the insides of a running host, shared by its three files. Not for other
** modules (app.h is the public API).
**   app.c         the order things happen in: new, start, -x exec, wait, stop, free
**   app_build.c   the parts made from a generation: process hosts, terminal hosts, services,
**                 function pools, route tables, HTTP servers (consumers through jobs.h)
**   app_reload.c  applying a new generation: app_reload, replacing servers, swapping
**                 consumer pools, starting what is new, the reload tick
**   app_registry.c the registry service: change sets applied on the main thread, the
**                 overlay file reloads replay, the kept versions
** Threads: everything here runs on the main thread, except the -x exit watcher
** (exec_exited in app.c), which runs where the process ends (the terminal host's worker)
** and writes exit_code and exec_out before it sets exec_done; the main thread reads them
** only after seeing exec_done.
** The objects the fields point to (rt, servers, pools, jobs, supervisor) are used by their
** own threads under their own contracts (see their headers).
*/
#ifndef TASKHOST_APP_IMPL_H
#define TASKHOST_APP_IMPL_H

#include "app.h"
#include "http/httpc.h"
#include "http/logship.h"
#include "registry/registry.h"
#include "value/val.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fcall;
struct funcpool;
struct http_server;
struct httpstats;
struct jobs;
struct routes;
struct sched;
struct supervisor;
struct term;
struct app_registry;
struct dashboard;

/* A reload's outcome: wall clock ns (0: none yet), the version adopted (0 when refused),
** why it ran, and a refused one's diagnostics (file:line ..., one a line; NULL if none). */
struct reload_note { int64_t at_ns; uint64_t version; size_t entries; char *why, *problems; };

/* The pool of one function.lua entry; func is the entry's id (not owned). */
struct pool_ent { const char *func; struct funcpool *fp; };

struct app {
  struct rt *rt;              /* the runtime: made by app_new, freed by app_free */
  struct registry *gen;       /* the current generation (app_reload replaces it) */
  struct supervisor *sup;     /* process.service supervision */
  struct term **terms;        /* terminal hosts started, and their entry ids */
  char **term_ids;
  size_t nterms;
  struct term *exec_term;     /* the terminal host -x runs on, or NULL */
  int64_t shutdown_timeout;   /* ns; from the project, set once by app_new */
  _Atomic int exec_done;      /* set by the -x exit watcher (terminal worker thread) */
  int restore_level;          /* log level to restore after a hide_logs terminal process, or -1 */
  struct http_server **servers;   /* one slot per http.service started; NULL once stopped */
  struct routes **routes;     /* each server's first table (later ones belong to reloads) */
  char **server_ids;
  size_t nservers;
  app_reloader reloader;      /* builds the project again (hot reload), or NULL */
  void *reloader_ctx;
  struct watch *watch;        /* source tree watcher, or NULL (--no-watch) */
  struct registry *adopted;   /* the generation the last reload adopted (a reference) */
  struct pool_ent *pools;     /* the first generation's pools (reloads keep theirs in pool sets) */
  size_t npools;
  struct jobs *jobs;          /* queues and consumers */
  struct httpc *httpc;        /* the http_client engine (rt service "http_client"); stopped last */
  struct httpc_limits httpc_limits;   /* from taskhost.yaml's http_client: */
  struct fcall *fcall;        /* the funcs engine (rt service "funcs"); stopped after the hosts drain */
  int funcs_max_threads, funcs_max_queue;   /* from taskhost.yaml's funcs: (0 = defaults) */
  int mg_ready;               /* mg_init_library done (mg_exit_library in app_free) */
  int exit_code;              /* written by the -x exit watcher before exec_done */
  char *exec_out;             /* the -x process's output text, or NULL; same */
  struct app_registry *registry;   /* the registry service (rt service "registry") */
  struct metrics *metrics;    /* the series registry (rt service "metrics"), app_metrics.c */
  struct admin *admin;        /* the admin listener, or NULL (no admin.addr) */
  struct httpstats *httpstats;  /* every http.service's request counters (rt service "http_stats") */
  _Atomic uint64_t reloads_ok, reloads_refused;   /* app_reload_event (main thread); metrics read */
  char *admin_addr, *admin_token;   /* copies of the project's admin: settings */
  long metrics_limits[3];     /* the project's metrics: names, series per metric, series */
  struct dbset *dbs;          /* the sql module's databases (rt service "sql"), app_db.c */
  struct logship_opts logship_opts;   /* log.clickhouse: (url NULL = off); strings are the project's */
  struct logship *logship;    /* the ClickHouse shipper: started first, stopped last (app_free) */
  /* The last adopted and the last refused reload, for the dashboard (app_reload_event on the
  ** main thread writes them under notes_lock; the dashboard's threads copy them under it). */
  pthread_mutex_t notes_lock;
  struct reload_note last_reload, last_refused;
  struct dashboard *dash;     /* the dashboard on the admin listener, or NULL (app_metrics.c) */
};

/* Entry helpers (no linkage, so unprefixed). */
static inline int auto_start(const struct reg_entry *e) {
  return val_bool(val_path(e->data, "lifecycle.auto_start"), 0);
}

static inline int is_kind(const struct reg_entry *e, const char *kind) { return strcmp(e->kind, kind) == 0; }

/* ---- app_build.c: the parts made from a generation --------------------------------- */

int app_start_process_host(struct app *a, const struct reg_entry *e);    /* 0 / -1 */
int app_start_terminal_host(struct app *a, const struct reg_entry *e);   /* 0 / -1 */
/* Adds auto_start services to the supervisor in dependency order. 0 / -1 (logged). */
int app_add_services(struct app *a);
/* The process host for coroutines a function's calls leave running: pool.host, else the
** first process host started (NULL if none). */
struct sched *app_background_host(struct app *a, const struct reg_entry *fn);
/* A pool_getter over the app's own pools (ctx is the app), made on first use. */
struct funcpool *app_pool(void *ctx, const char *func);
typedef struct funcpool *(*pool_getter)(void *ctx, const char *func);
/* Builds a service's routes from gen and gives every route its handler: the function's
** pool (from get) or the job queue of a queue.http entry. NULL with problems logged. */
struct routes *app_build_routes(struct app *a, struct registry *gen, const char *service,
                                pool_getter get, void *ctx);
/* Records a started server. first: the table the server started with when the app owns it
** (freed by app_free), or NULL. */
void app_add_server(struct app *a, const char *id, struct http_server *s, struct routes *first);
/* Starts an http.service of a->gen with its routes. 0 / -1 (logged). */
int app_start_http(struct app *a, const struct reg_entry *e);

/* ---- app_metrics.c: the series registry and the admin listener ---------------------- */

void app_metrics_init(struct app *a);    /* app_new: the registry and its collectors */
int app_metrics_start(struct app *a);    /* app_start: the rt service, the listener. 0 / -1 */
void app_metrics_stop(struct app *a);    /* app_stop, first: the listener */
void app_metrics_free(struct app *a);    /* app_free */

/* ---- app_db.c: the sql module's databases ---------------------------------------- */

int app_db_start(struct app *a);                        /* app_start. 0 / -1 (logged) */
void app_db_reload(struct app *a, struct registry *gen); /* changed entries get new pools */
void app_db_free(struct app *a);                        /* app_free, after every Lua state */

/* ---- app_reload.c: applying a new generation --------------------------------------- */

/* Builds the project again and applies it; on any problem the running code stays. */
void app_reload_project(struct app *a, const char *why);
/* A "taskhost.registry" event: kind "reload" (path: reg's version) when reg is set, else
** "reload.refused"; why says what caused it (events.h). Also counts it and keeps it as
** the last (refused) reload, with problems (a refused one's diagnostics, or NULL). */
void app_reload_event(struct app *a, const struct registry *reg, const char *why, const char *problems);
/* Once a tick: a finished burst of file changes reloads; retired route tables are freed. */
void app_tick_reload(struct app *a);

/* ---- app_registry.c: the registry service --------------------------------------------- */

/* Registers the service (before any Lua runs) and records a->gen as the first version. */
void app_registry_init(struct app *a, const char *srcdir);
/* Once a tick: applies the queued change sets, one at a time. */
void app_registry_tick(struct app *a);
/* A file reload built *reg and *code: rebuilds them with the runtime changes replayed over them
** (ops the files made impossible are dropped, with a warning). 0, or -1 (logged: refuse). */
int app_registry_overlay(struct app *a, struct registry **reg, struct codeset **code);
/* The file reload's generation was adopted: forget the dropped ops, record the version. */
void app_registry_adopted(struct app *a, struct registry *reg);
/* Refuses new change sets and fails the queued ones (UNAVAILABLE). */
void app_registry_stop(struct app *a);
void app_registry_free(struct app *a);

#endif
