/*
** test_httpc.c — the http_client engine (host/http/httpc.c) against a civetweb server
** started here on 127.0.0.1:0: responses, headers, bodies, redirects, limits, timeouts,
** aborts and shutdown. Completions are collected by a done callback (the I/O thread's).
*/
#include "t.h"
#include "http/httpc.h"

#include <civetweb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static struct mg_context *srv;
static int port;
static _Atomic int release_slow;

/* ---- the server ---- */

static int h_hello(struct mg_connection *c, void *ud) {
  (void)ud;
  mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Rep: a\r\nX-Rep: b\r\n"
               "X-Mixed-Case:  v  \r\n\r\nhello");
  return 200;
}

static int h_echo(struct mg_connection *c, void *ud) {
  (void)ud;
  char body[4096];
  int n = mg_read(c, body, sizeof body), len = n > 0 ? n : 0;
  const struct mg_request_info *ri = mg_get_request_info(c);
  mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Method: %s\r\n\r\n", len, ri->request_method);
  mg_write(c, body, (size_t)len);
  return 200;
}

static int h_big(struct mg_connection *c, void *ud) {
  (void)ud;
  static char chunk[10000];
  memset(chunk, 'x', sizeof chunk);
  mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 10 * (int)sizeof chunk);
  for (int i = 0; i < 10; i++) mg_write(c, chunk, sizeof chunk);
  return 200;
}

static int h_slow(struct mg_connection *c, void *ud) {
  (void)ud;
  for (int i = 0; i < 500 && !atomic_load(&release_slow); i++) usleep(10000);
  mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate");
  return 200;
}

static int h_redir(struct mg_connection *c, void *ud) {
  (void)ud;
  mg_printf(c, "HTTP/1.1 302 Found\r\nLocation: /hello\r\nX-Rep: from-redirect\r\nContent-Length: 0\r\n\r\n");
  return 302;
}

/* 40 headers of ~70 bytes (past the request's reserved header text) and a repeated one
** before and after them: its join happens after the text moved. */
static int h_many(struct mg_connection *c, void *ud) {
  (void)ud;
  mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Rep: first\r\n");
  for (int i = 0; i < 40; i++)
    mg_printf(c, "X-H-%02d: %02d-0123456789012345678901234567890123456789012345678901234567\r\n", i, i);
  mg_printf(c, "X-Rep: last\r\n\r\nok");
  return 200;
}

static void server_start(void) {
  const char *opts[] = {"listening_ports", "127.0.0.1:0", "num_threads", "16", NULL};
  srv = mg_start(NULL, NULL, opts);
  mg_set_request_handler(srv, "/hello$", h_hello, NULL);
  mg_set_request_handler(srv, "/echo$", h_echo, NULL);
  mg_set_request_handler(srv, "/big$", h_big, NULL);
  mg_set_request_handler(srv, "/slow$", h_slow, NULL);
  mg_set_request_handler(srv, "/redir$", h_redir, NULL);
  mg_set_request_handler(srv, "/many$", h_many, NULL);
  struct mg_server_port ports[1];
  mg_get_server_ports(srv, 1, ports);
  port = ports[0].port;
}

/* ---- completions ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct httpc_req *done_list[4096];
static int ndone;

static void on_done(struct httpc_req *r) {
  pthread_mutex_lock(&mu);
  done_list[ndone++] = r;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

/* Waits (hang detector: 20 s) until n requests completed. */
static int wait_done(int n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 20;
  pthread_mutex_lock(&mu);
  int rc = 0;
  while (ndone < n && rc == 0) rc = pthread_cond_timedwait(&cv, &mu, &ts);
  int got = ndone;
  pthread_mutex_unlock(&mu);
  return got >= n;
}

static void reset_done(void) {
  pthread_mutex_lock(&mu);
  for (int i = 0; i < ndone; i++) httpc_req_free(done_list[i]);
  ndone = 0;
  pthread_mutex_unlock(&mu);
}

static struct httpc_req *req(const char *method, const char *path) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  struct httpc_req *r = httpc_req_new(method, url);
  r->done = on_done;
  r->timeout_ms = 10000;
  return r;
}

static const char *hdr(const struct httpc_req *r, const char *name) {
  for (size_t i = 0; i < r->nhdrs; i++)
    if (strcmp(r->hdrs[i].name, name) == 0) return r->hdrs[i].value;
  return NULL;
}

static struct httpc *engine(long in_flight) {
  char err[200];
  struct httpc_limits lim = {0, 0, in_flight};
  struct httpc *h = httpc_new(&lim, err, sizeof err);
  if (!h) printf("  %s\n", err);
  return h;
}

/* ---- tests ---- */

