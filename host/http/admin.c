/*
** admin.c — see admin.h. Paths are a table (/metrics) plus the prefixes the app registers.
** The token is compared in constant time: both sides are hashed (SHA-256) and the digests
** compared with CRYPTO_memcmp, so neither the token's bytes nor its length leak through
** timing; session cookies are checked the same way (their MAC recomputed and compared).
** Threads: admin_start/admin_stop on the main thread; on_request on civetweb's threads,
** which only read the struct admin (written once before mg_start).
*/
#include "admin.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/util.h"

#include <civetweb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_PREFIXES 4
#define TOKEN_FIELD_MAX 1024          /* the login form's token value, bytes */

struct admin {
  struct mg_context *ctx;
  struct metrics *metrics;
  int has_token;
  unsigned char token_sha[SHA256_DIGEST_LENGTH];   /* of "Bearer <token>" */
  unsigned char key[32];                           /* session MAC key, random per start */
  struct admin_prefix px[MAX_PREFIXES];
  char *px_names[MAX_PREFIXES];
  size_t npx;
  int port;
  _Atomic long long fail_second;     /* login: the second of the latest wrong tokens */
  _Atomic int fail_count;            /* and how many came in it */
};

/* Headers every prefix answer carries. */
static const char SECURITY_HEADERS[] =
  "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; "
  "base-uri 'none'; form-action 'self'\r\n"
  "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n";

static void reply(struct mg_connection *c, int status, const char *reason, const char *extra,
                  const char *type, const char *body, size_t len, int head) {
  mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\n%s\r\n", status, reason, type, len, extra ? extra : "");
  if (!head && len) mg_write(c, body, len);
}

static void text(struct mg_connection *c, int status, const char *reason, const char *extra, const char *msg, int head) {
  reply(c, status, reason, extra, "text/plain; charset=utf-8", msg, strlen(msg), head);
}

/* A prefix's JSON error: {"error": msg}, with the security headers and extra lines. */
static void json_error(struct mg_connection *c, int status, const char *extra, const char *msg) {
  char body[256], hdr[512];
  snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
  snprintf(hdr, sizeof hdr, "%s%s", SECURITY_HEADERS, extra ? extra : "");
  reply(c, status, mg_get_response_code_text(c, status), hdr, "application/json", body, strlen(body), 0);
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

/* ---- auth ----------------------------------------------------------------------------- */

static int bearer_ok(const struct admin *a, const char *h) {
  unsigned char got[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)(h ? h : ""), h ? strlen(h) : 0, got);
  return CRYPTO_memcmp(got, a->token_sha, sizeof got) == 0 && h;
}

/* The token as typed into the login form: compared as "Bearer <token>" would be. */
static int token_ok(const struct admin *a, const char *tok) {
  struct buf b;
  buf_init(&b);
  buf_printf(&b, "Bearer %s", tok);
  int ok = bearer_ok(a, b.data);
  buf_free(&b);
  return ok;
}

static void hexify(const unsigned char *p, size_t n, char *out) {
  static const char hx[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) { out[2 * i] = hx[p[i] >> 4]; out[2 * i + 1] = hx[p[i] & 15]; }
  out[2 * n] = '\0';
}

/* "<t>.<nonce hex>" → its MAC in hex (65 bytes). */
static void session_mac(const struct admin *a, const char *msg, size_t len, char out[65]) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  HMAC(EVP_sha256(), a->key, sizeof a->key, (const unsigned char *)msg, len, mac, &maclen);
  hexify(mac, 32, out);
}

void admin_session_make(const struct admin *a, long long now_s, char *out) {
  unsigned char nonce[16];
  char nhex[33], mac[65];
  if (RAND_bytes(nonce, sizeof nonce) != 1) memset(nonce, 0, sizeof nonce);   /* MAC still binds */
  hexify(nonce, sizeof nonce, nhex);
  int n = snprintf(out, ADMIN_COOKIE_LEN + 1, "%lld.%s", now_s, nhex);
  session_mac(a, out, (size_t)n, mac);
  snprintf(out + n, ADMIN_COOKIE_LEN + 1 - (size_t)n, ".%s", mac);
}

