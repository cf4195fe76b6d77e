/*
** httpgate.c — see httpgate.h.
*/
#define _GNU_SOURCE                     /* memmem */
#include "httpgate.h"
#include "base/log.h"
#include "base/util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SWEEP_MS 100       /* how often pressure is checked */
#define GRACE_MS 500       /* a connection this old with no head yet is slow (under pressure) */
#define BUSY_GRACE_MS 2000 /* a served connection that received bytes lately: its thread may
                              have read the next head and not begun it yet (a starved thread) */
#define PEEK 16384         /* civetweb's largest request head */

struct seen { uint64_t ino; int64_t first; };    /* when the sweeper first saw a socket */

struct httpgate {
  char *id;
  int threads, reserve;
  _Atomic int port;
  pthread_mutex_t lock;              /* slots, stop */
  pthread_cond_t wake;
  struct gate_slot **slots;
  size_t nslots;
  int stop;
  pthread_t sweeper;
  _Atomic uint64_t evicted;
  struct seen *seen;                 /* the sweeper's, sorted by inode */
  size_t nseen;
  int64_t last_log;                  /* the sweeper's: when it last logged a cut */
};

static uint64_t peer_key(const char *addr, int port) {
  uint32_t h = 2166136261u;                          /* FNV-1a of the address text */
  for (const unsigned char *p = (const unsigned char *)addr; *p; p++) h = (h ^ *p) * 16777619u;
  return ((uint64_t)h << 16) | (uint16_t)port;
}

void gate_open(struct gate_slot *s) {
  atomic_store_explicit(&s->peer, 0, memory_order_relaxed);
  gate_wait(s);
}

void gate_wait(struct gate_slot *s) {
  atomic_store_explicit(&s->since, clock_mono_ns(), memory_order_relaxed);
  atomic_store_explicit(&s->state, GATE_HEAD, memory_order_release);
}

void gate_busy(struct gate_slot *s, const char *remote_addr, int remote_port) {
  atomic_store_explicit(&s->peer, peer_key(remote_addr, remote_port), memory_order_relaxed);
  atomic_store_explicit(&s->state, GATE_BUSY, memory_order_release);
}

static int port_of(const struct sockaddr_storage *ss) {
  return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                        : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* The peer key of a connected TCP socket on our port, or 0. */
static uint64_t socket_key(int fd, int port) {
  struct sockaddr_storage ss;
  socklen_t n = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &n) != 0) return 0;
  if ((ss.ss_family != AF_INET && ss.ss_family != AF_INET6) || port_of(&ss) != port) return 0;
  n = sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &n) != 0) return 0;   /* the listener */
  char text[INET6_ADDRSTRLEN];
  const void *a = ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                          : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
  if (!inet_ntop(ss.ss_family, a, text, sizeof text)) return 0;
  return peer_key(text, port_of(&ss));
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int64_t first_seen(const struct httpgate *g, uint64_t ino, int64_t now) {
  if (!g->nseen) return now;
  const struct seen *e = bsearch(&ino, g->seen, g->nseen, sizeof *g->seen, cmp_u64);
  return e ? e->first : now;
}

/* A client waiting in line has its whole head in the receive queue, unread. */
static int head_waiting(int fd) {
  char buf[PEEK];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  return n > 0 && memmem(buf, (size_t)n, "\r\n\r\n", 4) != NULL;
}

/* What the threads say about the connections they have served a request on. */
struct known {
  uint64_t key;
  int slow;                  /* waiting GRACE_MS for its next head */
  int64_t waited;            /* ns its thread has waited for that head */
};

/* Bytes arrived on the socket within the last GRACE_MS (TCP_INFO's last_data_recv). */
static int received_lately(int fd) {
  struct tcp_info ti;
  socklen_t n = sizeof ti;
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) == 0 && ti.tcpi_last_data_recv < GRACE_MS;
}

/* Cuts socket fd (key k, inode ino): a connection a thread knows, if that thread calls it
** slow; one no request was served on yet; either unless a whole head waits in its receive
** queue (a client in line, or a busy keep-alive client whose next head has come while its
** thread was slow to read it: a starved thread is not an idle connection). A known one that
** received bytes in the last GRACE_MS is kept until its thread has waited BUSY_GRACE_MS: its
** thread may have read the next head already (the receive queue is empty) and not yet begun
** the request because it was not scheduled — cutting then lost a busy client's request. */
static int cut(int fd, uint64_t k, uint64_t ino, int port, const struct known *kn) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);              /* pins the socket while we check */
  if (d < 0) return 0;
  struct stat st;
  int ok = socket_key(d, port) == k && fstat(d, &st) == 0 && st.st_ino == ino
           && (!kn || kn->slow) && !head_waiting(d)
           && !(kn && kn->waited < BUSY_GRACE_MS * NS_PER_MS && received_lately(d))
           && shutdown(d, SHUT_RDWR) == 0;
  close(d);
  return ok;
}

