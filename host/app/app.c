/*
** app.c — see app.h: the order things happen in (new, start, -x, wait, stop, free). The parts
** a generation is made into are in app_build.c, hot reload in app_reload.c; app_impl.h has
** the struct and what the three share. Main thread only (see app_impl.h for -x's exit watcher).
*/
#include "app_impl.h"
#include "registry/code.h"
#include "runtime/events.h"
#include "runtime/funcpool.h"
#include "http/http.h"
#include "http/httpc.h"
#include "runtime/fcall.h"
#include "jobs/jobs.h"
#include "lua/linit.h"
#include "base/log.h"
#include "runtime/msg.h"
#include "runtime/proc.h"
#include "registry/project.h"
#include "registry/registry.h"
#include "http/router.h"
#include "runtime/rt.h"
#include "runtime/scheduler.h"
#include "value/json.h"
#include "value/seri.h"
#include "runtime/supervise.h"
#include "runtime/term.h"
#include "base/timer.h"
#include "base/util.h"

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

/* rt->proc_exited: a "taskhost.process" "exit" event (path: the pid) when anyone listens. */
static void proc_exited(struct rt *rt, const struct proc *p, const struct exit_info *info) {
  if (!evbus_active(rt->events)) return;
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "{\"pid\":");
  json_put_string(&b, p->pidstr, strlen(p->pidstr));
  buf_adds(&b, ",\"entry\":");
  json_put_string(&b, p->code->e->id, strlen(p->code->e->id));
  buf_printf(&b, ",\"failed\":%s,\"canceled\":%s", info->failed ? "true" : "false",
             info->canceled ? "true" : "false");
  if (info->failed && info->error) {
    buf_adds(&b, ",\"error\":");
    json_put_string(&b, info->error, strlen(info->error));
  }
  buf_addc(&b, '}');
  buf_addc(&b, '\0');
  evbus_host(rt->events, "taskhost.process", "exit", p->pidstr, b.data);
  buf_free(&b);
}

struct app *app_new(const struct project *proj, struct registry *gen, struct codeset *code) {
  struct app *a = xcalloc(1, sizeof *a);
  a->rt = rt_new(proj->dir);
  a->rt->libs = linit_libs();
  a->rt->proc_mem_limit = (size_t)proj->process_memory;
  a->rt->events = evbus_new(a->rt);
  a->rt->proc_exited = proc_exited;
  a->gen = gen;
  a->rt->timers = timers_new();
  rt_set_generation(a->rt, registry_ref(gen), codeset_ref(code));
  a->sup = sup_new(a->rt);
  app_registry_init(a, proj->src);
  a->shutdown_timeout = proj->shutdown_timeout;
  a->restore_level = -1;
  a->httpc_limits = (struct httpc_limits){proj->http_max_connections_per_host,
                                          proj->http_max_connections, proj->http_max_in_flight};
  a->admin_addr = proj->admin_addr ? xstrdup(proj->admin_addr) : NULL;
  a->admin_token = proj->admin_token ? xstrdup(proj->admin_token) : NULL;
  long lims[] = {proj->metrics_max_names, proj->metrics_max_series_per_metric, proj->metrics_max_series};
  memcpy(a->metrics_limits, lims, sizeof lims);
  app_metrics_init(a);
  a->funcs_max_threads = (int)proj->funcs_max_threads;
  a->funcs_max_queue = (int)proj->funcs_max_queue;
  const struct log_clickhouse *ch = &proj->clickhouse;
  a->logship_opts = (struct logship_opts){
    .url = ch->url, .database = ch->database, .table = ch->table, .user = ch->user,
    .password = ch->password, .batch_size = ch->batch_size, .batch_interval = ch->batch_interval,
    .connection_attempts = ch->connection_attempts, .try_connection_period = ch->try_connection_period,
    .buffer = ch->buffer, .level = ch->level_set ? ch->level : LOG_DEBUG,
    .flush_timeout = proj->shutdown_timeout < 5 * NS_PER_S ? proj->shutdown_timeout : 5 * NS_PER_S};
  return a;
}

