/* Fuzzes the route matcher (router.c). Input: up to five lines — method, path, and
** optionally a route pattern, a router prefix and a job API path. The method and path are matched against a
** table built once from tests/fixtures/http; when a pattern is given, a second table is
** built from that fixture plus one endpoint with the fuzzed pattern under a router with the
** fuzzed prefix (and, given a fifth line, a queue.http job API under that path: its seven
** routes), from a registry file written to a temp dir and loaded as a project would be; the
** path is matched against that table too. */
#include "registry/registry.h"
#include "http/router.h"
#include "base/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct registry *fixed_reg;
static struct routes *fixed;
static char *fixture_text;
static char dir[64], file[96];

static void cleanup(void) {
  unlink(file);
  rmdir(dir);
}

static struct registry *load(const char *srcdir) {
  struct diag d;
  diag_init(&d);
  struct registry *r = NULL;
  registry_load(srcdir, &(struct reg_opts){.project_dir = srcdir}, &r, &d);
  diag_free(&d);
  return r;
}

static struct routes *build(struct registry *r) {
  struct diag d;
  diag_init(&d);
  struct routes *rs = routes_build(r, "app:gw", &d);
  if (!rs && d.errors == 0) abort();              /* a refused table says why */
  diag_free(&d);
  return rs;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  size_t n;
  fixture_text = file_read_all(FUZZ_FIXTURES "/http/src/_index.yaml", &n);
  fixed_reg = load(FUZZ_FIXTURES "/http/src");
  if (!fixture_text || !fixed_reg || !(fixed = build(fixed_reg))) abort();
  snprintf(dir, sizeof dir, "%s/fuzz_router.XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  if (!mkdtemp(dir)) abort();
  snprintf(file, sizeof file, "%s/_index.yaml", dir);
  atexit(cleanup);
  return 0;
}

/* Line i of the input (NUL-terminated copy; "" past the end); *present says it existed. */
static char *line_at(const uint8_t *d, size_t n, int i, int *present) {
  size_t s = 0;
  for (; i > 0 && s <= n; i--) {
    const uint8_t *nl = memchr(d + s, '\n', n - s);
    s = nl ? (size_t)(nl - d) + 1 : n + 1;
  }
  *present = s <= n;
  if (s > n) return xstrdup("");
  const uint8_t *nl = memchr(d + s, '\n', n - s);
  return xstrndup((const char *)d + s, nl ? (size_t)(nl - (d + s)) : n - s);
}

/* s as a YAML double-quoted scalar. */
static void put_quoted(struct buf *b, const char *s) {
  buf_addc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') { buf_addc(b, '\\'); buf_addc(b, (char)*p); }
    else if (*p < 0x20 || *p >= 0x7f) buf_printf(b, "\\x%02x", *p);
    else buf_addc(b, (char)*p);
  }
  buf_addc(b, '"');
}

static void check_match(const struct routes *rs, const char *method, const char *path) {
  struct match m;
  enum match_result res = routes_match(rs, method, path, &m);
  if ((res == MATCH_OK) != (m.route != NULL)) abort();
  if (res == MATCH_OK && strcmp(m.route->method, method) != 0 &&
      !(strcmp(method, "HEAD") == 0 && strcmp(m.route->method, "GET") == 0)) abort();
  if (m.nparams < 0 || m.nparams > ROUTE_MAX_PARAMS) abort();
  for (int i = 0; i < m.nparams; i++) {          /* params point into path */
    if (m.params[i].value < path || m.params[i].value + m.params[i].len > path + strlen(path)) abort();
  }
  if ((res == MATCH_BAD_METHOD || res == MATCH_OPTIONS) && !strstr(m.allow, "OPTIONS")) abort();
}

static void with_pattern(const char *method, const char *path, const char *pattern, const char *prefix,
                         const char *jobs) {
  struct buf b;
  buf_init(&b);
  buf_adds(&b, fixture_text);
  buf_adds(&b, "\n  - {name: fzr, kind: http.router, meta: {server: gw}, prefix: ");
  put_quoted(&b, prefix);
  buf_adds(&b, "}\n  - {name: fz, kind: http.endpoint, meta: {router: fzr}, func: h, method: ");
  put_quoted(&b, method[0] ? method : "GET");
  buf_adds(&b, ", path: ");
  put_quoted(&b, pattern);
  buf_adds(&b, "}\n");
  if (jobs) {
    buf_adds(&b, "  - {name: fzq, kind: queue.queue, driver: memory}\n"
                 "  - {name: fzj, kind: queue.http, meta: {router: fzr}, queue: fzq, path: ");
    put_quoted(&b, jobs);
    buf_adds(&b, "}\n");
  }
  FILE *f = fopen(file, "w");
  if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) abort();
  buf_free(&b);
  struct registry *r = load(dir);
  struct routes *rs = r ? build(r) : NULL;
  if (rs) check_match(rs, method, path);
  routes_free(rs);
  if (r) registry_unref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int has_pattern, present;
  char *method = line_at(data, size, 0, &present), *path = line_at(data, size, 1, &present);
  char *pattern = line_at(data, size, 2, &has_pattern), *prefix = line_at(data, size, 3, &present);
  int has_jobs;
  char *jobs = line_at(data, size, 4, &has_jobs);
  check_match(fixed, method, path);
  if (has_pattern) with_pattern(method, path, pattern, prefix, has_jobs ? jobs : NULL);
  free(jobs);
  free(method);
  free(path);
  free(pattern);
  free(prefix);
  return 0;
}
