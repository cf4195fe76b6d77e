/*
** http.h — an http.service on civetweb (wippy-compat.md §5). Each request is matched against
** the service's routes and served on the civetweb thread that read it: a state from the
** endpoint function's pool runs the handler (funcpool.c), the handler writes through the
** `http` Lua module into `struct http_req`, and the response goes out in one write when the
** handler returns. civetweb ties a keep-alive connection to one thread, so `threads` bounds
** the clients served at once; the listen backlog and connection queue are raised so bursts
** wait in line instead of being dropped. Before routing, each request's framing and header
** count are checked (on_begin: 400/431 and a close); httpgate.h keeps slow request heads from
** holding every thread. Every answered request is counted on its route's slot of the host's
** httpstats table (httpstats.h; the runtime service "http_stats", when the app made one).
** Threads: civetweb's; a request's http_req belongs to the thread serving it.
*/
#ifndef TASKHOST_HTTP_H
#define TASKHOST_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"
#include "base/util.h"

struct rt;
struct reg_entry;
struct mg_connection;
struct mg_request_info;
struct http_server;

/* One request being served (the `call.ctx` of its handler). */
struct http_req {
  struct mg_connection *conn;
  const struct mg_request_info *ri;
  struct match match;
  const char *path;            /* decoded path (civetweb's); match params point into it */
  uint64_t serial;             /* identifies the request to Lua objects that outlive it */
  size_t max_body;
  int body_read, too_large;
  struct buf body;
  int status;                  /* 0 until set */
  int committed;               /* set_status done: headers are final */
  int handled;                 /* any response method was called */
  int has_ctype;
  int close;                   /* the connection closes after this response */
  int expect;                  /* "Expect: 100-continue" with a body: 100 goes out before it is read */
  struct buf *headers;         /* "Name: value\r\n"... (the serving thread's, reused) */
  struct buf *out;             /* HEAD_GAP spare bytes, then the response body */
};

/* The response head is written into the spare bytes in front of the body when it fits, so
** the whole response leaves in one write without a copy. */
#define HEAD_GAP 512

/* Starts listening. Every route's `handler` must be its function pool (RA_FUNCTION) or its
** job queue (the job API). NULL with err. */
struct http_server *http_start(struct rt *rt, const struct reg_entry *svc, struct routes *routes,
                               const char *docroot, char *err, size_t errlen);
int http_port(const struct http_server *s);
/* Reload: new requests use rs from now on; requests in flight finish on the table they
** started with. The old table is released (release(ud), unless it is the one http_start got,
** which stays its caller's) as soon as no request uses it: here, or in a later
** http_reclaim. release may be NULL. */
void http_swap_routes(struct http_server *s, struct routes *rs, void (*release)(void *ud), void *ud);
/* The server's current table is released with release(ud) when it is replaced or stopped. */
void http_own_routes(struct http_server *s, void (*release)(void *ud), void *ud);
/* Releases retired tables no request uses any more; returns how many are still in use. */
size_t http_reclaim(struct http_server *s);
/* Stops accepting and waits for the requests in flight. */
void http_stop(struct http_server *s);

/* Sends a whole response now (built-in handlers). Extra headers go in r->headers first. */
void http_reply(struct http_req *r, int status, const char *ctype, const char *body, size_t len);

/* For the Lua module. */
int http_req_read_body(struct http_req *r);              /* 0, or -1 (too large / read error) */
const char *http_req_header(const struct http_req *r, const char *name);
int http_res_add_header(struct http_req *r, const char *name, const char *value);  /* 0 / -1 */
const char *http_status_text(int code);

/* The linked civetweb's mg_version() into buf ("1.15"); returns 0. Any thread. */
int http_civetweb_version(char *buf, size_t n);

#endif
