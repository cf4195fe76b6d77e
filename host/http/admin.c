/*
** admin.c — see admin.h. Paths are a table, so issue 15's dashboard adds rows. The token is
** compared in constant time: both sides are hashed (SHA-256) and the digests compared with
** CRYPTO_memcmp, so neither the token's bytes nor its length leak through timing.
** Threads: admin_start/admin_stop on the main thread; on_request on civetweb's threads.
*/
#include "admin.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/util.h"

#include <civetweb.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct admin {
  struct mg_context *ctx;
  struct metrics *metrics;
  int has_token;
  unsigned char token_sha[SHA256_DIGEST_LENGTH];   /* of "Bearer <token>" */
  int port;
};

static void reply(struct mg_connection *c, int status, const char *reason, const char *extra,
                  const char *type, const char *body, size_t len, int head) {
  mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\n%s\r\n", status, reason, type, len, extra ? extra : "");
  if (!head && len) mg_write(c, body, len);
}

static void text(struct mg_connection *c, int status, const char *reason, const char *extra, const char *msg, int head) {
  reply(c, status, reason, extra, "text/plain; charset=utf-8", msg, strlen(msg), head);
}

static void serve_metrics(struct admin *a, struct mg_connection *c, int head) {
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "");
  metrics_render(a->metrics, &b);
  reply(c, 200, "OK", NULL, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, head);
  buf_free(&b);
}

static const struct { const char *path; void (*serve)(struct admin *, struct mg_connection *, int head); } paths[] = {
  {"/metrics", serve_metrics},
};

static int authorized(const struct admin *a, struct mg_connection *c) {
  if (!a->has_token) return 1;
  const char *h = mg_get_header(c, "Authorization");
  unsigned char got[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)(h ? h : ""), h ? strlen(h) : 0, got);
  return CRYPTO_memcmp(got, a->token_sha, sizeof got) == 0 && h;
}

static int on_request(struct mg_connection *c, void *ud) {
  struct admin *a = ud;
  const struct mg_request_info *ri = mg_get_request_info(c);
  if (!authorized(a, c)) {
    text(c, 401, "Unauthorized", "WWW-Authenticate: Bearer\r\n", "a bearer token is required\n", 0);
    return 401;
  }
  for (size_t i = 0; i < countof(paths); i++) {
    if (strcmp(ri->local_uri, paths[i].path) != 0) continue;
    int get = strcmp(ri->request_method, "GET") == 0, head = strcmp(ri->request_method, "HEAD") == 0;
    if (!get && !head) {
      text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", "method not allowed\n", 0);
      return 405;
    }
    paths[i].serve(a, c, head);
    return 200;
  }
  text(c, 404, "Not Found", NULL, "not found\n", 0);
  return 404;
}

static int on_log(const struct mg_connection *c, const char *msg) {
  (void)c;
  log_debug("admin: %s", msg);
  return 1;
}

struct admin *admin_start(const char *addr, const char *token, struct metrics *m, char *err, size_t errlen) {
  char ports[160];
  if (addr[0] == ':') snprintf(ports, sizeof ports, "%s", addr + 1);
  else if (strncmp(addr, "localhost:", 10) == 0) snprintf(ports, sizeof ports, "127.0.0.1:%s", addr + 10);
  else snprintf(ports, sizeof ports, "%s", addr);
  const char *opts[] = {
    "listening_ports", ports, "num_threads", "2", "enable_keep_alive", "yes",
    "request_timeout_ms", "10000", "keep_alive_timeout_ms", "5000", NULL,
  };
  struct admin *a = xcalloc(1, sizeof *a);
  a->metrics = m;
  if (token && *token) {
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "Bearer %s", token);
    SHA256((const unsigned char *)b.data, b.len, a->token_sha);
    buf_free(&b);
    a->has_token = 1;
  }
  struct mg_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.log_message = on_log;
  if (!(a->ctx = mg_start(&cb, a, opts))) {
    snprintf(err, errlen, "admin: cannot listen on %s", addr);
    free(a);
    return NULL;
  }
  mg_set_request_handler(a->ctx, "/", on_request, a);
  struct mg_server_port sp[2];
  a->port = mg_get_server_ports(a->ctx, 2, sp) > 0 ? sp[0].port : 0;
  const char *colon = strrchr(ports, ':');
  log_info("admin: serving GET /metrics on %.*s:%d%s", colon ? (int)(colon - ports) : 7,
           colon ? ports : "0.0.0.0", a->port, a->has_token ? " (bearer token required)" : "");
  return a;
}

int admin_port(const struct admin *a) { return a->port; }

void admin_stop(struct admin *a) {
  if (!a) return;
  mg_stop(a->ctx);
  free(a);
}