TEST(get_with_headers_joined_and_lower_cased) {
  struct httpc *h = engine(0);
  CHECK_INT(httpc_submit(h, req("GET", "/hello")), HTTPC_OK);
  CHECK(wait_done(1));
  struct httpc_req *r = done_list[0];
  CHECK_INT(r->fail, HF_NONE);
  CHECK_INT(r->status, 200);
  CHECK_STR(r->resp.data, "hello");
  CHECK_STR(hdr(r, "x-rep"), "a, b");
  CHECK_STR(hdr(r, "x-mixed-case"), "v");
  CHECK_CONTAINS(r->eff_url, "/hello");
  reset_done();
  httpc_free(h);
}

TEST(many_headers_outgrow_the_reserve) {
  struct httpc *h = engine(0);
  CHECK_INT(httpc_submit(h, req("GET", "/many")), HTTPC_OK);
  CHECK(wait_done(1));
  struct httpc_req *r = done_list[0];
  CHECK_INT(r->status, 200);
  CHECK_STR(hdr(r, "x-rep"), "first, last");
  char name[16], want[80];
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof name, "x-h-%02d", i);
    snprintf(want, sizeof want, "%02d-0123456789012345678901234567890123456789012345678901234567", i);
    CHECK_STR(hdr(r, name), want);
  }
  reset_done();
  httpc_free(h);
}

/* One transfer at a time, so each reuses the easy handle the one before left: a plain GET
** after a HEAD or a PUT must not inherit their options. */
TEST(a_reused_handle_forgets_the_options_before) {
  struct httpc *h = engine(0);
  const char *seq[][2] = {{"HEAD", "/hello"}, {"GET", "/hello"}, {"PUT", "/echo"}, {"GET", "/echo"},
                          {"GET", "/hello"}};
  for (int i = 0; i < 5; i++) {
    CHECK_INT(httpc_submit(h, req(seq[i][0], seq[i][1])), HTTPC_OK);
    CHECK(wait_done(i + 1));
    CHECK_INT(done_list[i]->status, 200);
  }
  CHECK_INT(done_list[0]->resp.len, 0);
  CHECK_STR(done_list[1]->resp.data, "hello");
  CHECK_STR(hdr(done_list[2], "x-method"), "PUT");
  CHECK_STR(hdr(done_list[3], "x-method"), "GET");
  CHECK_STR(done_list[4]->resp.data, "hello");
  reset_done();
  httpc_free(h);
}

TEST(bodies_and_methods) {
  struct httpc *h = engine(0);
  struct httpc_req *r = req("PUT", "/echo");
  r->body = strdup("payload");
  r->body_len = 7;
  r->has_body = 1;
  CHECK_INT(httpc_submit(h, r), HTTPC_OK);
  CHECK_INT(httpc_submit(h, req("DELETE", "/echo")), HTTPC_OK);
  CHECK(wait_done(2));
  for (int i = 0; i < 2; i++) {
    struct httpc_req *x = done_list[i];
    CHECK_INT(x->status, 200);
    if (strcmp(x->method, "PUT") == 0) {
      CHECK_STR(x->resp.data, "payload");
      CHECK_STR(hdr(x, "x-method"), "PUT");
    } else {
      CHECK_INT(x->resp.len, 0);
      CHECK_STR(hdr(x, "x-method"), "DELETE");
    }
  }
  reset_done();
  httpc_free(h);
}

TEST(redirects_followed_or_not) {
  struct httpc *h = engine(0);
  struct httpc_req *a = req("GET", "/redir"), *b = req("GET", "/redir");
  a->max_redirects = 3;
  httpc_submit(h, a);
  CHECK(wait_done(1));
  CHECK_INT(done_list[0]->status, 200);
  CHECK_CONTAINS(done_list[0]->eff_url, "/hello");
  CHECK_STR(hdr(done_list[0], "x-rep"), "a, b");      /* the redirect's headers are gone */
  reset_done();
  httpc_submit(h, b);
  CHECK(wait_done(1));
  CHECK_INT(done_list[0]->status, 302);
  reset_done();
  httpc_free(h);
}

TEST(body_over_the_limit_fails) {
  struct httpc *h = engine(0);
  struct httpc_req *r = req("GET", "/big");
  r->max_body = 50000;
  httpc_submit(h, r);
  struct httpc_req *ok = req("GET", "/big");
  ok->max_body = 100000;
  httpc_submit(h, ok);
  CHECK(wait_done(2));
  for (int i = 0; i < 2; i++) {
    struct httpc_req *x = done_list[i];
    if (x->max_body == 50000) {
      CHECK_INT(x->fail, HF_TOO_LARGE);
      CHECK_CONTAINS(x->errmsg, "max_response_body");
    } else {
      CHECK_INT(x->fail, HF_NONE);
      CHECK_INT(x->resp.len, 100000);
    }
  }
  reset_done();
  httpc_free(h);
}

