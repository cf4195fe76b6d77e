/* test_admin.c — the admin listener's prefixes and auth: session cookies (made, checked,
** refused when tampered with, expired or from the future), and over real sockets: a prefix
** handler gets the sub-path, query and body; the bearer token or a cookie lets a request in,
** a page request without either is sent to the login form, an API one gets 401; a POST
** without X-Taskhost-Action is refused; a body past ADMIN_BODY_MAX is 413; the login POST
** sets an HttpOnly, SameSite=Strict cookie that then works; /metrics keeps its bearer rule. */
#include "http/admin.h"
#include "base/metrics.h"
#include "base/util.h"
#include "t.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void echo(void *ud, const struct admin_req *rq, struct admin_resp *rs) {
  (*(int *)ud)++;
  buf_printf(&rs->body, "%s|%s|%s|%.*s", rq->method, rq->sub, rq->query, (int)rq->body_len, rq->body);
  rs->type = "text/plain";
}

/* One request over a fresh connection; the whole response (headers and body) as a string. */
static char *req(int port, const char *text, size_t len) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  struct buf b;
  buf_init(&b);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    for (size_t off = 0; off < len;) {
      ssize_t n = write(fd, text + off, len - off);
      if (n <= 0) break;
      off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    char tmp[4096];
    for (ssize_t n; (n = read(fd, tmp, sizeof tmp)) > 0;) buf_add(&b, tmp, (size_t)n);
  }
  close(fd);
  buf_addc(&b, '\0');
  return buf_steal(&b);
}

