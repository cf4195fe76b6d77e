/*
** admin.h — the host-wide admin listener (taskhost.yaml `admin: {addr, token}`, `--admin`):
** a small civetweb server of its own, apart from every http.service, answering GET /metrics
** with the Prometheus text of the host's series (base/metrics.h). Other paths 404, other
** methods 405; with a token every request needs `Authorization: Bearer <token>` (401).
** Threads: start/stop on the main thread; requests on the listener's own 2 threads, which
** only render the (locked) series registry.
*/
#ifndef TASKHOST_ADMIN_H
#define TASKHOST_ADMIN_H

#include <stddef.h>

struct admin;
struct metrics;

/* addr: "host:port", ":port" or "localhost:port" (port 0: any free one); token NULL or ""
** for none. civetweb's library must be initialised. NULL with err on failure. Logs the bound
** address as "admin: serving GET /metrics on HOST:PORT". */
struct admin *admin_start(const char *addr, const char *token, struct metrics *m, char *err, size_t errlen);
int admin_port(const struct admin *a);
void admin_stop(struct admin *a);

#endif
