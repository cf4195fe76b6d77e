/*
** jobapi.h — the built-in HTTP job API of a queue.http entry (routes in router.h):
** submit, list, status, result, cancel, health and Prometheus metrics of one queue.
** Threads: called on the civetweb thread serving the request.
*/
#ifndef TASKHOST_JOBAPI_H
#define TASKHOST_JOBAPI_H

#include <stddef.h>

struct http_req;
struct route;
struct jobq_publish_opts;

/* The serve function of a job API route (route_serve_fn): rt->action is an enum
** route_action other than RA_FUNCTION, rt->handler the route's struct jobq. */
void jobapi_serve(const struct route *rt, struct http_req *r);

/* The query-string options of submit (id, delay, priority, max_retries) and list (state,
** after, limit clamped to 1..1000); qs may be NULL. o->id points into id[idcap]. Pure
** functions of their input (tests/fuzz calls them). Return 0, or -1 with the reason for a
** 400 in msg: an id longer than idcap - 1, a malformed or negative delay, an integer that is
** malformed or out of range (priority: int32, max_retries: 0..2^31-1, after: >= 0), an
** unknown state. Never clamped or wrapped, except limit. */
int jobapi_submit_opts(const char *qs, struct jobq_publish_opts *o, char *id, size_t idcap,
                       char *msg, size_t msglen);
int jobapi_list_opts(const char *qs, int *state, long long *after, long long *limit, char *msg,
                     size_t msglen);

#endif