int admin_session_check(const struct admin *a, const char *v, long long now_s) {
  const char *dot = v ? strrchr(v, '.') : NULL;
  if (!dot || strlen(dot + 1) != 64 || (size_t)(dot - v) > ADMIN_COOKIE_LEN) return 0;
  char mac[65];
  session_mac(a, v, (size_t)(dot - v), mac);
  if (CRYPTO_memcmp(mac, dot + 1, 64) != 0) return 0;
  long long t = strtoll(v, NULL, 10);
  return t <= now_s && now_s - t <= ADMIN_SESSION_MAX_S;
}

static int cookie_ok(const struct admin *a, struct mg_connection *c) {
  const char *h = mg_get_header(c, "Cookie");
  char v[ADMIN_COOKIE_LEN + 2];
  if (!h || mg_get_cookie(h, ADMIN_SESSION_COOKIE, v, sizeof v) <= 0) return 0;
  return admin_session_check(a, v, (long long)time(NULL));
}

static int authorized(const struct admin *a, struct mg_connection *c, int cookie_too) {
  if (!a->has_token) return 1;
  if (bearer_ok(a, mg_get_header(c, "Authorization"))) return 1;
  return cookie_too && cookie_ok(a, c);
}

/* ---- prefixes ------------------------------------------------------------------------- */

static const char LOGIN_PAGE[] =
  "<!doctype html><html><head><meta charset=utf-8><title>taskhost: sign in</title>"
  "<meta name=viewport content=\"width=device-width\"></head>"
  "<body><h1>taskhost</h1>%s"
  "<form method=post action=\"%slogin\"><label>Admin token <input type=password name=token "
  "autofocus required></label> <button type=submit>Sign in</button></form></body></html>";

static void login_page(struct mg_connection *c, const char *prefix, int status, const char *note) {
  struct buf b;
  buf_init(&b);
  buf_printf(&b, LOGIN_PAGE, note, prefix);
  reply(c, status, mg_get_response_code_text(c, status), SECURITY_HEADERS, "text/html; charset=utf-8",
        b.data, b.len, 0);
  buf_free(&b);
}

static void redirect(struct mg_connection *c, const char *to, const char *extra) {
  char hdr[1024];
  snprintf(hdr, sizeof hdr, "Location: %s\r\n%s%s", to, SECURITY_HEADERS, extra ? extra : "");
  reply(c, 303, "See Other", hdr, "text/plain; charset=utf-8", "", 0, 0);
}

/* Reads the body into b (NUL-terminated), stopping past ADMIN_BODY_MAX bytes: a declared
** length over it is refused before reading, a chunked body once it grows past it. 0, or the
** status to refuse with. */
static int read_body(struct mg_connection *c, struct buf *b) {
  const struct mg_request_info *ri = mg_get_request_info(c);
  if (ri->content_length > ADMIN_BODY_MAX) return 413;
  buf_reserve(b, ADMIN_BODY_MAX + 2);
  for (;;) {
    int n = mg_read(c, b->data + b->len, ADMIN_BODY_MAX + 1 - b->len);
    if (n < 0) return 400;
    if (n == 0) break;
    b->len += (size_t)n;
    if (b->len > ADMIN_BODY_MAX) return 413;
  }
  if (ri->content_length >= 0 && b->len != (size_t)ri->content_length) return 400;
  b->data[b->len] = '\0';
  return 0;
}

/* Guessing the token through the form: after LOGIN_FAILS_PER_S wrong tokens in one second
** (over all clients; the count is approximate under races, which only loosens it by a few)
** further attempts in that second get 429 without a comparison. */
#define LOGIN_FAILS_PER_S 10

static int login_throttled(struct admin *a) {
  return atomic_load(&a->fail_second) == (long long)time(NULL) &&
         atomic_load(&a->fail_count) >= LOGIN_FAILS_PER_S;
}

static void login_failed(struct admin *a) {
  long long now = (long long)time(NULL);
  if (atomic_exchange(&a->fail_second, now) != now) atomic_store(&a->fail_count, 1);
  else atomic_fetch_add(&a->fail_count, 1);
}

