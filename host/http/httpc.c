/*
** httpc.c — see httpc.h. The I/O thread's loop: epoll_wait until the curl timer's deadline
** or a socket/eventfd event; curl_multi_socket_action for each; take the submissions and
** aborts; read finished transfers and hand each request back through its done callback.
** Owner: the fields under `lock` are shared with submitting threads; everything else
** (the multi, easy handles, `live`, `free_easy`, `deadline`) is the I/O thread's.
*/
#define _GNU_SOURCE
#include "httpc.h"
#include "base/hmap.h"
#include "base/log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_FREE_EASY 256

struct httpc {
  pthread_t th;
  int ep, efd;
  CURLM *multi;
  struct httpc_limits lim;
  _Atomic long in_flight;
  _Atomic uint64_t next_id;

  pthread_mutex_t lock;             /* guards the three below */
  struct httpc_req *subs, *subs_tail;
  uint64_t *aborts; size_t naborts, capaborts;
  int signaled;                     /* the eventfd was written since the last take */
  int stopping;

  /* I/O thread only */
  struct hmap live;                 /* id → request added to the multi */
  struct idle_easy { CURL *e; int dirty; } free_easy[MAX_FREE_EASY];   /* dirty: not plain */
  int nfree_easy;
  int64_t deadline;                 /* curl's timer, monotonic ns; -1 = none */
};

/* ---- requests ------------------------------------------------------------------- */

/* Room reserved here, on the owner's thread, for a small response: the I/O thread then
** writes into the owner's memory and the owner frees its own (a free of memory another
** thread malloc'd takes that thread's arena lock, which the I/O thread's mallocs contend
** for). Larger responses grow past it on the I/O thread. */
#define RESERVE_BODY 256
#define RESERVE_HDR_TEXT 512
#define RESERVE_HDRS 8

struct httpc_req *httpc_req_new(const char *method, const char *url) {
  struct httpc_req *r = xcalloc(1, sizeof *r);
  r->method = xstrdup(method);
  r->url = xstrdup(url);
  buf_init(&r->resp);
  buf_grow(&r->resp, RESERVE_BODY);
  buf_init(&r->hdr_text);
  buf_grow(&r->hdr_text, RESERVE_HDR_TEXT);
  r->caphdrs = RESERVE_HDRS;
  r->hdrs = xmalloc(r->caphdrs * sizeof *r->hdrs);
  return r;
}

void httpc_req_header(struct httpc_req *r, const char *line) {
  struct curl_slist *n = curl_slist_append(r->headers, line);
  if (!n) abort();
  r->headers = n;
}

/* Every header's "name\0value\0" lives in r->hdr_text; hdrs[] point into it. */
static void clear_headers(struct httpc_req *r) {
  r->nhdrs = 0;
  buf_reset(&r->hdr_text);
}

/* Appends "name\0" v1 v2 "\0" to hdr_text and points h at it (rebasing every header when
** the text moves). */
static void set_header(struct httpc_req *r, struct httpc_hdr *h, const char *name, size_t nlen,
                       const char *v1, size_t l1, const char *v2, size_t l2) {
  struct buf *t = &r->hdr_text;
  size_t need = nlen + 1 + l1 + l2 + 1;
  if (t->len + need + 1 > t->cap) {
    size_t *off = xmalloc((r->nhdrs + 1) * sizeof *off);
    for (size_t i = 0; i < r->nhdrs; i++) off[i] = (size_t)(r->hdrs[i].name - t->data);
    buf_reserve(t, need);
    for (size_t i = 0; i < r->nhdrs; i++) {
      size_t vo = off[i] + strlen(t->data + off[i]) + 1;
      r->hdrs[i] = (struct httpc_hdr){t->data + off[i], t->data + vo};
    }
    free(off);
  }
  size_t at = t->len;
  buf_add(t, name, nlen);
  buf_addc(t, '\0');
  buf_add(t, v1, l1);
  buf_add(t, v2, l2);
  buf_addc(t, '\0');
  h->name = t->data + at;
  h->value = t->data + at + nlen + 1;
}

