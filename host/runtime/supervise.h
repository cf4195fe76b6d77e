/*
** supervise.h — process.service supervision (wippy-compat.md §2.3, §4.8): start each
** auto_start service on its host, restart it after a failure with exponential backoff
** (initial_delay × backoff_factor^(attempt−1), capped at max_delay, ±jitter; the attempt
** count resets after stable_threshold of uptime; max_attempts 0 = unlimited), never restart
** after a normal return, and on shutdown stop services in reverse start order: CANCEL
** ("service stopping"), wait stop_timeout, then terminate.
** Threads: exit callbacks run on workers, restarts on the timer thread; one mutex guards all.
*/
#ifndef TASKHOST_SUPERVISE_H
#define TASKHOST_SUPERVISE_H

#include <stdint.h>

struct rt;
struct reg_entry;
struct supervisor;

struct supervisor *sup_new(struct rt *rt);
/* Adds a process.service entry; starts nothing yet. Returns 0, -1 with a logged error. */
int sup_add(struct supervisor *s, const struct reg_entry *e);
void sup_start_all(struct supervisor *s);
void sup_stop_all(struct supervisor *s);
/* Hot reload to generation gen (old: the one the services were started from): services gone
** from gen (or no longer auto-started) stop; changed ones (their entry, process code, host or
** imports: registry_entry_changed) stop through CANCEL and start again on the new code; new
** ones start; unchanged ones keep running untouched. Blocks while services stop. */
struct registry;
void sup_reload(struct supervisor *s, const struct registry *old, const struct registry *gen);
void sup_free(struct supervisor *s);

/* A service as the dashboard shows it (app/dashboard.c); strings valid during the visit.
** state: "stopped", "running", "backoff" (waiting to restart), "exited" (returned normally)
** or "failed" (gave up, or could not start). restarts: restarts scheduled after failures since sup_add;
** last_error: the last failure's message ("" for none), last_error_at its wall clock ns. */
struct sup_view {
  const char *id, *process, *host, *state;
  int attempt;
  uint64_t restarts, pid;
  const char *last_error;
  int64_t last_error_at;
};
/* Calls fn for every service, in start order, under the supervisor's lock (fn must not call
** into s). Any thread. */
void sup_each(struct supervisor *s, void (*fn)(void *ud, const struct sup_view *v), void *ud);

/* Backoff delay for the given attempt (1-based) before jitter; exposed for tests. */
int64_t sup_backoff_ns(int64_t initial, double factor, int64_t max, int attempt);

#endif
