/*
** supervise.c — see supervise.h.
*/
#include "supervise.h"
#include "events.h"
#include "registry/code.h"
#include "base/log.h"
#include "msg.h"
#include "proc.h"
#include "registry/registry.h"
#include "rt.h"
#include "scheduler.h"
#include "value/json.h"
#include "value/seri.h"
#include "base/timer.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum svc_state { SVC_STOPPED, SVC_RUNNING, SVC_BACKOFF, SVC_EXITED, SVC_FAILED };

struct service {
  struct supervisor *sup;
  const struct reg_entry *e;
  const char *process_id, *host_id;
  struct buf args;             /* packed `input` */
  int64_t initial, max, stable, stop_timeout;
  double factor, jitter;
  int64_t max_attempts;
  int state, attempt;
  int halting;                 /* being stopped by a reload: its exit is not a failure */
  uint64_t pid;
  int64_t started_at;
  struct timer restart;
  uint64_t restarts;           /* failures seen (sup_each) */
  char last_error[256];        /* the last failure's message, "" for none */
  int64_t last_error_at;       /* its wall clock */
};

struct supervisor {
  struct rt *rt;
  pthread_mutex_t lock;
  pthread_cond_t cv;           /* signalled when a service's process exits */
  struct service **svcs;       /* in start order */
  size_t n;
  int stopping;
  unsigned seed;
};

static int64_t dur_field(const struct reg_entry *e, const char *path, int64_t dflt) {
  return val_duration_ns(val_path(e->data, path), dflt);
}

/* Packs the `input:` list as the process's arguments. */
static int pack_input(const struct reg_entry *e, struct buf *out) {
  const struct val *in = val_get(e->data, "input");
  size_t n = val_len(in);
  if (!n) return 0;
  lua_State *L = luaL_newstate();
  for (size_t i = 0; i < n; i++) val_push_lua(L, val_at(in, i));
  char err[200];
  int rc = seri_pack(L, 1, (int)n, out, err, sizeof err);
  if (rc) log_error("%s: input cannot be passed: %s", e->id, err);
  lua_close(L);
  return rc;
}

struct supervisor *sup_new(struct rt *rt) {
  struct supervisor *s = xcalloc(1, sizeof *s);
  s->rt = rt;
  s->seed = (unsigned)clock_mono_ns();
  pthread_mutex_init(&s->lock, NULL);
  cond_init_monotonic(&s->cv);
  return s;
}

/* (Re)reads a service's settings from its entry. 0, or -1 when its input cannot be packed. */
static int configure(struct service *v, const struct reg_entry *e) {
  v->e = e;
  v->process_id = val_str(val_get(e->data, "process"), "");
  v->host_id = val_str(val_get(e->data, "host"), "");
  v->initial = dur_field(e, "lifecycle.restart.initial_delay", NS_PER_S);
  v->max = dur_field(e, "lifecycle.restart.max_delay", 90 * NS_PER_S);
  v->stable = dur_field(e, "lifecycle.stable_threshold", 5 * NS_PER_S);
  v->stop_timeout = dur_field(e, "lifecycle.stop_timeout", 10 * NS_PER_S);
  v->factor = val_num(val_path(e->data, "lifecycle.restart.backoff_factor"), 2.0);
  v->jitter = val_num(val_path(e->data, "lifecycle.restart.jitter"), 0.1);
  v->max_attempts = val_int(val_path(e->data, "lifecycle.restart.max_attempts"), 0);
  buf_reset(&v->args);
  return pack_input(e, &v->args);
}

static struct service *new_service(struct supervisor *s, const struct reg_entry *e) {
  struct service *v = xcalloc(1, sizeof *v);
  v->sup = s;
  timer_init(&v->restart);
  buf_init(&v->args);
  if (configure(v, e) != 0) { buf_free(&v->args); free(v); return NULL; }
  return v;
}

int sup_add(struct supervisor *s, const struct reg_entry *e) {
  struct service *v = new_service(s, e);
  if (!v) return -1;
  s->svcs = xrealloc(s->svcs, (s->n + 1) * sizeof *s->svcs);
  s->svcs[s->n++] = v;
  return 0;
}

int64_t sup_backoff_ns(int64_t initial, double factor, int64_t max, int attempt) {
  double d = (double)initial * pow(factor, attempt > 0 ? attempt - 1 : 0);
  return d > (double)max ? max : (int64_t)d;
}

static void on_exit_cb(void *ud, const struct exit_info *info);