/* Under pressure (fewer than the reserve of threads free, and some thread waiting GRACE_MS
** for a head): what the threads know, sorted by key, and its length; else -1. */
static long pressure(struct httpgate *g, struct known **kn) {
  int64_t now = clock_mono_ns();
  size_t used = 0, n = 0, slow = 0;
  pthread_mutex_lock(&g->lock);
  *kn = xmalloc((g->nslots + 1) * sizeof **kn);
  for (size_t i = 0; i < g->nslots; i++) {
    struct gate_slot *sl = g->slots[i];
    int st = atomic_load_explicit(&sl->state, memory_order_acquire);
    if (st == GATE_IDLE) continue;
    used++;
    int64_t waited = st == GATE_HEAD ? now - atomic_load_explicit(&sl->since, memory_order_relaxed) : 0;
    int old = waited >= GRACE_MS * NS_PER_MS;
    slow += (size_t)old;
    uint64_t key = atomic_load_explicit(&sl->peer, memory_order_relaxed);
    if (key) (*kn)[n++] = (struct known){key, old, waited};
  }
  pthread_mutex_unlock(&g->lock);
  if ((long)used + g->reserve <= g->threads || !slow) return -1;
  qsort(*kn, n, sizeof **kn, cmp_u64);                 /* key is the first member */
  return (long)n;
}

/* One look at the server's sockets; returns how many were cut. */
static size_t scan(struct httpgate *g, const struct known *kn, size_t nkn) {
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  int port = atomic_load(&g->port);
  int64_t now = clock_mono_ns();
  size_t done = 0, n = 0, cap = g->nseen + 64;
  struct seen *next = xmalloc(cap * sizeof *next);
  for (struct dirent *e; (e = readdir(dir)) != NULL;) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = atoi(e->d_name);
    struct stat st;
    uint64_t k;
    if (fd == dirfd(dir) || !(k = socket_key(fd, port)) || fstat(fd, &st) != 0) continue;
    int64_t first = first_seen(g, st.st_ino, now);
    if (n == cap) next = xrealloc(next, (cap *= 2) * sizeof *next);
    next[n++] = (struct seen){st.st_ino, first};
    if (now - first < GRACE_MS * NS_PER_MS) continue;
    const struct known *found = nkn ? bsearch(&k, kn, nkn, sizeof *kn, cmp_u64) : NULL;
    done += (size_t)cut(fd, k, st.st_ino, port, found);
  }
  closedir(dir);
  qsort(next, n, sizeof *next, cmp_u64);
  free(g->seen);
  g->seen = next;
  g->nseen = n;
  return done;
}

static void sweep(struct httpgate *g) {
  struct known *kn;
  long nkn = pressure(g, &kn);
  size_t done = 0;
  if (nkn < 0) {                                     /* no pressure: forget what we saw */
    free(g->seen);
    g->seen = NULL;
    g->nseen = 0;
  } else {
    done = scan(g, kn, (size_t)nkn);
  }
  free(kn);
  if (!done) return;
  atomic_fetch_add(&g->evicted, done);
  int64_t now = clock_mono_ns();
  if (now - g->last_log >= 10000 * NS_PER_MS) {     /* one line per 10 s under attack */
    g->last_log = now;
    log_warn("%s: all threads busy; closed %zu connections slow to send a request "
             "(%llu so far)", g->id, done, (unsigned long long)atomic_load(&g->evicted));
  }
}

static void *sweeper_main(void *arg) {
  struct httpgate *g = arg;
  pthread_mutex_lock(&g->lock);
  while (!g->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += SWEEP_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&g->wake, &g->lock, &ts);
    if (g->stop) break;
    pthread_mutex_unlock(&g->lock);
    if (atomic_load(&g->port)) sweep(g);
    pthread_mutex_lock(&g->lock);
  }
  pthread_mutex_unlock(&g->lock);
  return NULL;
}

struct httpgate *httpgate_new(const char *id, int threads) {
  struct httpgate *g = xcalloc(1, sizeof *g);
  g->id = xstrdup(id);
  g->threads = threads > 0 ? threads : 1;
  g->reserve = g->threads / 8 > 0 ? g->threads / 8 : 1;
  g->last_log = clock_mono_ns() - 10000 * NS_PER_MS;
  pthread_mutex_init(&g->lock, NULL);
  pthread_cond_init(&g->wake, NULL);
  pthread_create(&g->sweeper, NULL, sweeper_main, g);
  return g;
}

void httpgate_set_port(struct httpgate *g, int local_port) { atomic_store(&g->port, local_port); }

void httpgate_add(struct httpgate *g, struct gate_slot *slot) {
  pthread_mutex_lock(&g->lock);
  g->slots = xrealloc(g->slots, (g->nslots + 1) * sizeof *g->slots);
  g->slots[g->nslots++] = slot;
  pthread_mutex_unlock(&g->lock);
}

uint64_t httpgate_evicted(const struct httpgate *g) { return atomic_load(&g->evicted); }

void httpgate_free(struct httpgate *g) {
  if (!g) return;
  pthread_mutex_lock(&g->lock);
  g->stop = 1;
  pthread_cond_signal(&g->wake);
  pthread_mutex_unlock(&g->lock);
  pthread_join(g->sweeper, NULL);
  pthread_cond_destroy(&g->wake);
  pthread_mutex_destroy(&g->lock);
  free(g->slots);
  free(g->seen);
  free(g->id);
  free(g);
}