/* <prefix>login: the form, or the token posted from it. */
static void serve_login(struct admin *a, struct mg_connection *c, const char *prefix) {
  const char *m = mg_get_request_info(c)->request_method;
  if (!a->has_token) { redirect(c, prefix, NULL); return; }
  if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) { login_page(c, prefix, 200, ""); return; }
  if (strcmp(m, "POST") != 0) { json_error(c, 405, "Allow: GET, HEAD, POST\r\n", "method not allowed"); return; }
  struct buf b;
  buf_init(&b);
  buf_adds(&b, "");
  int st = read_body(c, &b);
  char *tok = xmalloc(TOKEN_FIELD_MAX + 1);
  int n = st ? -1 : mg_get_var(b.data, b.len, "token", tok, TOKEN_FIELD_MAX + 1);
  if (st) json_error(c, st, NULL, st == 413 ? "request body too large" : "cannot read the request body");
  else if (login_throttled(a)) json_error(c, 429, "Retry-After: 1\r\n", "too many wrong tokens; try again in a second");
  else if (n < 0 || !token_ok(a, tok)) {
    login_failed(a);
    login_page(c, prefix, 401, "<p role=alert>Wrong token.</p>");
  }
  else {
    char v[ADMIN_COOKIE_LEN + 1], hdr[ADMIN_COOKIE_LEN + 256];
    admin_session_make(a, (long long)time(NULL), v);
    snprintf(hdr, sizeof hdr, "Set-Cookie: %s=%s; HttpOnly; SameSite=Strict; Path=%s; Max-Age=%d\r\n",
             ADMIN_SESSION_COOKIE, v, prefix, ADMIN_SESSION_MAX_S);
    redirect(c, prefix, hdr);
  }
  OPENSSL_cleanse(tok, TOKEN_FIELD_MAX + 1);
  free(tok);
  buf_free(&b);
}

static int wants_html(struct mg_connection *c) {
  const char *acc = mg_get_header(c, "Accept");
  return acc && strstr(acc, "text/html");
}

static void send_resp(struct mg_connection *c, struct admin_resp *rs, int head) {
  char hdr[1024];
  snprintf(hdr, sizeof hdr, "%s%s%s%s%s%s", SECURITY_HEADERS, rs->etag[0] ? "ETag: " : "", rs->etag,
           rs->etag[0] ? "\r\n" : "", rs->allow[0] ? "Allow: " : "", rs->allow);
  if (rs->allow[0]) strncat(hdr, "\r\n", sizeof hdr - strlen(hdr) - 1);
  int has_body = rs->status != 304 && !head;
  mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: %s\r\n%s\r\n",
            rs->status, mg_get_response_code_text(c, rs->status), rs->type,
            rs->status == 304 ? (size_t)0 : rs->body.len, rs->cache, hdr);
  if (has_body && rs->body.len) mg_write(c, rs->body.data, rs->body.len);
}

/* A request under prefix p: login, auth, the cross-site rule, the body budget, then the
** handler. Returns the status sent. */
static int serve_prefix(struct admin *a, struct mg_connection *c, const struct admin_prefix *p) {
  const struct mg_request_info *ri = mg_get_request_info(c);
  const char *sub = ri->local_uri + strlen(p->prefix);
  if (strcmp(sub, "login") == 0) { serve_login(a, c, p->prefix); return 200; }
  int get = strcmp(ri->request_method, "GET") == 0, head = strcmp(ri->request_method, "HEAD") == 0;
  if (!authorized(a, c, 1)) {
    char to[300];
    snprintf(to, sizeof to, "%slogin", p->prefix);
    if ((get || head) && wants_html(c)) redirect(c, to, NULL);
    else json_error(c, 401, "WWW-Authenticate: Bearer\r\n", "a bearer token or a session is required");
    return 401;
  }
  if (!get && !head && !mg_get_header(c, ADMIN_ACTION_HEADER)) {
    json_error(c, 403, NULL, "this request needs the X-Taskhost-Action header");
    return 403;
  }
  struct buf body;
  buf_init(&body);
  buf_adds(&body, "");
  int st = get || head ? 0 : read_body(c, &body);
  if (st) {
    json_error(c, st, NULL, st == 413 ? "request body too large" : "cannot read the request body");
    buf_free(&body);
    return st;
  }
  struct admin_req rq = {ri->request_method, sub, ri->query_string ? ri->query_string : "", body.data,
                         body.len, mg_get_header(c, "If-None-Match")};
  struct admin_resp rs = {.status = 200, .type = "application/json", .cache = "no-store"};
  buf_init(&rs.body);
  p->serve(p->ud, &rq, &rs);
  send_resp(c, &rs, head);
  int status = rs.status;
  buf_free(&rs.body);
  buf_free(&body);
  return status;
}