int app_start(struct app *a, const char *exec_host) {
  char err[512];
  if (a->logship_opts.url && !(a->logship = logship_start(&a->logship_opts, err, sizeof err))) {
    log_error("%s", err);
    return -1;
  }
  if (timers_start(a->rt->timers) != 0) return -1;
  if (!(a->httpc = httpc_new(&a->httpc_limits, err, sizeof err))) { log_error("%s", err); return -1; }
  rt_add_service(a->rt, "http_client", a->httpc);
  if (app_db_start(a) != 0) return -1;
  if (app_metrics_start(a) != 0) return -1;
  if (!(a->fcall = fcall_new(a->rt, a->funcs_max_threads, a->funcs_max_queue))) {
    log_error("funcs: cannot start its watchdog");
    return -1;
  }
  rt_add_service(a->rt, "funcs", a->fcall);
  if (!(a->jobs = jobs_open(a->rt, a->gen, err, sizeof err))) { log_error("%s", err); return -1; }
  for (size_t i = 0; i < registry_count(a->gen); i++) {
    const struct reg_entry *e = registry_at(a->gen, i);
    int wanted = auto_start(e) || (exec_host && strcmp(exec_host, e->id) == 0);
    if (wanted && is_kind(e, "process.host") && app_start_process_host(a, e) != 0) return -1;
    if (wanted && is_kind(e, "terminal.host") && app_start_terminal_host(a, e) != 0) return -1;
  }
  if (jobs_start_consumers(a->jobs, a->gen, app_pool, a, NULL) != 0) return -1;
  if (app_add_services(a) != 0) return -1;
  sup_start_all(a->sup);
  for (size_t i = 0; i < registry_count(a->gen); i++) {
    const struct reg_entry *e = registry_at(a->gen, i);
    if (is_kind(e, "http.service") && auto_start(e) && app_start_http(a, e) != 0) return -1;
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

int app_wait(struct app *a) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  struct timespec tick = {0, 10 * 1000 * 1000};
  for (;;) {
    int sig = sigtimedwait(&set, NULL, &tick);
    if (sig == SIGHUP) app_reload_project(a, "SIGHUP");
    if (sig != SIGINT && sig != SIGTERM) app_tick_reload(a);   /* no new reload once stopping */
    if (sig == SIGINT || sig == SIGTERM) {
      log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
      return a->exec_term ? 130 : 0;
    }
    int exit_req = atomic_load(&a->rt->exit_request);
    if (exit_req) {                      /* system.exit: checked first, the caller may end next */
      if (a->restore_level >= 0) log_set_level((enum log_level)a->restore_level);
      log_info("system.exit(%d): shutting down", exit_req - 1);
      return exit_req - 1;
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
  app_registry_stop(a);                          /* no change set applies while stopping */
  app_metrics_stop(a);                           /* its collectors read the hosts freed below */
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
  fcall_free(a->fcall);                          /* no caller is left: cancels what still runs */
  a->fcall = NULL;
  for (size_t i = 0; i < a->rt->nscheds; i++)
    if (!a->rt->scheds[i].terminal) sched_free(a->rt->scheds[i].s);
  for (size_t i = 0; i < a->nterms; i++) { term_free(a->terms[i]); a->terms[i] = NULL; }
  timers_free(a->rt->timers);
  a->rt->timers = NULL;
  httpc_free(a->httpc);                          /* no caller is left: aborts what is in flight */
  a->httpc = NULL;
  a->rt->nservices = 0;
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
  app_registry_free(a);
  jobs_free(a->jobs);
  for (size_t i = 0; i < a->npools; i++) funcpool_free(a->pools[i].fp);
  free(a->pools);
  if (a->mg_ready) mg_exit_library();
  sup_free(a->sup);
  for (size_t i = 0; i < a->nterms; i++) { if (a->terms[i]) term_free(a->terms[i]); free(a->term_ids[i]); }
  free(a->terms);
  free(a->term_ids);
  free(a->exec_out);
  app_metrics_free(a);
  if (a->rt->timers) timers_free(a->rt->timers);    /* never started (app_stop frees them) */
  httpc_free(a->httpc);                               /* likewise */
  app_db_free(a);                                     /* every Lua state is closed */
  evbus_free(a->rt->events);                          /* every process has ended */
  fcall_free(a->fcall);
  rt_free(a->rt);
  logship_stop(a->logship);                           /* last: every shutdown line is in */
  free(a);
}