TEST(refused_and_bad_url) {
  struct httpc *h = engine(0);
  struct httpc_req *r = httpc_req_new("GET", "http://127.0.0.1:1/");
  r->done = on_done;
  httpc_submit(h, r);
  CHECK(wait_done(1));
  CHECK_INT(done_list[0]->fail, HF_UNAVAILABLE);
  reset_done();
  r = httpc_req_new("GET", "nosuch://x/");
  r->done = on_done;
  httpc_submit(h, r);
  CHECK(wait_done(1));
  CHECK_INT(done_list[0]->fail, HF_INVALID);
  reset_done();
  httpc_free(h);
}

TEST(timeout_abort_and_busy) {
  atomic_store(&release_slow, 0);
  struct httpc *h = engine(2);
  struct httpc_req *t = req("GET", "/slow"), *a = req("GET", "/slow");
  t->timeout_ms = 200;
  CHECK_INT(httpc_submit(h, t), HTTPC_OK);
  CHECK_INT(httpc_submit(h, a), HTTPC_OK);
  struct httpc_req *over = req("GET", "/hello");
  CHECK_INT(httpc_submit(h, over), HTTPC_BUSY);        /* max_in_flight 2 */
  httpc_req_free(over);
  CHECK(wait_done(1));
  CHECK_INT(done_list[0]->fail, HF_TIMEOUT);
  httpc_abort(h, a->id);
  httpc_abort(h, 999999);                              /* unknown ids are ignored */
  CHECK(wait_done(2));
  CHECK_INT(done_list[1]->fail, HF_CANCELED);
  CHECK_INT(httpc_in_flight(h), 0);
  reset_done();
  httpc_free(h);
  atomic_store(&release_slow, 1);
}

TEST(shutdown_hands_back_everything_in_flight) {
  atomic_store(&release_slow, 0);
  struct httpc *h = engine(0);
  for (int i = 0; i < 5; i++) httpc_submit(h, req("GET", "/slow"));
  usleep(50000);
  httpc_free(h);                                       /* done runs for each, then returns */
  CHECK_INT(ndone, 5);
  for (int i = 0; i < ndone; i++) CHECK_INT(done_list[i]->fail, HF_CANCELED);
  reset_done();
  atomic_store(&release_slow, 1);
}

TEST(many_in_flight_reuse_the_engine) {
  struct httpc *h = engine(0);
  for (int i = 0; i < 500; i++) CHECK_INT(httpc_submit(h, req("GET", "/hello")), HTTPC_OK);
  CHECK(wait_done(500));
  int ok = 0;
  for (int i = 0; i < ndone; i++) ok += done_list[i]->status == 200 && done_list[i]->resp.len == 5;
  CHECK_INT(ok, 500);
  reset_done();
  httpc_free(h);
}

/* Aborts racing completions: every request still comes back exactly once (ASan checks the
** rest), either answered or cancelled. */
TEST(aborts_racing_completions_hand_back_once) {
  struct httpc *h = engine(0);
  uint64_t ids[300];
  for (int i = 0; i < 300; i++) {
    struct httpc_req *r = req("GET", "/hello");
    CHECK_INT(httpc_submit(h, r), HTTPC_OK);
    ids[i] = r->id;                            /* r stays alive: done_list keeps it until reset */
    if (i % 3 == 0) httpc_abort(h, ids[i]);
  }
  for (int i = 0; i < 300; i += 2) httpc_abort(h, ids[i]);
  CHECK(wait_done(300));
  usleep(100000);                              /* a second hand-back would show here */
  CHECK_INT(ndone, 300);
  int answered = 0, canceled = 0;
  for (int i = 0; i < ndone; i++) {
    answered += done_list[i]->fail == HF_NONE && done_list[i]->status == 200;
    canceled += done_list[i]->fail == HF_CANCELED;
  }
  CHECK_INT(answered + canceled, 300);          /* how many of each depends on the race */
  reset_done();
  httpc_free(h);
}

int main(void) {
  mg_init_library(0);
  server_start();
  RUN(get_with_headers_joined_and_lower_cased);
  RUN(many_headers_outgrow_the_reserve);
  RUN(a_reused_handle_forgets_the_options_before);
  RUN(bodies_and_methods);
  RUN(redirects_followed_or_not);
  RUN(body_over_the_limit_fails);
  RUN(refused_and_bad_url);
  RUN(timeout_abort_and_busy);
  RUN(shutdown_hands_back_everything_in_flight);
  RUN(many_in_flight_reuse_the_engine);
  RUN(aborts_racing_completions_hand_back_once);
  atomic_store(&release_slow, 1);
  mg_stop(srv);
  mg_exit_library();
  return T_DONE();
}
