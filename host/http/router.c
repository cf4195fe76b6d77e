/*
** router.c — see router.h.
*/
#include "router.h"
#include "registry/registry.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum seg_kind { SEG_REST = 1, SEG_PARAM = 2, SEG_LIT = 3 };

struct seg { enum seg_kind kind; char *text; size_t len; };   /* text: literal or param name */

struct routes { struct route *v; size_t n; };

/* ---- parsing patterns -------------------------------------------------------------- */

static void add_seg(struct route *r, enum seg_kind k, const char *s, size_t n) {
  r->segs = xrealloc(r->segs, (size_t)(r->nsegs + 1) * sizeof *r->segs);
  r->segs[r->nsegs++] = (struct seg){k, xstrndup(s, n), n};
}

/* Splits "/a/{id}/:x/{rest...}" into segments. Returns 0, or -1 with a reason in err. */
static int parse_pattern(struct route *r, const char *pat, const char **err) {
  const char *s = pat + 1;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (r->nsegs && r->segs[r->nsegs - 1].kind == SEG_REST) { *err = "{name...} must be the last segment"; return -1; }
    if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
      int rest = n > 5 && strncmp(s + n - 4, "...}", 4) == 0;
      add_seg(r, rest ? SEG_REST : SEG_PARAM, s + 1, n - (rest ? 5 : 2));
    } else if (n >= 2 && s[0] == ':') {
      add_seg(r, SEG_PARAM, s + 1, n - 1);
    } else if (n == 0) {
      *err = "empty path segment";
      return -1;
    } else {
      add_seg(r, SEG_LIT, s, n);
    }
    if (!e) return 0;
    s = e + 1;
    if (!*s) r->subtree = 1;
  }
  if (s == pat + 1) r->subtree = 1;             /* "/" alone: everything */
  return 0;
}

static char *join_path(const char *prefix, const char *path) {
  struct buf b;
  buf_init(&b);
  size_t n = strlen(prefix);
  while (n && prefix[n - 1] == '/') n--;
  if (n && prefix[0] != '/') buf_addc(&b, '/');
  buf_add(&b, prefix, n);
  buf_adds(&b, path[0] == '/' ? path : "/");
  if (path[0] != '/') buf_adds(&b, path);
  return buf_steal(&b);
}

/* ---- specificity ------------------------------------------------------------------ */

/* Rank of position i: a segment's kind, 0.5 (as 0) past the end of a subtree, -1 past the end. */
static int rank_at(const struct route *r, int i) {
  if (i < r->nsegs) return 2 * (int)r->segs[i].kind;
  return r->subtree ? 1 : 0;
}

/* > 0 if a is more specific than b, < 0 if less, 0 if the same shape. */
static int compare(const struct route *a, const struct route *b) {
  int n = a->nsegs > b->nsegs ? a->nsegs : b->nsegs;
  for (int i = 0; i <= n; i++) {
    int ra = rank_at(a, i), rb = rank_at(b, i);
    if (ra != rb) return ra - rb;
    if (i < a->nsegs && a->segs[i].kind == SEG_LIT &&
        (a->segs[i].len != b->segs[i].len || memcmp(a->segs[i].text, b->segs[i].text, a->segs[i].len)))
      return 0x100;                               /* different literals: no overlap */
  }
  return 0;
}

/* ---- building ------------------------------------------------------------------------ */

static void route_free(struct route *r) {
  for (int i = 0; i < r->nsegs; i++) free(r->segs[i].text);
  free(r->segs);
  free(r->method);
  free(r->pattern);
}

static int add_route(struct routes *rs, const struct reg_entry *ep, const char *prefix,
                     const char *method, const char *path, enum route_action action, struct diag *d) {
  struct route r = {0};
  r.endpoint = ep;
  r.action = action;
  r.method = xstrdup(method);
  r.pattern = join_path(prefix, path);
  r.func = action == RA_FUNCTION ? val_str(val_get(ep->data, "func"), "") : NULL;
  const char *why;
  if (parse_pattern(&r, r.pattern, &why) != 0) {
    diag_add(d, 1, ep->file, ep->line, "%s: bad path %s: %s", ep->id, r.pattern, why);
    route_free(&r);
    return -1;
  }
  for (size_t i = 0; i < rs->n; i++) {
    if (strcmp(rs->v[i].method, r.method) == 0 && compare(&rs->v[i], &r) == 0) {
      diag_add(d, 1, ep->file, ep->line, "%s: %s %s conflicts with %s (%s)", ep->id, r.method,
               r.pattern, rs->v[i].endpoint->id, rs->v[i].pattern);
      route_free(&r);
      return -1;
    }
  }
  rs->v = xrealloc(rs->v, (rs->n + 1) * sizeof *rs->v);
  rs->v[rs->n++] = r;
  return 0;
}

static int refers_to(const struct reg_entry *e, const char *meta_key, const char *id) {
  const char *v = val_str(val_get(e->meta, meta_key), NULL);
  return v && strcmp(v, id) == 0;
}

static int add_endpoint(struct routes *rs, const struct reg_entry *ep, const char *prefix, struct diag *d) {
  return add_route(rs, ep, prefix, val_str(val_get(ep->data, "method"), "GET"),
                   val_str(val_get(ep->data, "path"), "/"), RA_FUNCTION, d);
}

