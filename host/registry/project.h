/*
** project.h — finds a project's source directory and host settings: `wippy.lock`
** (directories.src, default ./src) and an optional `taskhost.yaml`
** (log.level, log.format, shutdown.timeout, limits.process_memory, http_client.*, admin.*,
** metrics.*, log.clickhouse.*).
** Called once by main.
*/
#ifndef TASKHOST_PROJECT_H
#define TASKHOST_PROJECT_H

#include <stddef.h>
#include <stdint.h>
#include "base/log.h"

/* taskhost.yaml log.clickhouse: (http/logship.h; 0 / NULL = its default). url NULL = off. */
struct log_clickhouse {
  char *url, *database, *table, *user, *password;   /* malloc'd */
  long batch_size, connection_attempts, buffer;
  int64_t batch_interval, try_connection_period;    /* ns */
  enum log_level level;
  int level_set;                                    /* level given; else the host's level */
};

struct project {
  char *dir;               /* the project directory as given */
  char *src;               /* the source directory (dir joined with directories.src) */
  enum log_level log_level;
  int log_json;
  int64_t shutdown_timeout; /* ns: how long hosts wait for processes to stop */
  uint64_t process_memory;  /* bytes one Lua state's heap may use (default 256 MiB); 0 = unlimited */
  /* http_client: (0 = the engine's default, http/httpc.h) */
  long http_max_connections_per_host, http_max_connections, http_max_in_flight;
  /* admin: {addr, token}: the admin listener (http/admin.h); addr NULL = off. malloc'd. */
  char *admin_addr, *admin_token;
  /* metrics: {max_names, max_series_per_metric, max_series} (0 = base/metrics.h's default) */
  long metrics_max_names, metrics_max_series_per_metric, metrics_max_series;
  long funcs_max_threads, funcs_max_queue;   /* taskhost.yaml funcs:, 0 = defaults */
  struct log_clickhouse clickhouse;          /* log.clickhouse: */
};

/* 0, or -1 with "file:line: message" in err. */
int project_open(const char *dir, struct project *p, char *err, size_t errlen);
void project_close(struct project *p);
/* Writes wippy.lock and a runnable app from `template` (NULL = "hello": a terminal process;
** "http": one JSON endpoint on :8080; "jobs": a queue, a consumer and the job API on :8080)
** into dir; existing files are kept. 0 / -1 (err). */
int project_init(const char *dir, const char *template, char *err, size_t errlen);

#endif
