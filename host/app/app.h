/*
** app.h — one running host: builds the runtime for a registry generation, starts process
** hosts, terminal hosts and services in order, runs a terminal process for `-x`, waits for a
** signal or for that process to end, and shuts everything down in reverse order.
** Owner: the main thread (signals are blocked in every other thread).
*/
#ifndef TASKHOST_APP_H
#define TASKHOST_APP_H

#include <stddef.h>
#include <stdint.h>

struct app;
struct registry;
struct codeset;

struct project;

struct app *app_new(const struct project *proj, struct registry *gen, struct codeset *code);
/* Starts hosts and auto_start services. `exec_host` names a terminal host to start even if
** it is not auto_start (NULL for none). 0 / -1 (logged). */
int app_start(struct app *a, const char *exec_host);
/* Resolves "HOST/ENTRY" or "ENTRY" (the only terminal.host) for -x. 0, or -1 with err. */
int app_exec_target(struct app *a, const char *spec, char **host, char **entry, char *err, size_t errlen);
/* Runs entry on the terminal host with string args. 0 / -1 (err). */
int app_exec(struct app *a, const char *host, const char *entry, char **args, int nargs,
             char *err, size_t errlen);
/* Blocks until SIGINT/SIGTERM or until the -x process ends. Returns the exit code. */
/* Hot reload. The reloader builds the project again (registry + code, checked as `check`
** does) into *reg and *code and returns 0, or logs the problems and returns -1. app_wait calls
** it on SIGHUP and after each burst of changes the watcher (may be NULL) reports. On -1 it
** may set *problems to the diagnostics, one a line (malloc'd; the app keeps the last for the
** dashboard and frees it). */
struct watch;
typedef int (*app_reloader)(void *ctx, struct registry **reg, struct codeset **code, char **problems);
void app_set_reloader(struct app *a, app_reloader fn, void *ctx, struct watch *w);
/* Applies a new generation: new spawns and new requests use it; requests in flight finish on
** their old routes and code. Refused as a whole (-1, problems logged) when a route table
** cannot be built. */
int app_reload(struct app *a, struct registry *reg, struct codeset *code);
int app_wait(struct app *a);
void app_stop(struct app *a);
void app_free(struct app *a);

#endif
