/*
** router.h — the routes of one http.service, built from a registry generation
** (wippy-compat.md §5.3): router prefix + endpoint path; `{name}` matches one segment
** (req:param), `{name...}` the rest, `:name` is `{name}`; a pattern ending in "/" matches the
** whole subtree. The most specific matching pattern wins (literal > {param} > {rest...} >
** subtree, decided at the first segment where they differ); two routes of one method with the
** same shape conflict (a load error). GET routes also answer HEAD; OPTIONS on a known path
** gets 204; a known path with another method gets 405 with Allow. A queue.http entry adds the
** job API under its `path`: POST and GET on it, GET {id}, GET {id}/status, GET {id}/result,
** DELETE {id}, POST {id}/cancel, and its health and metrics paths (relative to the router).
** Immutable after build; any thread may match.
*/
#ifndef TASKHOST_ROUTER_H
#define TASKHOST_ROUTER_H

#include <stddef.h>

struct registry;
struct reg_entry;
struct diag;
struct routes;

#define ROUTE_MAX_PARAMS 16

/* Built-in handlers a route may have instead of a function (queue.http entries). */
enum route_action {
  RA_FUNCTION, RA_JOB_SUBMIT, RA_JOB_LIST, RA_JOB_STATUS, RA_JOB_RESULT, RA_JOB_CANCEL,
  RA_JOB_HEALTH, RA_JOB_METRICS, RA_JOB_RETRY, RA_JOB_REQUEUE
};

struct route;
struct http_req;
struct hstat;
/* Serves a matched request on the civetweb thread; set by whoever gives the route its
** handler (the app: jobapi_serve for the job API). http.c calls it and knows no more. */
typedef void (*route_serve_fn)(const struct route *rt, struct http_req *r);

struct route {
  char *method;
  char *pattern;                  /* "/api/tasks/{id}" as written (prefix + path) */
  const struct reg_entry *endpoint;
  enum route_action action;
  const char *func;               /* function.lua id (RA_FUNCTION) */
  void *handler;                  /* the caller's (a function pool, a job queue), set after build */
  route_serve_fn serve;           /* NULL: handler is a function pool, called by http.c */
  struct hstat *stats;            /* its request counters (httpstats.h), set by http.c, or NULL */
  struct seg *segs;
  int nsegs;
  int subtree;
};

enum match_result { MATCH_OK, MATCH_NOT_FOUND, MATCH_BAD_METHOD, MATCH_OPTIONS };

struct match {
  const struct route *route;
  int nparams;
  struct { const char *name; const char *value; size_t len; } params[ROUTE_MAX_PARAMS];
  char allow[96];                 /* for 405 / OPTIONS: "GET, HEAD, OPTIONS" */
};

/* Builds the table for service `service_id`. NULL with problems in d on conflicts. */
struct routes *routes_build(struct registry *r, const char *service_id, struct diag *d);
void routes_free(struct routes *rs);
/* Builds (and frees) every http.service's routes of r, so conflicting patterns are found
** before a generation runs (check, change sets). 0, or -1 with the problems in d. */
int routes_check_all(struct registry *r, struct diag *d);
size_t routes_count(const struct routes *rs);
struct route *routes_at(struct routes *rs, size_t i);
/* Matches method + path (no query). Param values point into `path`. */
enum match_result routes_match(const struct routes *rs, const char *method, const char *path,
                               struct match *m);

#endif
