/*
** http.c — see http.h.
*/
#include "http.h"
#include "runtime/funcpool.h"
#include "base/log.h"
#include "runtime/call.h"
#include "runtime/task.h"
#include "runtime/worker.h"
#include "registry/registry.h"
#include "runtime/watchdog.h"
#include "base/retire.h"
#include "httpgate.h"
#include "httpstats.h"
#include "runtime/rt.h"

#include <civetweb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What a civetweb connection thread keeps between requests: its watchdog slot, its gate
** slot (what the thread is doing, for httpgate.c) and buffers. */
struct http_thread {
  struct worker w;
  struct gate_slot gate;
  int expect;                        /* the current request awaits 100 Continue (on_begin) */
  struct buf body, headers, out;
  _Atomic(struct routes *) hazard;   /* the route table this thread's request uses, or NULL */
};


struct http_server {
  struct rt *rt;
  struct watchdog *watchdog;  /* interrupts handlers that run too long */
  struct httpgate *gate;      /* cuts slow request heads when the threads run out */
  pthread_mutex_t lock;
  struct http_thread **slots; /* one per civetweb thread that ever served */
  size_t nslots;
  char *id;
  struct mg_context *ctx;
  _Atomic(struct routes *) routes;   /* current table (read through a hazard pointer) */
  void (*release)(void *ud);         /* how to free it (NULL: the caller of http_start owns it) */
  void *release_ud;
  struct retire_list retired;        /* tables swapped out by reloads (under lock) */
  size_t max_body;
  int64_t call_timeout;
  int port;
  _Atomic uint64_t requests;     /* answered */
  _Atomic uint64_t connections;  /* that got at least one answer (starvation shows here) */
  struct httpstats *stats;       /* the host's request counters (rt service), or NULL */
  struct hstat *unmatched[HS_METHODS];  /* its slots for requests no route took */
};

static _Atomic uint64_t next_serial = 1;

