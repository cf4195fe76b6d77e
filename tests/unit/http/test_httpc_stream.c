/*
** test_httpc_stream.c — the engine's streaming mode (host/http/httpc.h: head, sink,
** httpc_resume) against a civetweb server started here: head once before the body, after
** redirects; a sink that refuses pauses the transfer until httpc_resume; a head with no body.
** The callbacks run on the I/O thread and record into `S` under its lock.
*/
#include "t.h"
#include "http/httpc.h"

#include <civetweb.h>
#include <pthread.h>
#include <time.h>

#define WIN 65536
#define BIG 1000000

static struct mg_context *srv;
static int port;

static int h_big(struct mg_connection *c, void *ud) {
  (void)ud;
  static char chunk[10000];
  for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (char)('0' + i % 10);
  mg_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Kind: big\r\n\r\n", BIG);
  for (int i = 0; i < BIG / (int)sizeof chunk; i++) mg_write(c, chunk, sizeof chunk);
  return 200;
}

static int h_redir(struct mg_connection *c, void *ud) {
  (void)ud;
  mg_printf(c, "HTTP/1.1 302 Found\r\nLocation: /big\r\nX-Kind: redirect\r\nContent-Length: 0\r\n\r\n");
  return 302;
}

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int heads, sink_before_head, refusals, done, fail;
  long status;
  char kind[32], url[256];
  size_t buffered, total;
  unsigned sum;
} S = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void s_head(struct httpc_req *r) {
  pthread_mutex_lock(&S.mu);
  S.heads++;
  S.status = r->status;
  snprintf(S.url, sizeof S.url, "%s", r->eff_url ? r->eff_url : "");
  for (size_t i = 0; i < r->nhdrs; i++)
    if (strcmp(r->hdrs[i].name, "x-kind") == 0) snprintf(S.kind, sizeof S.kind, "%s", r->hdrs[i].value);
  pthread_mutex_unlock(&S.mu);
}

static int s_sink(struct httpc_req *r, const char *data, size_t len) {
  (void)r;
  pthread_mutex_lock(&S.mu);
  if (!S.heads) S.sink_before_head = 1;
  int full = S.buffered >= WIN;
  if (full) S.refusals++;
  else {
    S.buffered += len;
    for (size_t i = 0; i < len; i++) S.sum = S.sum * 31 + (unsigned char)data[i];
    S.total += len;
  }
  pthread_cond_broadcast(&S.cv);
  pthread_mutex_unlock(&S.mu);
  return full;
}

static void s_done(struct httpc_req *r) {
  pthread_mutex_lock(&S.mu);
  S.done = 1;
  S.fail = r->fail;
  pthread_cond_broadcast(&S.cv);
  pthread_mutex_unlock(&S.mu);
}

static void reset(void) {
  pthread_mutex_lock(&S.mu);
  S.heads = S.sink_before_head = S.refusals = S.done = S.fail = 0;
  S.status = 0;
  S.kind[0] = S.url[0] = '\0';
  S.buffered = S.total = 0;
  S.sum = 0;
  pthread_mutex_unlock(&S.mu);
}

/* Waits (hang detector: 20 s) until the transfer is done or refused more than `seen` times.
** Returns 1 then (lock held), 0 on the hang detector. */
static int wait_change(int seen) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 20;
  pthread_mutex_lock(&S.mu);
  int rc = 0;
  while (!S.done && S.refusals <= seen && rc == 0) rc = pthread_cond_timedwait(&S.cv, &S.mu, &ts);
  if (S.done || S.refusals > seen) return 1;
  pthread_mutex_unlock(&S.mu);
  return 0;
}

static struct httpc_req *stream_req(const char *path, long redirects) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  struct httpc_req *r = httpc_req_new("GET", url);
  r->head = s_head;
  r->sink = s_sink;
  r->done = s_done;
  r->timeout_ms = 20000;
  r->max_redirects = redirects;
  r->max_body = 1000;                          /* does not apply to a stream */
  return r;
}

static unsigned pattern_sum(size_t n) {
  unsigned s = 0;
  for (size_t i = 0; i < n; i++) s = s * 31 + (unsigned char)('0' + i % 10000 % 10);
  return s;
}

TEST(a_refusing_sink_pauses_until_resume_and_head_comes_after_the_redirect) {
  char err[200];
  struct httpc *h = httpc_new(NULL, err, sizeof err);
  CHECK(h != NULL);
  reset();
  struct httpc_req *r = stream_req("/redir", 5);
  CHECK_INT(httpc_submit(h, r), HTTPC_OK);
  uint64_t id = r->id;
  int seen = 0, pauses = 0, bounded = 0;
  while (bounded++ < 10000) {
    if (!wait_change(seen)) break;
    int done = S.done;
    if (!done) {                                 /* refused: drain the window, then resume */
      CHECK(S.buffered >= WIN);
      seen = S.refusals;
      S.buffered = 0;
      pauses++;
    }
    pthread_mutex_unlock(&S.mu);
    if (done) break;
    httpc_resume(h, id);
  }
  CHECK_INT(S.done, 1);
  CHECK_INT(S.fail, HF_NONE);
  CHECK_INT(S.heads, 1);
  CHECK_INT(S.sink_before_head, 0);
  CHECK_INT(S.status, 200);
  CHECK_STR(S.kind, "big");                     /* the redirect's head was not handed over */
  CHECK(strstr(S.url, "/big") != NULL);
  CHECK_INT(S.total, BIG);
  CHECK_INT(S.sum, pattern_sum(BIG));
  CHECK(pauses >= BIG / (WIN + 65536));           /* a piece curl hands over is at most 64 KiB */
  httpc_req_free(r);
  httpc_free(h);
}

TEST(a_head_with_no_body_then_done) {
  char err[200];
  struct httpc *h = httpc_new(NULL, err, sizeof err);
  CHECK(h != NULL);
  reset();
  struct httpc_req *r = stream_req("/redir", 0);
  CHECK_INT(httpc_submit(h, r), HTTPC_OK);
  CHECK(wait_change(1 << 30));
  pthread_mutex_unlock(&S.mu);
  CHECK_INT(S.fail, HF_NONE);
  CHECK_INT(S.heads, 1);
  CHECK_INT(S.status, 302);
  CHECK_STR(S.kind, "redirect");
  CHECK_INT(S.total, 0);
  httpc_req_free(r);
  httpc_free(h);
}

int main(void) {
  mg_init_library(0);
  const char *opts[] = {"listening_ports", "127.0.0.1:0", "num_threads", "4", NULL};
  srv = mg_start(NULL, NULL, opts);
  mg_set_request_handler(srv, "/big$", h_big, NULL);
  mg_set_request_handler(srv, "/redir$", h_redir, NULL);
  struct mg_server_port ports[1];
  mg_get_server_ports(srv, 1, ports);
  port = ports[0].port;
  RUN(a_refusing_sink_pauses_until_resume_and_head_comes_after_the_redirect);
  RUN(a_head_with_no_body_then_done);
  mg_stop(srv);
  mg_exit_library();
  return T_DONE();
}