static char *get(int port, const char *path, const char *headers) {
  char r[2048];
  int n = snprintf(r, sizeof r, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", path, headers);
  return req(port, r, (size_t)n);
}

static char *post(int port, const char *path, const char *headers, const char *body) {
  char r[8192];
  int n = snprintf(r, sizeof r, "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n%s\r\n%s",
                   path, strlen(body), headers, body);
  return req(port, r, (size_t)n);
}

static struct admin *start(int *calls, struct metrics **m) {
  *m = metrics_new(NULL);
  struct admin_prefix px[] = {{"/_p/", echo, calls}};
  char err[200];
  struct admin *a = admin_start("127.0.0.1:0", "tok", *m, px, 1, err, sizeof err);
  CHECK(a != NULL);
  return a;
}

TEST(session_cookies) {
  int calls = 0;
  struct metrics *m;
  mg_init_library(0);
  struct admin *a = start(&calls, &m);
  if (!a) return;
  char v[ADMIN_COOKIE_LEN + 1], w[ADMIN_COOKIE_LEN + 1];
  admin_session_make(a, 1000000, v);
  admin_session_make(a, 1000000, w);
  CHECK(strcmp(v, w) != 0);                          /* a fresh nonce each time */
  CHECK(!strstr(v, "tok"));
  CHECK_INT(admin_session_check(a, v, 1000000), 1);
  CHECK_INT(admin_session_check(a, v, 1000000 + ADMIN_SESSION_MAX_S), 1);
  CHECK_INT(admin_session_check(a, v, 1000000 + ADMIN_SESSION_MAX_S + 1), 0);   /* expired */
  CHECK_INT(admin_session_check(a, v, 999999), 0);                              /* from the future */
  char bad[ADMIN_COOKIE_LEN + 1];
  snprintf(bad, sizeof bad, "%s", v);
  bad[strlen(bad) - 1] ^= 1;                                                    /* the MAC */
  CHECK_INT(admin_session_check(a, bad, 1000000), 0);
  snprintf(bad, sizeof bad, "%s", v);
  bad[0] = '2';                                                                 /* the time */
  CHECK_INT(admin_session_check(a, bad, 2000000), 0);
  CHECK_INT(admin_session_check(a, "", 1000000), 0);
  CHECK_INT(admin_session_check(a, "x.y", 1000000), 0);
  CHECK_INT(admin_session_check(a, NULL, 1000000), 0);
  struct metrics *m2;
  struct admin *b = start(&calls, &m2);                 /* another listener's key */
  if (b) CHECK_INT(admin_session_check(b, v, 1000000), 0);
  admin_stop(b);
  metrics_free(m2);
  admin_stop(a);
  metrics_free(m);
}

TEST(prefix_auth_and_budgets) {
  int calls = 0;
  struct metrics *m;
  struct admin *a = start(&calls, &m);
  if (!a) return;
  int port = admin_port(a);
  char *r = get(port, "/_p/api/x?q=1", "Authorization: Bearer tok\r\n");
  CHECK_CONTAINS(r, "200 OK");
  CHECK_CONTAINS(r, "GET|api/x|q=1|");
  CHECK_CONTAINS(r, "Content-Security-Policy: default-src 'self'");
  free(r);
  r = get(port, "/_p/api/x", "Authorization: Bearer wrong\r\n");
  CHECK_CONTAINS(r, "401");
  CHECK_CONTAINS(r, "application/json");
  free(r);
  r = get(port, "/_p/", "Accept: text/html,*/*\r\n");
  CHECK_CONTAINS(r, "303 See Other");
  CHECK_CONTAINS(r, "Location: /_p/login");
  free(r);
  r = get(port, "/_p", "");
  CHECK_CONTAINS(r, "Location: /_p/");
  free(r);
  r = get(port, "/_p/login", "");
  CHECK_CONTAINS(r, "name=token");
  free(r);
  r = post(port, "/_p/api/x", "Authorization: Bearer tok\r\n", "hi");
  CHECK_CONTAINS(r, "403");                              /* no X-Taskhost-Action */
  free(r);
  r = post(port, "/_p/api/x", "Authorization: Bearer tok\r\nX-Taskhost-Action: 1\r\n", "hi");
  CHECK_CONTAINS(r, "POST|api/x||hi");
  free(r);
  char big[ADMIN_BODY_MAX + 2];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  r = post(port, "/_p/api/x", "Authorization: Bearer tok\r\nX-Taskhost-Action: 1\r\n", big);
  CHECK_CONTAINS(r, "413");
  free(r);
  int before = calls;
  r = post(port, "/_p/login", "Content-Type: application/x-www-form-urlencoded\r\n", "token=nope");
  CHECK_CONTAINS(r, "401");
  CHECK(!strstr(r, "Set-Cookie"));
  free(r);
  r = post(port, "/_p/login", "Content-Type: application/x-www-form-urlencoded\r\n", "token=tok");
  CHECK_CONTAINS(r, "303 See Other");
  CHECK_CONTAINS(r, "HttpOnly; SameSite=Strict; Path=/_p/");
  char *c = strstr(r, ADMIN_SESSION_COOKIE "=");
  char cookie[ADMIN_COOKIE_LEN + 64] = "";
  if (c) {
    size_t n = strcspn(c, ";");
    snprintf(cookie, sizeof cookie, "Cookie: %.*s\r\n", (int)n, c);
  }
  free(r);
  CHECK_INT(calls, before);                              /* login is the listener's, not the handler's */
  r = get(port, "/_p/api/y", cookie);
  CHECK_CONTAINS(r, "GET|api/y||");
  free(r);
  r = get(port, "/metrics", cookie);
  CHECK_CONTAINS(r, "401");                              /* /metrics wants the bearer token */
  free(r);
  r = get(port, "/metrics", "Authorization: Bearer tok\r\n");
  CHECK_CONTAINS(r, "200 OK");
  free(r);
  r = get(port, "/other", "Authorization: Bearer tok\r\n");
  CHECK_CONTAINS(r, "404");
  free(r);
  admin_stop(a);
  metrics_free(m);
}

TEST(loopback_addresses) {
  static const struct { const char *addr; int loopback; } cases[] = {
    {"127.0.0.1:9090", 1}, {"127.1.2.3:0", 1}, {"localhost:9090", 1}, {"[::1]:9090", 1},
    {":9090", 0}, {"0.0.0.0:9090", 0}, {"10.0.0.5:9090", 0}, {"[::]:9090", 0}, {"example.org:80", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK_INT(admin_addr_is_loopback(cases[i].addr), cases[i].loopback);
}

int main(void) {
  RUN(session_cookies);
  RUN(prefix_auth_and_budgets);
  RUN(loopback_addresses);
  mg_exit_library();
  return T_DONE();
}