static const struct { int code; const char *text; } statuses[] = {
  {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"},
  {301, "Moved Permanently"}, {302, "Found"}, {304, "Not Modified"}, {400, "Bad Request"},
  {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
  {409, "Conflict"}, {413, "Payload Too Large"}, {415, "Unsupported Media Type"},
  {422, "Unprocessable Entity"}, {429, "Too Many Requests"},
  {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
  {502, "Bad Gateway"}, {503, "Service Unavailable"}, {504, "Gateway Timeout"},
};

const char *http_status_text(int code) {
  for (size_t i = 0; i < countof(statuses); i++)
    if (statuses[i].code == code) return statuses[i].text;
  return "Status";
}

/* ---- request ----------------------------------------------------------------------- */

const char *http_req_header(const struct http_req *r, const char *name) {
  return mg_get_header(r->conn, name);
}

int http_req_read_body(struct http_req *r) {
  if (r->body_read) return r->too_large ? -1 : 0;
  r->body_read = 1;
  if (r->expect)                       /* the client waits for this before it sends the body */
    mg_write(r->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  char tmp[16384];
  for (;;) {
    int n = mg_read(r->conn, tmp, sizeof tmp);
    if (n < 0) return -1;
    if (n == 0) return 0;
    if (r->body.len + (size_t)n > r->max_body) { r->too_large = 1; return -1; }
    buf_add(&r->body, tmp, (size_t)n);
  }
}

int http_res_add_header(struct http_req *r, const char *name, const char *value) {
  if (r->committed || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return -1;
  if (strcasecmp(name, "Content-Type") == 0) r->has_ctype = 1;
  if (strcasecmp(name, "Content-Length") == 0) return 0;     /* we compute it */
  buf_printf(r->headers, "%s: %s\r\n", name, value);
  return 0;
}

/* civetweb closes the connection once this request is answered. */
static void close_after(struct mg_connection *conn) { mg_disable_connection_keep_alive(conn); }

/* Whether the request's body is left unread in a way civetweb should not drain before the
** next request: over max_body (read in part, or only announced), or held back by a client
** that sent "Expect: 100-continue" and got no 100. The connection is closed instead. */
static int body_left(struct http_req *r) {
  if (r->too_large) return 1;
  if (r->body_read) return 0;
  return r->ri->content_length > (long long)r->max_body || r->expect;
}

/* The response says "Connection: close" and civetweb closes after it. */
static void mark_close(struct http_req *r) {
  r->close = 1;
  close_after(r->conn);
}

/* ---- response ---------------------------------------------------------------------- */

/* Appends a string to a fixed buffer; returns the new length, or cap+1 once it overflows. */
static size_t put(char *d, size_t len, size_t cap, const char *s, size_t n) {
  if (len + n > cap) return cap + 1;
  memcpy(d + len, s, n);
  return len + n;
}

static size_t put_uint(char *d, size_t len, size_t cap, size_t v) {
  char tmp[24];
  size_t n;
  const char *p = i64_dec((long long)v, tmp, &n);
  return put(d, len, cap, p, n);
}

#define PUTS(lit) (n = put(head, n, cap, lit, sizeof(lit) - 1))

/* Builds the status line and headers into head (cap bytes). Returns the length, or cap+1
** when they do not fit. Hand-assembled: snprintf cost more than the rest of a small reply. */
static size_t build_head(struct http_req *r, int status, const char *ctype, size_t len, char *head,
                         size_t cap) {
  const char *text = http_status_text(status);
  size_t n = 0;
  PUTS("HTTP/1.1 ");
  n = put_uint(head, n, cap, (unsigned)status);
  PUTS(" ");
  n = put(head, n, cap, text, strlen(text));
  PUTS("\r\n");
  n = put(head, n, cap, r->headers->data ? r->headers->data : "", r->headers->len);
  if (ctype && !r->has_ctype) {
    PUTS("Content-Type: ");
    n = put(head, n, cap, ctype, strlen(ctype));
    PUTS("\r\n");
  }
  if (status != 204 && status != 304) {
    PUTS("Content-Length: ");
    n = put_uint(head, n, cap, len);
    PUTS("\r\n");
  }
  if (r->close) PUTS("Connection: close\r\n");
  PUTS("\r\n");
  return n;
}

/* Every response leaves here (once per request). */
static void send_all(struct http_req *r, const char *ctype, const char *body, size_t len) {
  if (!r->close && body_left(r)) mark_close(r);
  int status = r->status ? r->status : 200;
  int no_body = status == 204 || status == 304 || strcmp(r->ri->request_method, "HEAD") == 0;
  char head[HEAD_GAP];
  size_t n = build_head(r, status, ctype, len, head, sizeof head);
  if (no_body) len = 0;
  if (n <= sizeof head && body == r->out->data + HEAD_GAP) {
    char *start = r->out->data + HEAD_GAP - n;      /* the head goes right before the body */
    memcpy(start, head, n);
    mg_write(r->conn, start, n + len);
    return;
  }
  size_t cap = r->headers->len + 256;               /* long headers or a body elsewhere */
  char *all = xmalloc(cap + len);
  n = build_head(r, status, ctype, len, all, cap);
  memcpy(all + n, body, len);
  mg_write(r->conn, all, n + len);
  free(all);
}

static void send_text(struct http_req *r, int status, const char *text) {
  r->status = status;
  buf_reset(r->headers);
  r->has_ctype = 0;
  send_all(r, "text/plain; charset=utf-8", text, strlen(text));
}

/* After the handler: wippy-compat.md §5.5's rules. A failed handler gets 500 even if it
** had set a status, headers or part of a body: nothing is sent before it returns. */
static void finish(struct http_server *s, struct http_req *r, struct call *c) {
  if (c->failed) {
    log_warn("%s %s %s: handler failed: %s", s->id, r->ri->request_method, r->path, c->error);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s\n", c->error);
    send_text(r, 500, b.data);
    buf_free(&b);
  } else if (r->too_large && !r->handled) {
    send_text(r, 413, "request body too large\n");
  } else if (!r->handled && c->returned) {
    send_all(r, "application/json", "", 0);
  } else if (!r->handled) {
    send_text(r, 500, "no response sent\n");
  } else {
    send_all(r, "text/plain; charset=utf-8", r->out->data + HEAD_GAP, r->out->len - HEAD_GAP);
  }
}

void http_reply(struct http_req *r, int status, const char *ctype, const char *body, size_t len) {
  r->status = status;
  r->handled = 1;
  send_all(r, ctype, body, len);
}

static void serve(struct http_server *s, struct http_req *r) {
  if (r->match.route->serve) {
    r->match.route->serve(r->match.route, r);
    return;
  }
  struct funcpool *fp = r->match.route->handler;
  struct call c = {.kind = CALL_HTTP, .ctx = r, .deadline = s->call_timeout ? clock_mono_ns() + s->call_timeout : 0};
  struct http_thread *ht = mg_get_thread_pointer(r->conn);
  funcpool_call(fp, ht ? &ht->w : NULL, &c);
  finish(s, r, &c);
  free(c.error);
}

/* A new connection starts unmarked; its first answered request marks and counts it. Its
** thread waits for a request head from now on (the gate's view). */
static int on_connection(const struct mg_connection *conn, void **conn_data) {
  *conn_data = NULL;
  struct http_thread *ht = mg_get_thread_pointer(conn);
  if (ht) gate_open(&ht->gate);
  return 0;
}

static void on_close(const struct mg_connection *conn) {
  struct http_thread *ht = mg_get_thread_pointer(conn);
  if (ht) gate_set(&ht->gate, GATE_IDLE);
}

/* After a request the connection waits for its next head (or closes: on_close). */
static void on_end(const struct mg_connection *conn, int status) {
  struct http_thread *ht = mg_get_thread_pointer(conn);
  if (ht) gate_wait(&ht->gate);
}

/* Answers a refused request and closes the connection after it. */
static int refuse(struct mg_connection *conn, int status, const char *text) {
  struct http_server *s = mg_get_user_data(mg_get_context(conn));
  if (s->stats)
    httpstats_count(s->unmatched[httpstats_method(mg_get_request_info(conn)->request_method)], status, 0);
  close_after(conn);
  mg_printf(conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
            http_status_text(status), strlen(text), text);
  return status;
}

/* Whether v, less trailing blanks, is exactly want (case-insensitive) / only digits. */
static int token_is(const char *v, const char *want) {
  size_t n = strlen(want);
  return strncasecmp(v, want, n) == 0 && v[n + strspn(v + n, " \t")] == '\0';
}

static int is_number(const char *v) {
  size_t n = strspn(v, "0123456789");
  return n > 0 && v[n + strspn(v + n, " \t")] == '\0';
}

/* The headers that frame a request's body, found in one pass (the first letter picks the
** comparison: this runs on every request). */
struct framing { int ncl, nte; const char *cl, *te, *expect; };

static void scan_framing(const struct mg_request_info *ri, struct framing *f) {
  memset(f, 0, sizeof *f);
  for (int i = 0; i < ri->num_headers; i++) {
    const char *name = ri->http_headers[i].name, *value = ri->http_headers[i].value;
    switch (name[0] | 0x20) {
    case 'c': if (strcasecmp(name, "Content-Length") == 0) { f->ncl++; f->cl = value; } break;
    case 't': if (strcasecmp(name, "Transfer-Encoding") == 0) { f->nte++; f->te = value; } break;
    case 'e': if (strcasecmp(name, "Expect") == 0) f->expect = value; break;
    }
  }
}

/* RFC 9112 §6.3: a request whose body length is ambiguous is refused, so that nothing after
** it on the connection can be read as a (smuggled) request. NULL when the framing is sound. */
static const char *framing_error(const struct framing *f) {
  if (f->ncl > 1) return "more than one Content-Length\n";
  if (f->ncl && f->nte) return "Content-Length together with Transfer-Encoding\n";
  if (f->nte > 1 || (f->te && !token_is(f->te, "chunked"))) return "Transfer-Encoding other than chunked\n";
  if (f->cl && !is_number(f->cl)) return "invalid Content-Length\n";
  return NULL;
}

/* An HTTP/1.1 client that sent "Expect: 100-continue" with a body waits for 100 Continue. */
static int expects_continue(const struct mg_request_info *ri, const struct framing *f) {
  return f->expect && token_is(f->expect, "100-continue") && (f->nte || ri->content_length > 0)
         && strcmp(ri->http_version, "1.1") == 0;
}

/* Before routing, on every request: the thread is busy now; requests civetweb parsed
** incompletely (headers past its limit dropped) or with ambiguous framing are refused. */
static int on_begin(struct mg_connection *conn) {
  struct http_thread *ht = mg_get_thread_pointer(conn);
  const struct mg_request_info *ri = mg_get_request_info(conn);
  if (ht) gate_busy(&ht->gate, ri->remote_addr, ri->remote_port);
  if (ri->num_headers >= MG_MAX_HEADERS) {
    char text[96];
    snprintf(text, sizeof text, "too many request headers (the limit is %d)\n", MG_MAX_HEADERS - 1);
    return refuse(conn, 431, text);
  }
  struct framing f;
  scan_framing(ri, &f);
  const char *bad = framing_error(&f);
  if (bad) return refuse(conn, 400, bad);
  if (ht) ht->expect = expects_continue(ri, &f);
  return 0;
}

static void count(struct http_server *s, struct mg_connection *conn) {
  atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
  if (!mg_get_user_connection_data(conn)) {
    mg_set_user_connection_data(conn, s);
    atomic_fetch_add_explicit(&s->connections, 1, memory_order_relaxed);
  }
}

static void reset(struct buf *b, size_t keep) {
  buf_reserve(b, keep);
  b->len = keep;
}

/* A thread keeps its buffers for its next request only while they are small. */
#define KEEP_BUF 65536
static void trim(struct buf *b) {
  if (b->cap > KEEP_BUF) buf_free(b);
}

/* Counts the finished request on its route's slot, or the service's unmatched one. */
static void account(struct http_server *s, const struct http_req *r, enum match_result mr,
                    int status, int64_t t0) {
  if (!s->stats) return;
  struct hstat *h = mr == MATCH_OK ? r->match.route->stats : NULL;
  if (!h) h = s->unmatched[httpstats_method(r->ri->request_method)];
  httpstats_count(h, status, clock_mono_ns() - t0);
}

static int on_request(struct mg_connection *conn, void *cbdata) {
  struct http_server *s = cbdata;
  int64_t t0 = s->stats ? clock_mono_ns() : 0;
  const struct mg_request_info *ri = mg_get_request_info(conn);
  struct http_thread *ht = mg_get_thread_pointer(conn), local = {0};
  if (!ht) ht = &local;                             /* not a connection thread (never seen) */
  reset(&ht->body, 0);
  reset(&ht->headers, 0);
  reset(&ht->out, HEAD_GAP);
  struct http_req r = {.conn = conn, .ri = ri, .max_body = s->max_body, .body = ht->body,
                       .headers = &ht->headers, .out = &ht->out};
  r.serial = atomic_fetch_add(&next_serial, 1);
  r.expect = ht->expect;
  r.path = ri->local_uri ? ri->local_uri : "/";
  struct routes *rs;
  do {                       /* publish the table we use before trusting it (see http_reclaim) */
    rs = atomic_load(&s->routes);
    atomic_store(&ht->hazard, rs);
  } while (rs != atomic_load(&s->routes));
  enum match_result mr = routes_match(rs, ri->request_method, r.path, &r.match);
  switch (mr) {
  case MATCH_NOT_FOUND: send_text(&r, 404, "404 page not found\n"); break;
  case MATCH_OPTIONS:
    r.status = 204;
    buf_printf(r.headers, "Allow: %s\r\n", r.match.allow);
    send_all(&r, NULL, "", 0);
    break;
  case MATCH_BAD_METHOD:
    r.status = 405;
    buf_printf(r.headers, "Allow: %s\r\n", r.match.allow);
    send_all(&r, "text/plain; charset=utf-8", "Method Not Allowed\n", 19);
    break;
  case MATCH_OK:
    if (ri->content_length > 0 && (size_t)ri->content_length > s->max_body) {
      r.too_large = 1;                              /* not read: close, don't wait for it */
      send_text(&r, 413, "request body too large\n");
    } else {
      serve(s, &r);
    }
    break;
  }
  account(s, &r, mr, r.status ? r.status : 200, t0);   /* reads the route: before the hazard drops */
  atomic_store(&ht->hazard, NULL);
  ht->body = r.body;                                /* keep what the body read grew... */
  trim(&ht->body);                                  /* ...unless it grew big */
  trim(&ht->headers);
  trim(&ht->out);
  int status = r.status ? r.status : 200;
  count(s, conn);
  if (ht == &local) { buf_free(&local.body); buf_free(&local.headers); buf_free(&local.out); }
  return status;
}

/* Each connection thread gets a watchdog slot and buffers reused across its requests.
** thread_type 1 = a connection (worker) thread. */
static void *on_thread_start(const struct mg_context *ctx, int thread_type) {
  if (thread_type != 1) return NULL;
  struct http_server *s = mg_get_user_data(ctx);
  struct http_thread *ht = xcalloc(1, sizeof *ht);
  pthread_mutex_lock(&s->lock);
  s->slots = xrealloc(s->slots, (s->nslots + 1) * sizeof *s->slots);
  s->slots[s->nslots++] = ht;
  pthread_mutex_unlock(&s->lock);
  watchdog_add(s->watchdog, &ht->w);
  httpgate_add(s->gate, &ht->gate);
  return ht;
}

/* Authorization is the handlers' business. Without an auth handler civetweb looks for a
** .htpasswd file (a failing stat) on every request. */
static int allow_all(struct mg_connection *conn, void *cbdata) { return 1; }

static int on_log(const struct mg_connection *conn, const char *message) {
  log_debug("civetweb: %s", message);
  return 1;
}

/* ":8080" → "8080"; "localhost:1" → "127.0.0.1:1"; "127.0.0.1:0" as it is. */
static char *listen_spec(const char *addr) {
  if (addr[0] == ':') return xstrdup(addr + 1);
  if (strncmp(addr, "localhost:", 10) == 0) {
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "127.0.0.1:%s", addr + 10);
    return buf_steal(&b);
  }
  return xstrdup(addr);
}

static int64_t ms_field(const struct reg_entry *e, const char *path, int64_t dflt_ms) {
  int64_t ns = val_duration_ns(val_path(e->data, path), 0);     /* "0" = the default */
  return ns > 0 ? ns / NS_PER_MS : dflt_ms;
}

/* Gives each route of rs its counters' slot, before rs is published to the threads. */
static void attach_stats(struct http_server *s, struct routes *rs) {
  if (!s->stats) return;
  for (size_t i = 0; i < routes_count(rs); i++) {
    struct route *r = routes_at(rs, i);
    r->stats = httpstats_slot(s->stats, s->id, r->pattern, r->method);
  }
}

struct http_server *http_start(struct rt *rt, const struct reg_entry *svc, struct routes *routes,
                               const char *docroot, char *err, size_t errlen) {
  struct http_server *s = xcalloc(1, sizeof *s);
  s->rt = rt;
  s->id = xstrdup(svc->id);
  if ((s->stats = rt_find_service(rt, HTTPSTATS_SERVICE)))
    for (int i = 0; i < HS_METHODS; i++)
      s->unmatched[i] = httpstats_slot(s->stats, s->id, HTTPSTATS_UNMATCHED, httpstats_methods[i]);
  attach_stats(s, routes);
  s->routes = routes;
  s->max_body = (size_t)val_size(val_get(svc->data, "max_body"), 16u << 20);
  int64_t read_ms = ms_field(svc, "timeouts.read", 30000), write_ms = ms_field(svc, "timeouts.write", 30000);
  s->call_timeout = write_ms * NS_PER_MS;
  char ports[128], threads[16], req_ms[24], idle_ms[24];
  char *spec = listen_spec(val_str(val_get(svc->data, "addr"), ":8080"));
  snprintf(ports, sizeof ports, "%s", spec);
  free(spec);
  snprintf(threads, sizeof threads, "%lld", (long long)val_int(val_get(svc->data, "threads"), 1024));
  snprintf(req_ms, sizeof req_ms, "%lld", (long long)read_ms);    /* civetweb: per socket read/write */
  snprintf(idle_ms, sizeof idle_ms, "%lld", (long long)ms_field(svc, "timeouts.idle", 2000));
  const char *opts[] = {
    "listening_ports", ports, "num_threads", threads, "enable_keep_alive", "yes",
    "keep_alive_timeout_ms", idle_ms, "request_timeout_ms", req_ms, "listen_backlog", "4096",
    "connection_queue", "1024", "tcp_nodelay", "1", "document_root", docroot, NULL,
  };
  struct mg_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.log_message = on_log;
  cb.init_thread = on_thread_start;
  cb.init_connection = on_connection;
  cb.begin_request = on_begin;
  cb.end_request = on_end;
  cb.connection_close = on_close;
  pthread_mutex_init(&s->lock, NULL);
  s->watchdog = watchdog_new(task_interrupt_worker);
  s->gate = httpgate_new(s->id, (int)val_int(val_get(svc->data, "threads"), 1024));
  s->ctx = mg_start(&cb, s, opts);
  if (!s->ctx) {
    snprintf(err, errlen, "%s: cannot listen on %s", svc->id, ports);
    s->ctx = NULL;
    http_stop(s);
    return NULL;
  }
  mg_set_request_handler(s->ctx, "/", on_request, s);
  mg_set_auth_handler(s->ctx, "/", allow_all, s);
  struct mg_server_port sp[4];
  int n = mg_get_server_ports(s->ctx, 4, sp);
  s->port = n > 0 ? sp[0].port : 0;
  httpgate_set_port(s->gate, s->port);
  log_info("%s listening on %s (port %d, %s threads)", svc->id, ports, s->port, threads);
  return s;
}

int http_port(const struct http_server *s) { return s->port; }

void http_own_routes(struct http_server *s, void (*release)(void *ud), void *ud) {
  pthread_mutex_lock(&s->lock);
  s->release = release;
  s->release_ud = ud;
  pthread_mutex_unlock(&s->lock);
}

void http_swap_routes(struct http_server *s, struct routes *rs, void (*release)(void *ud), void *ud) {
  attach_stats(s, rs);
  pthread_mutex_lock(&s->lock);
  retire_push(&s->retired, atomic_load(&s->routes), s->release, s->release_ud);
  atomic_store(&s->routes, rs);
  s->release = release;
  s->release_ud = ud;
  pthread_mutex_unlock(&s->lock);
  http_reclaim(s);
}

/* A retired table is free once no thread's hazard points at it: a request that loaded it
** before the swap published it first, and one that loads after the swap sees the new one. */
static int in_use(void *ctx, const void *rs) {
  struct http_server *s = ctx;
  for (size_t i = 0; i < s->nslots; i++)
    if (atomic_load(&s->slots[i]->hazard) == rs) return 1;
  return 0;
}

size_t http_reclaim(struct http_server *s) {
  pthread_mutex_lock(&s->lock);
  size_t left = retire_sweep(&s->retired, in_use, s);
  pthread_mutex_unlock(&s->lock);
  return left;
}

void http_stop(struct http_server *s) {
  if (!s) return;
  if (s->ctx) {
    mg_stop(s->ctx);
    log_summary("%s served %llu requests on %llu connections", s->id,
             (unsigned long long)atomic_load(&s->requests),
             (unsigned long long)atomic_load(&s->connections));
  }
  watchdog_free(s->watchdog);
  httpgate_free(s->gate);                           /* before the slots it reads go */
  http_reclaim(s);                                  /* no request runs any more: frees all */
  if (s->release) s->release(s->release_ud);
  for (size_t i = 0; i < s->nslots; i++) {
    buf_free(&s->slots[i]->body);
    buf_free(&s->slots[i]->headers);
    buf_free(&s->slots[i]->out);
    free(s->slots[i]);
  }
  free(s->slots);
  pthread_mutex_destroy(&s->lock);
  free(s->id);
  free(s);
}

int http_civetweb_version(char *buf, size_t n) {
  snprintf(buf, n, "%s", mg_version());
  return 0;
}