/* The job API of a queue.http entry: its path plus these suffixes, and two extra paths. */
static int add_job_api(struct routes *rs, const struct reg_entry *ep, const char *prefix, struct diag *d) {
  static const struct { const char *method, *suffix; enum route_action action; } api[] = {
    {"POST", "", RA_JOB_SUBMIT},        {"GET", "", RA_JOB_LIST},
    {"GET", "/{id}", RA_JOB_STATUS},    {"GET", "/{id}/status", RA_JOB_STATUS},
    {"GET", "/{id}/result", RA_JOB_RESULT}, {"DELETE", "/{id}", RA_JOB_CANCEL},
    {"POST", "/{id}/cancel", RA_JOB_CANCEL}, {"POST", "/{id}/retry", RA_JOB_RETRY},
    {"POST", "/{id}/requeue", RA_JOB_REQUEUE},
  };
  const char *base = val_str(val_get(ep->data, "path"), "/jobs");
  int failed = 0;
  char path[512];
  for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
    snprintf(path, sizeof path, "%s%s", strcmp(base, "/") == 0 && api[i].suffix[0] ? "" : base, api[i].suffix);
    failed |= add_route(rs, ep, prefix, api[i].method, path, api[i].action, d) != 0;
  }
  const char *health = val_str(val_get(ep->data, "health_path"), ""), *metrics = val_str(val_get(ep->data, "metrics_path"), "");
  if (health[0]) failed |= add_route(rs, ep, prefix, "GET", health, RA_JOB_HEALTH, d) != 0;
  if (metrics[0]) failed |= add_route(rs, ep, prefix, "GET", metrics, RA_JOB_METRICS, d) != 0;
  return failed ? -1 : 0;
}

struct routes *routes_build(struct registry *reg, const char *service_id, struct diag *d) {
  struct routes *rs = xcalloc(1, sizeof *rs);
  int failed = 0;
  size_t n = registry_count(reg);
  for (size_t i = 0; i < n; i++) {
    const struct reg_entry *router = registry_at(reg, i);
    if (strcmp(router->kind, "http.router") != 0 || !refers_to(router, "server", service_id)) continue;
    const char *prefix = val_str(val_get(router->data, "prefix"), "");
    for (size_t j = 0; j < n; j++) {
      const struct reg_entry *ep = registry_at(reg, j);
      if (!refers_to(ep, "router", router->id)) continue;
      if (strcmp(ep->kind, "http.endpoint") == 0) failed |= add_endpoint(rs, ep, prefix, d) != 0;
      else if (strcmp(ep->kind, "queue.http") == 0) failed |= add_job_api(rs, ep, prefix, d) != 0;
    }
  }
  if (failed) { routes_free(rs); return NULL; }
  return rs;
}

void routes_free(struct routes *rs) {
  if (!rs) return;
  for (size_t i = 0; i < rs->n; i++) route_free(&rs->v[i]);
  free(rs->v);
  free(rs);
}

size_t routes_count(const struct routes *rs) { return rs->n; }
struct route *routes_at(struct routes *rs, size_t i) { return &rs->v[i]; }

/* ---- matching ------------------------------------------------------------------------ */

/* Does r match path? Fills m's params when it does. */
static int match_one(const struct route *r, const char *path, struct match *m) {
  const char *s = path[0] == '/' ? path + 1 : path;
  int np = 0;
  for (int i = 0; i < r->nsegs; i++) {
    const struct seg *g = &r->segs[i];
    if (g->kind == SEG_REST) {                    /* the rest, "" included, after a '/' */
      m->nparams = np;
      return s != NULL;
    }
    if (!s) return 0;
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (g->kind == SEG_LIT && (n != g->len || memcmp(s, g->text, n) != 0)) return 0;
    if (g->kind == SEG_PARAM) {
      if (n == 0) return 0;
      if (np < ROUTE_MAX_PARAMS) m->params[np++] = (typeof(m->params[0])){g->text, s, n};
    }
    s = e ? e + 1 : NULL;
  }
  if (r->subtree ? !s : s != NULL) return 0;      /* subtree needs more; exact needs the end */
  m->nparams = np;
  return 1;
}

static void add_allow(struct match *m, const char *method) {
  if (strstr(m->allow, method)) return;
  size_t n = strlen(m->allow);
  snprintf(m->allow + n, sizeof m->allow - n, "%s%s", n ? ", " : "", method);
}

/* Best route for method among those matching path, or NULL. */
static const struct route *best(const struct routes *rs, const char *method, const char *path,
                                struct match *m) {
  const struct route *win = NULL;
  struct match tmp;
  for (size_t i = 0; i < rs->n; i++) {
    const struct route *r = &rs->v[i];
    if (strcmp(r->method, method) != 0 || !match_one(r, path, &tmp)) continue;
    if (!win || compare(r, win) > 0) { win = r; *m = tmp; }
  }
  return win;
}

enum match_result routes_match(const struct routes *rs, const char *method, const char *path,
                               struct match *m) {
  memset(m, 0, sizeof *m);
  if ((m->route = best(rs, method, path, m))) return MATCH_OK;
  if (strcmp(method, "HEAD") == 0 && (m->route = best(rs, "GET", path, m))) return MATCH_OK;
  struct match tmp;
  for (size_t i = 0; i < rs->n; i++)
    if (match_one(&rs->v[i], path, &tmp)) {
      add_allow(m, rs->v[i].method);
      if (strcmp(rs->v[i].method, "GET") == 0) add_allow(m, "HEAD");
    }
  if (!m->allow[0]) return MATCH_NOT_FOUND;
  add_allow(m, "OPTIONS");
  return strcmp(method, "OPTIONS") == 0 ? MATCH_OPTIONS : MATCH_BAD_METHOD;
}

int routes_check_all(struct registry *r, struct diag *d) {
  int rc = 0;
  for (size_t i = 0; i < registry_count(r); i++) {
    const struct reg_entry *e = registry_at(r, i);
    if (strcmp(e->kind, "http.service") != 0) continue;
    struct routes *rs = routes_build(r, e->id, d);
    if (!rs) rc = -1;
    routes_free(rs);
  }
  return rc;
}