void httpc_req_free(struct httpc_req *r) {
  if (!r) return;
  free(r->method); free(r->url); free(r->body); free(r->unix_socket);
  free(r->tls_ca); free(r->tls_cert); free(r->tls_key); free(r->tls_server_name);
  curl_slist_free_all(r->headers);
  curl_slist_free_all(r->connect_to);
  free(r->url_sent);
  buf_free(&r->resp);
  buf_free(&r->hdr_text);
  free(r->hdrs);
  free(r->eff_url);
  free(r);
}

/* ---- curl callbacks (I/O thread) ------------------------------------------------- */

/* Streaming: the head goes to the owner once, with the URL it was answered from. */
static void emit_head(struct httpc_req *r) {
  char *url = NULL;
  r->head_sent = 1;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
  if (!url || (r->url_sent && strcmp(url, r->url_sent) == 0)) url = r->url;
  free(r->eff_url);
  r->eff_url = xstrdup(url);
  r->head(r);
}

static int has_hdr(const struct httpc_req *r, const char *name) {
  for (size_t i = 0; i < r->nhdrs; i++) if (strcmp(r->hdrs[i].name, name) == 0) return 1;
  return 0;
}

/* Streaming: the blank line ending a head. Final unless 1xx or a redirect curl follows. */
static void head_end(struct httpc_req *r) {
  long code = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
  if (code / 100 == 1) return;
  if (code / 100 == 3 && r->max_redirects > 0 && has_hdr(r, "location")) return;
  emit_head(r);
}

/* A first chunk that does not fit the reserve: room for the whole announced length at
** once (within max_body) instead of doubling up to it. */
static void reserve_announced(struct httpc_req *r) {
  curl_off_t cl = -1;
  if (curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK || cl <= 0) return;
  if (r->max_body && (size_t)cl > r->max_body) return;
  buf_grow(&r->resp, (size_t)cl + 1);
}

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  struct httpc_req *r = ud;
  size_t len = size * n;
  if (r->sink) {
    if (!r->head_sent) emit_head(r);
    return r->sink(r, data, len) ? CURL_WRITEFUNC_PAUSE : len;
  }
  if (r->max_body && r->resp.len + len > r->max_body) {
    r->fail = HF_TOO_LARGE;
    return 0;                               /* CURLE_WRITE_ERROR: curl stops the transfer */
  }
  if (r->resp.len == 0 && len + 1 > r->resp.cap) reserve_announced(r);
  buf_add(&r->resp, data, len);
  return len;
}

/* name is already lower-cased. A repeated name joins its values with ", " (the joined
** value is appended as a new entry; the old text stays unused until the next response). */
static void add_header(struct httpc_req *r, const char *name, size_t nlen, const char *val, size_t vlen) {
  for (size_t i = 0; i < r->nhdrs; i++) {
    struct httpc_hdr *h = &r->hdrs[i];
    if ((size_t)(h->value - h->name) != nlen + 1 || memcmp(h->name, name, nlen) != 0) continue;
    size_t old = strlen(h->value);
    char *joined = xmalloc(old + 2 + vlen);   /* h->value may move while appending */
    memcpy(joined, h->value, old);
    memcpy(joined + old, ", ", 2);
    memcpy(joined + old + 2, val, vlen);
    set_header(r, h, name, nlen, joined, old + 2 + vlen, "", 0);
    free(joined);
    return;
  }
  if (r->nhdrs == r->caphdrs) {
    r->caphdrs = r->caphdrs ? r->caphdrs * 2 : 8;
    r->hdrs = xrealloc(r->hdrs, r->caphdrs * sizeof *r->hdrs);
  }
  set_header(r, &r->hdrs[r->nhdrs], name, nlen, val, vlen, "", 0);
  r->nhdrs++;
}

