/*
** jobapi.h — the built-in HTTP job API of a queue.http entry (routes in router.h):
** submit, list, status, result, cancel, health and Prometheus metrics of one queue.
** Threads: called on the civetweb thread serving the request.
*/
#ifndef TASKHOST_JOBAPI_H
#define TASKHOST_JOBAPI_H

struct http_req;

/* action: an enum route_action other than RA_FUNCTION; queue: the route's struct jobq. */
void jobapi_serve(int action, void *queue, struct http_req *r);

#endif
