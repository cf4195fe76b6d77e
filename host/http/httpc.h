/*
** httpc.h — the HTTP client engine (issue 12, http-client.md §4): one I/O thread owning a
** libcurl multi handle, driven by epoll, with curl's timer kept in user space as the
** epoll_wait timeout; submissions and aborts reach it through a locked list and an eventfd
** (written after unlocking, once per batch). Easy handles are reused from a free list (one
** whose last request was a plain GET keeps its options: no curl_easy_reset for the next plain
** GET); connections are reused by the multi handle. A request's response storage (body,
** header text, header array) is reserved by httpc_req_new on the owner's thread, so the owner
** frees memory its own thread allocated for a small response.
**
** Threads and ownership:
**  - httpc_new / httpc_free run on the app's main thread; everything touching curl runs on
**    the I/O thread only.
**  - A request (struct httpc_req) is built by its owner on any thread, handed to the engine
**    by httpc_submit (0), and handed back by exactly one call of its `done` callback, on the
**    I/O thread, once the engine no longer touches it: finished, failed, aborted, or aborted
**    by httpc_free. The owner then frees it (httpc_req_free) on any thread.
**  - httpc_abort(h, id) may be called from any thread at any time with the id the request
**    got at submit; it never touches the request itself (an id no longer in flight is
**    ignored), so it is safe while `done` races it.
**  - `claim` belongs to the owner: an atomic the owner uses to settle a completion racing
**    with its waiter going away (the engine never reads it). lmod_http_client.c: WAITING →
**    POSTED (done posted the completion to the waiter, the message owns the request) or
**    WAITING → GONE (the waiter left: it aborts by id first, then sets GONE; a later done
**    sees GONE and frees). Whoever wins the compare-and-swap owns the request.
**
** Streaming (a request with `sink` set): the engine calls `head` once, on the I/O thread,
** when the final response's head is in (status, hdrs and eff_url are then set; the owner
** may take hdrs), and hands every body piece to `sink` instead of `resp`; sink returns 0
** (taken) or 1 (the owner's window is full: curl pauses the transfer and offers the same
** piece again after httpc_resume). max_body does not apply. `done` still ends it.
**
** Response headers: names lower-cased; a header repeated in one response is joined into
** one value with ", " (RFC 9110 §5.3). Only the final response's headers are kept (those
** of redirects and 1xx responses are dropped).
*/
#ifndef TASKHOST_HTTPC_H
#define TASKHOST_HTTPC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct httpc;
struct curl_slist;

/* Defaults of taskhost.yaml's http_client: section (http-client.md §4). Per host = total:
** transfers queued inside curl for a host's connection cost far more than more connections
** (1000 in flight against local nginx, 100k gets: 256 per host took 1.5x the CPU and gave
** 0.65x the req/s of 1000 per host). */
#define HTTPC_DEFAULT_PER_HOST 1024
#define HTTPC_DEFAULT_TOTAL 1024
#define HTTPC_DEFAULT_IN_FLIGHT 10000

struct httpc_limits {
  long max_connections_per_host;  /* CURLMOPT_MAX_HOST_CONNECTIONS (queued inside curl) */
  long max_connections;           /* CURLMOPT_MAX_TOTAL_CONNECTIONS and MAXCONNECTS */
  long max_in_flight;             /* requests accepted at once; more fail with HTTPC_BUSY */
};

/* Why a request failed (result.fail). */
enum httpc_fail {
  HF_NONE,        /* a response arrived (any status) */
  HF_TIMEOUT,     /* timeout_ms passed */
  HF_UNAVAILABLE, /* refused, reset, DNS, TLS handshake, nothing received */
  HF_INVALID,     /* bad URL, unsupported scheme, too many redirects */
  HF_TOO_LARGE,   /* the body passed max_body */
  HF_TLS_VERIFY,  /* the server's certificate or name did not verify */
  HF_CANCELED,    /* httpc_abort or shutdown */
  HF_OTHER,
  HF_BUSY,        /* not submitted: max_in_flight reached (set by the owner) */
  HF_STOPPED,     /* not submitted: the engine is stopping (set by the owner) */
};