/* One header line. A status line starts a new response (a redirect, a 1xx): drop the
** headers collected so far. Names are lower-cased before add_header compares them. */
static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  struct httpc_req *r = ud;
  size_t len = size * n, end = len;
  while (end && (data[end - 1] == '\r' || data[end - 1] == '\n')) end--;
  if (end >= 5 && memcmp(data, "HTTP/", 5) == 0) { clear_headers(r); return len; }
  if (end == 0 && r->sink && !r->head_sent) { head_end(r); return len; }
  const char *colon = memchr(data, ':', end);
  if (!colon || colon == data) return len;
  size_t nlen = (size_t)(colon - data);
  char name[256];
  if (nlen >= sizeof name) return len;
  for (size_t i = 0; i < nlen; i++) name[i] = (char)tolower((unsigned char)data[i]);
  const char *v = colon + 1, *ve = data + end;
  while (v < ve && (*v == ' ' || *v == '\t')) v++;
  while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
  add_header(r, name, nlen, v, (size_t)(ve - v));
  return len;
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp) {
  (void)e;
  struct httpc *h = ud;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(h->ep, EPOLL_CTL_DEL, s, NULL);
    curl_multi_assign(h->multi, s, NULL);
    return 0;
  }
  struct epoll_event ev = {0};
  ev.data.fd = s;
  if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
  if (sockp) {
    epoll_ctl(h->ep, EPOLL_CTL_MOD, s, &ev);
  } else {
    epoll_ctl(h->ep, EPOLL_CTL_ADD, s, &ev);
    curl_multi_assign(h->multi, s, h);       /* any non-NULL marks it registered */
  }
  return 0;
}

static int on_timer(CURLM *m, long ms, void *ud) {
  (void)m;
  struct httpc *h = ud;
  h->deadline = ms < 0 ? -1 : clock_mono_ns() + (int64_t)ms * 1000000;
  return 0;
}

/* ---- starting and finishing transfers (I/O thread) -------------------------------- */

/* A plain request (GET, no body, TLS or unix socket options) sets only the options every
** request sets; a handle whose last request was plain is reused without curl_easy_reset,
** its constant options (set once, by set_constant) kept. *fresh: the handle has none. */
static int is_plain(const struct httpc_req *r) {
  return strcmp(r->method, "GET") == 0 && !r->has_body && !r->unix_socket && !r->tls_ca &&
         !r->tls_cert && !r->tls_key && !r->tls_server_name && !r->tls_insecure &&
         !r->sink;                         /* a stream may leave its handle paused: reset it */
}

static CURL *take_easy(struct httpc *h, int plain, int *fresh) {
  *fresh = 1;
  if (h->nfree_easy) {
    struct idle_easy *ie = &h->free_easy[--h->nfree_easy];
    if (plain && !ie->dirty) *fresh = 0;
    else curl_easy_reset(ie->e);
    return ie->e;
  }
  return curl_easy_init();
}

static void put_easy(struct httpc *h, CURL *e, int dirty) {
  if (h->nfree_easy < MAX_FREE_EASY) h->free_easy[h->nfree_easy++] = (struct idle_easy){e, dirty};
  else curl_easy_cleanup(e);
}