/* Spawns the service's process. Called with the lock held. */
static void start_locked(struct service *v) {
  struct rt *rt = v->sup->rt;
  struct sched *sh = rt_find_sched(rt, v->host_id);
  struct codeset *cs = rt_code(rt);
  const struct code *c = cs ? codeset_get(cs, v->process_id) : NULL;
  uint64_t pid = 0;
  if (sh && c) {
    struct spawn_opts o = {.args = v->args.data, .args_len = v->args.len, .on_exit = on_exit_cb,
                           .on_exit_ud = v};
    pid = proc_spawn(rt, sh, c, &o);
  }
  if (cs) codeset_unref(cs);
  if (!pid) {
    log_error("service %s: cannot start %s on %s", v->e->id, v->process_id, v->host_id);
    snprintf(v->last_error, sizeof v->last_error, "cannot start %s on %s", v->process_id, v->host_id);
    v->last_error_at = clock_wall_ns();
    v->state = SVC_FAILED;
    return;
  }
  v->pid = pid;
  v->state = SVC_RUNNING;
  v->started_at = clock_mono_ns();
  log_debug("service %s started as pid 0x%05llx", v->e->id, (unsigned long long)pid);
}

static void restart_cb(void *ud, uint64_t a, uint64_t b) {
  struct service *v = ud;
  pthread_mutex_lock(&v->sup->lock);
  if (!v->sup->stopping && v->state == SVC_BACKOFF) start_locked(v);
  pthread_mutex_unlock(&v->sup->lock);
}

static int64_t jittered(struct supervisor *s, int64_t ns, double jitter) {
  double r = (double)rand_r(&s->seed) / RAND_MAX;        /* [0, 1] */
  return (int64_t)((double)ns * (1.0 + jitter * (2.0 * r - 1.0)));
}

/* A "taskhost.service" event (path: the service id): "restart" or "failed" (gave up). */
static void service_event(struct service *v, const char *kind, const char *error, int64_t delay) {
  struct evbus *b = v->sup->rt->events;
  if (!evbus_active(b)) return;
  struct buf j;
  buf_init(&j);
  buf_printf(&j, "{\"attempt\":%d,\"delay_ms\":%lld,\"error\":", v->attempt, (long long)(delay / 1000000));
  json_put_string(&j, error, strlen(error));
  buf_addc(&j, '}');
  buf_addc(&j, '\0');
  evbus_host(b, "taskhost.service", kind, v->e->id, j.data);
  buf_free(&j);
}

static void schedule_restart_locked(struct service *v, const char *error) {
  snprintf(v->last_error, sizeof v->last_error, "%s", error);
  v->last_error_at = clock_wall_ns();
  if (clock_mono_ns() - v->started_at >= v->stable) v->attempt = 0;
  v->attempt++;
  if (v->max_attempts > 0 && v->attempt > v->max_attempts) {
    log_error("service %s failed: %s; giving up after %d attempts", v->e->id, error, v->attempt - 1);
    v->state = SVC_FAILED;
    service_event(v, "failed", error, 0);
    return;
  }
  int64_t delay = jittered(v->sup, sup_backoff_ns(v->initial, v->factor, v->max, v->attempt), v->jitter);
  v->restarts++;
  log_warn("service %s failed: %s; restarting in %.2fs (attempt %d)", v->e->id, error,
           (double)delay / 1e9, v->attempt);
  v->state = SVC_BACKOFF;
  timer_add(v->sup->rt->timers, &v->restart, clock_mono_ns() + delay, restart_cb, v, 0, 0);
  service_event(v, "restart", error, delay);
}

static void on_exit_cb(void *ud, const struct exit_info *info) {
  struct service *v = ud;
  struct supervisor *s = v->sup;
  pthread_mutex_lock(&s->lock);
  v->pid = 0;
  if (s->stopping || v->halting) v->state = SVC_STOPPED;
  else if (info->failed) schedule_restart_locked(v, info->error ? info->error : "error");
  else {
    v->state = SVC_EXITED;
    log_info("service %s exited", v->e->id);
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->lock);
}

void sup_start_all(struct supervisor *s) {
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->n; i++) start_locked(s->svcs[i]);
  pthread_mutex_unlock(&s->lock);
}

static int wait_exit_locked(struct supervisor *s, struct service *v, int64_t deadline) {
  struct timespec ts = ns_timespec(deadline);
  while (v->pid && pthread_cond_timedwait(&s->cv, &s->lock, &ts) == 0) {}
  return v->pid ? -1 : 0;
}