struct httpc_hdr { char *name, *value; };

struct httpc_req {
  /* ---- the request: set by the owner before submit, freed by httpc_req_free ---- */
  char *method;                /* "GET", "POST", ... (upper case) */
  char *url;
  struct curl_slist *headers;  /* httpc_req_header */
  char *body; size_t body_len; int has_body;
  long timeout_ms;             /* whole transfer, 0 = none */
  size_t max_body;             /* response body bytes allowed, 0 = unbounded */
  long max_redirects;          /* 0 = do not follow */
  char *unix_socket;
  /* PEM files or text (below); server_name: the name sent as SNI and verified against the server's
  ** certificate instead of the URL's host (the connection still goes to the URL's host and
  ** port, and Host stays the URL's unless headers set it). */
  char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
  int tls_insecure;            /* skip peer and host verification */
  /* Each of ca, cert, key is a file path, or PEM text when it contains "-----BEGIN". */
  /* Streaming (see above): both set, or both NULL. I/O thread. */
  void (*head)(struct httpc_req *r);
  int (*sink)(struct httpc_req *r, const char *data, size_t len);
  /* ---- the owner's ---- */
  void (*done)(struct httpc_req *r);   /* I/O thread; takes the request back */
  void *ud;
  uint64_t pid, session;
  _Atomic int claim;
  /* ---- the result: written by the I/O thread, read by the owner after done ---- */
  long status;
  struct buf resp;
  struct httpc_hdr *hdrs; size_t nhdrs, caphdrs;   /* point into hdr_text */
  struct buf hdr_text;
  char *eff_url;               /* the URL after redirects */
  int fail;                    /* enum httpc_fail */
  char errmsg[256];
  /* ---- the engine's ---- */
  uint64_t id;                 /* set by httpc_submit */
  struct httpc *engine;
  void *easy;
  int easy_dirty;              /* the request set options beyond a plain GET's */
  struct curl_slist *connect_to;   /* tls_server_name: connect to the URL's host */
  char *url_sent;                  /* tls_server_name: the URL with that name as host */
  int head_sent;                   /* streaming: head was called */
  struct httpc_req *next;
};

enum { HTTPC_OK = 0, HTTPC_BUSY = -1, HTTPC_STOPPED = -2 };

/* Starts the I/O thread. NULL (err) when curl or the thread cannot start. */
struct httpc *httpc_new(const struct httpc_limits *lim, char *err, size_t errlen);
/* Aborts everything in flight (each done is called with HF_CANCELED), stops the thread and
** frees the engine. Later submits cannot happen: call after every caller stopped. */
void httpc_free(struct httpc *h);

struct httpc_req *httpc_req_new(const char *method, const char *url);
void httpc_req_header(struct httpc_req *r, const char *line);   /* "Name: value" */
void httpc_req_free(struct httpc_req *r);

/* Hands r to the engine: HTTPC_OK (done will be called), HTTPC_BUSY (max_in_flight reached)
** or HTTPC_STOPPED; on failure the caller keeps r. Sets r->id and r->engine. */
int httpc_submit(struct httpc *h, struct httpc_req *r);
/* Aborts request id if still in flight (its done gets HF_CANCELED); any thread. */
void httpc_abort(struct httpc *h, uint64_t id);
/* Resumes streaming request id paused by its sink (ignored when no longer in flight); any
** thread. */
void httpc_resume(struct httpc *h, uint64_t id);
/* Requests accepted and not yet done. */
long httpc_in_flight(struct httpc *h);

/* The linked libcurl's version (curl_version_info) into buf ("7.88.1"). Returns 0, or -1
** when curl does not say. Main thread (`taskhost version` calls it before anything starts). */
int httpc_curl_version(char *buf, size_t n);

#endif