static void set_method(CURL *e, struct httpc_req *r) {
  if (strcmp(r->method, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "POST") != 0)
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  if (r->has_body || strcmp(r->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    if (strcmp(r->method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  }
}

static int has_header(const struct curl_slist *l, const char *name) {
  size_t n = strlen(name);
  for (; l; l = l->next)
    if (strncasecmp(l->data, name, n) == 0 && l->data[n] == ':') return 1;
  return 0;
}

/* server_name: the URL gets that host (curl's SNI and verification name), CONNECT_TO sends
** the connection to the original host and port, Host keeps the original. 0, or -1 for a
** URL curl cannot parse (the transfer then fails on it as usual). */
static int set_server_name(CURL *e, struct httpc_req *r) {
  CURLU *u = curl_url();
  char *host = NULL, *port = NULL, *out = NULL;
  int rc = -1;
  if (curl_url_set(u, CURLUPART_URL, r->url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
      curl_url_set(u, CURLUPART_HOST, r->tls_server_name, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s:%s:%s:%s", r->tls_server_name, port, host, port);
    r->connect_to = curl_slist_append(NULL, b.data);
    if (!has_header(r->headers, "Host")) {
      buf_reset(&b);
      buf_printf(&b, "Host: %s:%s", host, port);
      httpc_req_header(r, b.data);
    }
    buf_free(&b);
    r->url_sent = xstrdup(out);
    curl_easy_setopt(e, CURLOPT_URL, r->url_sent);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, r->connect_to);
    rc = 0;
  }
  curl_free(host);
  curl_free(port);
  curl_free(out);
  curl_url_cleanup(u);
  return rc;
}

/* A PEM file path, or PEM text (it contains "-----BEGIN") given as a blob curl copies. */
static void set_pem(CURL *e, CURLoption path_opt, CURLoption blob_opt, const char *v) {
  if (!strstr(v, "-----BEGIN")) { curl_easy_setopt(e, path_opt, v); return; }
  struct curl_blob b = {(void *)v, strlen(v), CURL_BLOB_COPY};
  curl_easy_setopt(e, blob_opt, &b);
}

static void set_tls(CURL *e, struct httpc_req *r) {
  if (r->tls_server_name) set_server_name(e, r);
  if (r->tls_ca) set_pem(e, CURLOPT_CAINFO, CURLOPT_CAINFO_BLOB, r->tls_ca);
  if (r->tls_cert) set_pem(e, CURLOPT_SSLCERT, CURLOPT_SSLCERT_BLOB, r->tls_cert);
  if (r->tls_key) set_pem(e, CURLOPT_SSLKEY, CURLOPT_SSLKEY_BLOB, r->tls_key);
  if (r->tls_insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

static void finish(struct httpc *h, struct httpc_req *r, CURLcode rc);

/* The options that are the same for every request: set once per fresh or reset handle. */
static void set_constant(CURL *e) {
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
}

static void start(struct httpc *h, struct httpc_req *r) {
  int plain = is_plain(r), fresh;
  CURL *e = take_easy(h, plain, &fresh);
  if (!e) { snprintf(r->errmsg, sizeof r->errmsg, "cannot create a transfer"); r->fail = HF_OTHER; goto fail; }
  r->easy = e;
  r->easy_dirty = !plain;
  if (fresh) set_constant(e);
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  if (!plain) set_tls(e, r);                  /* may add a Host header: before HTTPHEADER */
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errmsg);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms > 0 ? r->timeout_ms : 0L);   /* every */
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, r->max_redirects > 0 ? 1L : 0L);     /* request */
  if (r->max_redirects > 0) curl_easy_setopt(e, CURLOPT_MAXREDIRS, r->max_redirects);
  if (r->unix_socket) curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, r->unix_socket);
  if (!plain) set_method(e, r);
  hmap_put(&h->live, r->id, r);
  CURLMcode mc = curl_multi_add_handle(h->multi, e);
  if (mc == CURLM_OK) return;
  hmap_del(&h->live, r->id);
  snprintf(r->errmsg, sizeof r->errmsg, "%s", curl_multi_strerror(mc));
  r->fail = HF_OTHER;
fail:
  finish(h, r, CURLE_OK);
}

/* CURLcode → enum httpc_fail (a write error we caused keeps HF_TOO_LARGE). */
static int classify(CURLcode rc) {
  switch (rc) {
  case CURLE_OK: return HF_NONE;
  case CURLE_OPERATION_TIMEDOUT: return HF_TIMEOUT;
  case CURLE_URL_MALFORMAT: case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_TOO_MANY_REDIRECTS:
  case CURLE_BAD_FUNCTION_ARGUMENT: case CURLE_BAD_CONTENT_ENCODING:
    return HF_INVALID;
  case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_ISSUER_ERROR:
    return HF_TLS_VERIFY;
  case CURLE_ABORTED_BY_CALLBACK: return HF_CANCELED;
  default: return HF_UNAVAILABLE;
  }
}

/* The request leaves the engine: result read, handle back on the free list, done called. */
static void finish(struct httpc *h, struct httpc_req *r, CURLcode rc) {
  CURL *e = r->easy;
  if (e) {
    char *url = NULL;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url);
    if (!url || (r->url_sent && strcmp(url, r->url_sent) == 0)) url = r->url;   /* not server_name's */
    free(r->eff_url);
    r->eff_url = xstrdup(url);
    if (r->sink && !r->head_sent && rc == CURLE_OK && !r->fail) emit_head(r);   /* no body */
    curl_multi_remove_handle(h->multi, e);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    put_easy(h, e, r->easy_dirty);
    r->easy = NULL;
  }
  if (!r->fail) r->fail = classify(rc);
  if (r->fail && !r->errmsg[0]) snprintf(r->errmsg, sizeof r->errmsg, "%s", curl_easy_strerror(rc));
  if (r->fail == HF_TOO_LARGE)
    snprintf(r->errmsg, sizeof r->errmsg, "response body exceeds max_response_body (%zu bytes)", r->max_body);
  atomic_fetch_sub(&h->in_flight, 1);
  r->done(r);
}

static void read_done(struct httpc *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    struct httpc_req *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode rc = m->data.result;
    hmap_del(&h->live, r->id);
    finish(h, r, rc);
  }
}