static void post_to(struct supervisor *s, uint64_t pid, int kind, const char *text) {
  struct msg *m = msg_new(kind, 0, text, strlen(text), NULL, 0);
  m->at = clock_wall_ns();
  proc_post(s->rt, pid, m, NULL);
}

static void stop_one_locked(struct supervisor *s, struct service *v) {
  timer_cancel(s->rt->timers, &v->restart);
  if (!v->pid) return;
  post_to(s, v->pid, MK_CANCEL, "service stopping");
  int64_t deadline = clock_mono_ns() + v->stop_timeout, patience = clock_mono_ns() + NS_PER_S;
  if (patience < deadline) {      /* say why shutdown waits: the service ignores its CANCEL */
    if (wait_exit_locked(s, v, patience) == 0) return;
    log_info("service %s has not stopped 1s after CANCEL; waiting up to its stop_timeout (%.3gs) "
             "before terminating it", v->e->id, (double)v->stop_timeout / NS_PER_S);
  }
  if (wait_exit_locked(s, v, deadline) == 0) return;
  log_warn("service %s did not stop within its stop_timeout; terminating it", v->e->id);
  post_to(s, v->pid, MK_KILL, "terminated");
  wait_exit_locked(s, v, clock_mono_ns() + 2 * NS_PER_S);
}

void sup_stop_all(struct supervisor *s) {
  pthread_mutex_lock(&s->lock);
  s->stopping = 1;
  for (size_t i = s->n; i-- > 0;) stop_one_locked(s, s->svcs[i]);
  pthread_mutex_unlock(&s->lock);
}

static int is_service(const struct reg_entry *e) {
  return e && strcmp(e->kind, "process.service") == 0 &&
         val_bool(val_path(e->data, "lifecycle.auto_start"), 0);
}

/* Stops v through its normal CANCEL path (lock held). 0 once its process is gone. */
static int halt_locked(struct supervisor *s, struct service *v) {
  v->halting = 1;
  stop_one_locked(s, v);
  v->halting = 0;
  return v->pid ? -1 : 0;
}

void sup_reload(struct supervisor *s, const struct registry *old, const struct registry *gen) {
  pthread_mutex_lock(&s->lock);
  size_t k = 0;
  for (size_t i = 0; i < s->n; i++) {
    struct service *v = s->svcs[i];
    const struct reg_entry *e = registry_get(gen, v->e->id);
    if (!is_service(e)) {
      log_info("service %s is gone from the registry: stopping it", v->e->id);
      if (halt_locked(s, v) != 0) { s->svcs[k++] = v; continue; }   /* stuck: keep the record */
      buf_free(&v->args);
      free(v);
      continue;
    }
    s->svcs[k++] = v;
    if (!registry_entry_changed(old, gen, v->e->id)) { configure(v, e); continue; }  /* untouched */
    log_info("service %s changed: restarting it", v->e->id);
    halt_locked(s, v);
    configure(v, e);
    v->attempt = 0;
    start_locked(v);
  }
  s->n = k;
  for (size_t i = 0; i < registry_count(gen); i++) {
    const struct reg_entry *e = registry_at(gen, i);
    if (!is_service(e)) continue;
    int known = 0;
    for (size_t j = 0; j < s->n && !known; j++) known = strcmp(s->svcs[j]->e->id, e->id) == 0;
    struct service *v = known ? NULL : new_service(s, e);
    if (!v) continue;
    s->svcs = xrealloc(s->svcs, (s->n + 1) * sizeof *s->svcs);
    s->svcs[s->n++] = v;
    log_info("service %s is new: starting it", e->id);
    start_locked(v);
  }
  pthread_mutex_unlock(&s->lock);
}

void sup_each(struct supervisor *s, void (*fn)(void *ud, const struct sup_view *v), void *ud) {
  static const char *const names[] = {"stopped", "running", "backoff", "exited", "failed"};
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->n; i++) {
    struct service *v = s->svcs[i];
    struct sup_view w = {v->e->id, v->process_id, v->host_id, names[v->state], v->attempt,
                         v->restarts, v->pid, v->last_error, v->last_error_at};
    fn(ud, &w);
  }
  pthread_mutex_unlock(&s->lock);
}

void sup_free(struct supervisor *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n; i++) {
    if (s->rt->timers) timer_cancel(s->rt->timers, &s->svcs[i]->restart);
    buf_free(&s->svcs[i]->args);
    free(s->svcs[i]);
  }
  free(s->svcs);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cv);
  free(s);
}
