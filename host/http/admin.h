/*
** admin.h — the host-wide admin listener (taskhost.yaml `admin: {addr, token}`, `--admin`):
** a small civetweb server of its own, apart from every http.service, answering GET /metrics
** with the Prometheus text of the host's series (base/metrics.h), and the path prefixes the
** app registers (the dashboard, app/dashboard.c) with their handlers. Other paths 404, other
** methods on /metrics 405.
**
** Auth (kept here, so a handler never sees an unauthenticated request). Without a token
** everything is open. With one, /metrics needs `Authorization: Bearer <token>` (401); a
** prefix takes the bearer header or the session cookie `taskhost_session` that
** `<prefix>login` sets (GET: a form; POST token=...: Set-Cookie HttpOnly; SameSite=Strict;
** Path=<prefix>, then 303 to the prefix). The cookie is not the token: it is
** "<issued unix s>.<random nonce hex>.<HMAC-SHA256 hex>" under a random key made at start,
** so it needs no server memory, cannot be forged, and dies with the process or after
** ADMIN_SESSION_MAX_S. An unauthenticated GET that asks for text/html is sent (303) to the
** login form; any other gets 401 JSON.
** Cross-site: every request to a prefix other than GET/HEAD (and the login POST) must carry
** the header `X-Taskhost-Action: 1`, which a cross-site form cannot send (403 otherwise);
** together with SameSite=Strict that keeps mutating calls same-site. Bodies are read only up
** to ADMIN_BODY_MAX bytes (413 beyond). Every prefix answer
** gets a strict Content-Security-Policy (default-src 'self'), nosniff and no-referrer.
**
** Threads: admin_start/admin_stop on the main thread; requests on the listener's
** ADMIN_THREADS threads; a prefix handler runs on them and must be thread-safe.
*/
#ifndef TASKHOST_ADMIN_H
#define TASKHOST_ADMIN_H

#include "base/util.h"

#include <stddef.h>

struct admin;
struct metrics;

#define ADMIN_THREADS 4              /* a browser's parallel loads plus polling and a scrape */
#define ADMIN_BODY_MAX 4096          /* request body bytes a prefix handler can get */
#define ADMIN_SESSION_MAX_S 43200    /* a session cookie is honoured for 12 h */
#define ADMIN_SESSION_COOKIE "taskhost_session"
#define ADMIN_ACTION_HEADER "X-Taskhost-Action"

/* One request to a registered prefix, already authorised. Strings live for the call. */
struct admin_req {
  const char *method;          /* "GET", "HEAD", "POST", ... */
  const char *sub;             /* the decoded path after the prefix ("" for the prefix itself) */
  const char *query;           /* the raw query string, "" when none */
  const char *body;            /* not GET/HEAD: the body (NUL-terminated), else "" */
  size_t body_len;
  const char *if_none_match;   /* that header, or NULL */
};

/* What the handler answers; admin_start's caller never allocates one. Defaults: 200,
** application/json, Cache-Control: no-store, no ETag. */
struct admin_resp {
  int status;
  const char *type;            /* Content-Type (a static string) */
  const char *cache;           /* Cache-Control value (a static string) */
  char etag[72];               /* "" for none, else the quoted ETag */
  char allow[48];              /* 405: the methods allowed */
  struct buf body;
};

typedef void (*admin_handler)(void *ud, const struct admin_req *rq, struct admin_resp *rs);

/* A path prefix ending in "/" (e.g. "/_taskhost/"): every path under it goes to serve;
** the prefix without its slash redirects to it. ud is the handler's. */
struct admin_prefix {
  const char *prefix;
  admin_handler serve;
  void *ud;
};

/* addr: "host:port", ":port" or "localhost:port" (port 0: any free one); token NULL or ""
** for none. prefixes (n of them, copied; the handlers' ud must outlive the listener).
** civetweb's library must be initialised. NULL with err on failure. Logs the bound address
** as "admin: serving GET /metrics on HOST:PORT". */
struct admin *admin_start(const char *addr, const char *token, struct metrics *m,
                          const struct admin_prefix *prefixes, size_t n, char *err, size_t errlen);
int admin_port(const struct admin *a);
/* Whether addr (as admin_start takes it) names a loopback interface: 127.x, localhost, [::1].
** admin_start warns when it does not and there is no token. */
int admin_addr_is_loopback(const char *addr);
void admin_stop(struct admin *a);

/* Session cookies (exposed for tests): the value for issued-at `now_s` into out (at least
** ADMIN_COOKIE_LEN + 1 bytes); check: 1 when v is a cookie this listener made that is not
** older than ADMIN_SESSION_MAX_S at now_s (nor from the future), else 0. */
#define ADMIN_COOKIE_LEN 128
void admin_session_make(const struct admin *a, long long now_s, char *out);
int admin_session_check(const struct admin *a, const char *v, long long now_s);

#endif