static void cancel(struct httpc *h, struct httpc_req *r, const char *why) {
  r->fail = HF_CANCELED;
  snprintf(r->errmsg, sizeof r->errmsg, "%s", why);
  finish(h, r, CURLE_OK);
}

/* httpc_resume's ids travel in the aborts list with this bit set (ids count up from 1). */
#define RESUME_BIT ((uint64_t)1 << 63)

static void resume(struct httpc *h, uint64_t id) {
  struct httpc_req *r = hmap_get(&h->live, id);
  if (r && r->easy) curl_easy_pause(r->easy, CURLPAUSE_CONT);   /* may call sink again */
}

/* Takes the submissions and aborts queued by other threads. Returns 1 when stopping. */
static int take_work(struct httpc *h) {
  pthread_mutex_lock(&h->lock);
  struct httpc_req *subs = h->subs;
  uint64_t *aborts = h->aborts;
  size_t naborts = h->naborts;
  h->subs = h->subs_tail = NULL;
  h->aborts = NULL;
  h->naborts = h->capaborts = 0;
  h->signaled = 0;
  int stopping = h->stopping;
  pthread_mutex_unlock(&h->lock);
  while (subs) {                              /* in order, before the aborts of this batch */
    struct httpc_req *r = subs;
    subs = r->next;
    r->next = NULL;
    start(h, r);
  }
  for (size_t i = 0; i < naborts; i++) {
    if (aborts[i] & RESUME_BIT) { resume(h, aborts[i] & ~RESUME_BIT); continue; }
    struct httpc_req *r = hmap_del(&h->live, aborts[i]);
    if (r) cancel(h, r, "request canceled");
  }
  free(aborts);
  return stopping;
}

static void abort_all(struct httpc *h) {
  for (size_t i = 0; i < h->live.cap; i++)
    if (h->live.keys[i]) {
      struct httpc_req *r = h->live.vals[i];
      h->live.keys[i] = 0;                    /* finish must not see it again */
      cancel(h, r, "the host is shutting down");
    }
  hmap_free(&h->live);
  hmap_init(&h->live);
}

static int epoll_timeout(struct httpc *h) {
  if (h->deadline < 0) return -1;
  int64_t left = h->deadline - clock_mono_ns();
  if (left <= 0) return 0;
  return (int)((left + 999999) / 1000000);
}

