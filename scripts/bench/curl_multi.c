/* curl_multi: the engine's ceiling for scripts/bench-http-client. A plain-C libcurl multi
** client: one thread, epoll, curl's timer kept in user space (its deadline is the epoll_wait
** timeout; no timerfd, see shared/reference/http-client.md §1), N transfers kept in flight,
** each easy handle reused (removed and added again) for its next GET.
**
**   curl_multi URL INFLIGHT SECONDS
**
** Protocol (the same for every client of the bench): prints "START" when the timed window
** begins and "END" when it is over and the last transfer has drained, then waits for a line
** on stdin (the bench samples our CPU in between) and prints one line
** "RESULT requests=.. errors=.. p50_ms=.. p99_ms=..". Requests are the transfers completed
** inside the window; latency is from curl_multi_add_handle to the transfer's completion.
** One thread owns the multi and every easy handle.
*/
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

struct xfer { CURL *e; double t0; };

static int epfd;
static double deadline_ms = -1;   /* curl's timer, in now_ms() time; -1 = none */
static double *lat;
static size_t nlat, caplat;
static long errors;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t discard(char *p, size_t sz, size_t n, void *u) { (void)p; (void)u; return sz * n; }

static int on_socket(CURL *e, curl_socket_t s, int what, void *u, void *sp) {
  (void)e; (void)u;
  struct epoll_event ev = { .data.fd = s };
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
    return 0;
  }
  ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
    epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
  (void)sp;
  return 0;
}

static int on_timer(CURLM *m, long ms, void *u) {
  (void)m; (void)u;
  deadline_ms = ms < 0 ? -1 : now_ms() + ms;
  return 0;
}

static void record(double ms) {
  if (nlat == caplat) {
    caplat = caplat ? caplat * 2 : 65536;
    lat = realloc(lat, caplat * sizeof *lat);
    if (!lat) { perror("realloc"); exit(1); }
  }
  lat[nlat++] = ms;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double q) { return nlat ? lat[(size_t)(q * (nlat - 1))] : 0; }

/* Reads every finished transfer; records it if it ended inside the window, and starts the
** next GET on the same easy handle unless the window is over. Returns transfers still going. */
static int reap(CURLM *m, double end_ms, int running) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    struct xfer *x;
    long code = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    double t = now_ms();
    CURLcode rc = msg->data.result;
    curl_multi_remove_handle(m, x->e);
    running--;
    if (t <= end_ms) {
      if (rc != CURLE_OK || code != 200) errors++;
      else record(t - x->t0);
    }
    if (t < end_ms) {
      x->t0 = now_ms();
      curl_multi_add_handle(m, x->e);
      running++;
    }
  }
  return running;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s URL INFLIGHT SECONDS\n", argv[0]); return 2; }
  int n = atoi(argv[2]);
  double seconds = atof(argv[3]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM *m = curl_multi_init();
  epfd = epoll_create1(EPOLL_CLOEXEC);
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n);
  struct xfer *xs = calloc(n, sizeof *xs);
  for (int i = 0; i < n; i++) {
    CURL *e = xs[i].e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, argv[1]);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &xs[i]);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
  }
  printf("START\n");
  fflush(stdout);
  double end_ms = now_ms() + seconds * 1e3;
  for (int i = 0; i < n; i++) {
    xs[i].t0 = now_ms();
    curl_multi_add_handle(m, xs[i].e);
  }
  int running = n, still;
  struct epoll_event evs[256];
  while (running > 0) {
    double t = now_ms();
    int wait = deadline_ms < 0 ? 1000 : deadline_ms <= t ? 0 : (int)(deadline_ms - t) + 1;
    int k = epoll_wait(epfd, evs, 256, wait);
    for (int i = 0; i < k; i++) {
      int f = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
              (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
              (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(m, evs[i].data.fd, f, &still);
    }
    if (deadline_ms >= 0 && now_ms() >= deadline_ms) {
      deadline_ms = -1;
      curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &still);
    }
    running = reap(m, end_ms, running);
  }
  printf("END\n");
  fflush(stdout);
  char line[16];
  if (!fgets(line, sizeof line, stdin)) { /* EOF is as good as a line */ }
  qsort(lat, nlat, sizeof *lat, cmp);
  printf("RESULT requests=%zu errors=%ld p50_ms=%.3f p99_ms=%.3f\n", nlat, errors, pct(0.50),
         pct(0.99));
  for (int i = 0; i < n; i++) curl_easy_cleanup(xs[i].e);
  curl_multi_cleanup(m);
  curl_global_cleanup();
  free(xs);
  free(lat);
  return 0;
}