static int on_request(struct mg_connection *c, void *ud) {
  struct admin *a = ud;
  const struct mg_request_info *ri = mg_get_request_info(c);
  for (size_t i = 0; i < a->npx; i++) {
    size_t n = strlen(a->px[i].prefix);
    if (strncmp(ri->local_uri, a->px[i].prefix, n) == 0) return serve_prefix(a, c, &a->px[i]);
    if (strlen(ri->local_uri) == n - 1 && strncmp(ri->local_uri, a->px[i].prefix, n - 1) == 0) {
      redirect(c, a->px[i].prefix, NULL);
      return 303;
    }
  }
  if (!authorized(a, c, 0)) {
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

int admin_addr_is_loopback(const char *addr) {
  static const char *const loopback[] = {"127.", "localhost:", "[::1]:"};
  for (size_t i = 0; i < countof(loopback); i++)
    if (strncmp(addr, loopback[i], strlen(loopback[i])) == 0) return 1;
  return 0;
}

struct admin *admin_start(const char *addr, const char *token, struct metrics *m,
                          const struct admin_prefix *prefixes, size_t n, char *err, size_t errlen) {
  char ports[160], threads[16];
  if (addr[0] == ':') snprintf(ports, sizeof ports, "%s", addr + 1);
  else if (strncmp(addr, "localhost:", 10) == 0) snprintf(ports, sizeof ports, "127.0.0.1:%s", addr + 10);
  else snprintf(ports, sizeof ports, "%s", addr);
  snprintf(threads, sizeof threads, "%d", ADMIN_THREADS);
  const char *opts[] = {
    "listening_ports", ports, "num_threads", threads, "enable_keep_alive", "yes",
    "request_timeout_ms", "10000", "keep_alive_timeout_ms", "5000",
    "tcp_nodelay", "1",   /* head and body are two writes: without it a keep-alive client waits 40 ms */
    NULL,
  };
  if (n > MAX_PREFIXES) {
    snprintf(err, errlen, "admin: at most %d path prefixes", MAX_PREFIXES);
    return NULL;
  }
  struct admin *a = xcalloc(1, sizeof *a);
  a->metrics = m;
  for (size_t i = 0; i < n; i++) {
    a->px[i] = prefixes[i];
    a->px[i].prefix = a->px_names[i] = xstrdup(prefixes[i].prefix);
  }
  a->npx = n;
  if (RAND_bytes(a->key, sizeof a->key) != 1) {
    snprintf(err, errlen, "admin: no random bytes for the session key");
    admin_stop(a);
    return NULL;
  }
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
    admin_stop(a);
    return NULL;
  }
  mg_set_request_handler(a->ctx, "/", on_request, a);
  struct mg_server_port sp[2];
  a->port = mg_get_server_ports(a->ctx, 2, sp) > 0 ? sp[0].port : 0;
  const char *colon = strrchr(ports, ':');
  log_info("admin: serving GET /metrics on %.*s:%d%s", colon ? (int)(colon - ports) : 7,
           colon ? ports : "0.0.0.0", a->port, a->has_token ? " (bearer token required)" : "");
  if (!a->has_token && !admin_addr_is_loopback(addr))
    log_warn("admin: %s is not a loopback address and admin.token is not set: whoever reaches it "
             "can read /metrics and retry or cancel jobs on the dashboard", addr);
  return a;
}

int admin_port(const struct admin *a) { return a->port; }

void admin_stop(struct admin *a) {
  if (!a) return;
  if (a->ctx) mg_stop(a->ctx);
  for (size_t i = 0; i < a->npx; i++) free(a->px_names[i]);
  OPENSSL_cleanse(a->key, sizeof a->key);
  free(a);
}