static void *io_main(void *arg) {
  struct httpc *h = arg;
  struct epoll_event evs[64];
  int running = 0;
  for (;;) {
    int n = epoll_wait(h->ep, evs, 64, epoll_timeout(h));
    int woken = 0;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == h->efd) { uint64_t v; if (read(h->efd, &v, sizeof v) < 0) {} woken = 1; continue; }
      int flags = 0;
      if (evs[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
      if (evs[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (evs[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
      curl_multi_socket_action(h->multi, fd, flags, &running);
    }
    if (h->deadline >= 0 && clock_mono_ns() >= h->deadline) {
      h->deadline = -1;
      curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    if (woken && take_work(h)) break;
    read_done(h);
  }
  read_done(h);
  abort_all(h);
  return NULL;
}

/* ---- the API ------------------------------------------------------------------------ */

/* Under `lock`: 1 if the caller must write the eventfd (after unlocking: a write inside
** the lock made the I/O thread's take_work wait on it, a futex pair per contention). */
static int need_wake(struct httpc *h) {
  if (h->signaled) return 0;
  h->signaled = 1;
  return 1;
}

static void wake(struct httpc *h) {
  uint64_t one = 1;
  if (write(h->efd, &one, sizeof one) < 0) {}
}

int httpc_submit(struct httpc *h, struct httpc_req *r) {
  if (atomic_fetch_add(&h->in_flight, 1) >= h->lim.max_in_flight) {
    atomic_fetch_sub(&h->in_flight, 1);
    return HTTPC_BUSY;
  }
  r->id = atomic_fetch_add(&h->next_id, 1);
  r->engine = h;
  httpc_req_header(r, "Expect:");            /* never wait for 100 Continue */
  pthread_mutex_lock(&h->lock);
  if (h->stopping) {
    pthread_mutex_unlock(&h->lock);
    atomic_fetch_sub(&h->in_flight, 1);
    return HTTPC_STOPPED;
  }
  r->next = NULL;
  if (h->subs_tail) h->subs_tail->next = r;
  else h->subs = r;
  h->subs_tail = r;
  int w = need_wake(h);
  pthread_mutex_unlock(&h->lock);
  if (w) wake(h);
  return HTTPC_OK;
}

static void queue_id(struct httpc *h, uint64_t id) {
  pthread_mutex_lock(&h->lock);
  if (h->naborts == h->capaborts) {
    h->capaborts = h->capaborts ? h->capaborts * 2 : 16;
    h->aborts = xrealloc(h->aborts, h->capaborts * sizeof *h->aborts);
  }
  h->aborts[h->naborts++] = id;
  int w = need_wake(h);
  pthread_mutex_unlock(&h->lock);
  if (w) wake(h);
}

void httpc_abort(struct httpc *h, uint64_t id) { queue_id(h, id); }
void httpc_resume(struct httpc *h, uint64_t id) { queue_id(h, id | RESUME_BIT); }

long httpc_in_flight(struct httpc *h) { return atomic_load(&h->in_flight); }

static long or_default(long v, long d) { return v > 0 ? v : d; }

struct httpc *httpc_new(const struct httpc_limits *lim, char *err, size_t errlen) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(err, errlen, "http_client: libcurl cannot start");
    return NULL;
  }
  struct httpc *h = xcalloc(1, sizeof *h);
  h->lim.max_connections_per_host = or_default(lim ? lim->max_connections_per_host : 0, HTTPC_DEFAULT_PER_HOST);
  h->lim.max_connections = or_default(lim ? lim->max_connections : 0, HTTPC_DEFAULT_TOTAL);
  h->lim.max_in_flight = or_default(lim ? lim->max_in_flight : 0, HTTPC_DEFAULT_IN_FLIGHT);
  atomic_store(&h->next_id, 1);
  h->deadline = -1;
  pthread_mutex_init(&h->lock, NULL);
  hmap_init(&h->live);
  h->ep = epoll_create1(EPOLL_CLOEXEC);
  h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  h->multi = curl_multi_init();
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = h->efd};
  if (h->ep < 0 || h->efd < 0 || !h->multi || epoll_ctl(h->ep, EPOLL_CTL_ADD, h->efd, &ev) != 0) {
    snprintf(err, errlen, "http_client: cannot start: %s", strerror(errno));
    goto fail;
  }
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, h->lim.max_connections_per_host);
  curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, h->lim.max_connections);
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, h->lim.max_connections);
  if (pthread_create(&h->th, NULL, io_main, h) != 0) {
    snprintf(err, errlen, "http_client: cannot start its thread");
    goto fail;
  }
  return h;
fail:
  if (h->multi) curl_multi_cleanup(h->multi);
  if (h->ep >= 0) close(h->ep);
  if (h->efd >= 0) close(h->efd);
  hmap_free(&h->live);
  pthread_mutex_destroy(&h->lock);
  free(h);
  curl_global_cleanup();
  return NULL;
}

void httpc_free(struct httpc *h) {
  if (!h) return;
  pthread_mutex_lock(&h->lock);
  h->stopping = 1;
  h->signaled = 1;
  pthread_mutex_unlock(&h->lock);
  wake(h);
  pthread_join(h->th, NULL);
  take_work(h);                               /* nothing can be queued any more */
  abort_all(h);
  hmap_free(&h->live);
  while (h->nfree_easy) curl_easy_cleanup(h->free_easy[--h->nfree_easy].e);
  curl_multi_cleanup(h->multi);
  close(h->ep);
  close(h->efd);
  pthread_mutex_destroy(&h->lock);
  free(h);
  curl_global_cleanup();
}

int httpc_curl_version(char *buf, size_t n) {
  const curl_version_info_data *d = curl_version_info(CURLVERSION_NOW);
  if (!d || !d->version) { if (n) buf[0] = '\0'; return -1; }
  snprintf(buf, n, "%s", d->version);
  return 0;
}
