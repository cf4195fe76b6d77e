/*
** util.c — buffers, allocation wrappers, durations, clocks.
** Out-of-memory aborts the process (as Redis' zmalloc does): there is no sane recovery
** for a host whose bookkeeping allocations fail.
*/
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(size_t n) {
  fprintf(stderr, "taskhost: out of memory allocating %zu bytes\n", n);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) oom(n * sz);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void buf_init(struct buf *b) { b->data = NULL; b->len = b->cap = 0; }
void buf_free(struct buf *b) { free(b->data); buf_init(b); }
void buf_reset(struct buf *b) { b->len = 0; if (b->data) b->data[0] = '\0'; }

char *i64_dec(long long v, char tmp[24], size_t *len) {
  char *p = tmp + 24;
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *--p = '-';
  *len = (size_t)(tmp + 24 - p);
  return p;
}

void buf_grow(struct buf *b, size_t need) {
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  b->data = xrealloc(b->data, cap);
  b->cap = cap;
}

void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_vprintf(struct buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return;
  buf_reserve(b, (size_t)n);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(b, fmt, ap);
  va_end(ap);
}

char *xvasprintf(const char *fmt, va_list ap) {
  struct buf b;
  buf_init(&b);
  buf_vprintf(&b, fmt, ap);
  return buf_steal(&b);
}

char *buf_steal(struct buf *b) {
  char *p = b->data ? b->data : xstrdup("");
  buf_init(b);
  return p;
}

/* Unit table for durations; longest names first so "ms" wins over "m". */
static const struct { const char *name; int64_t ns; } units[] = {
  {"ns", 1}, {"us", 1000}, {"\xc2\xb5s", 1000}, {"ms", 1000000},
  {"s", NS_PER_S}, {"m", 60 * NS_PER_S}, {"h", 3600 * NS_PER_S},
};

uint64_t str_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++) { h ^= (unsigned char)*s; h *= 0x100000001b3ULL; }
  return h ? h : 1;
}

int duration_parse(const char *s, int64_t *ns) {
  if (!s || !*s) return -1;
  int neg = 0;
  if (*s == '-' || *s == '+') neg = (*s++ == '-');
  if (strcmp(s, "0") == 0) { *ns = 0; return 0; }
  double total = 0;
  while (*s) {
    char *end;
    if (!((*s >= '0' && *s <= '9') || *s == '.')) return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno) return -1;
    s = end;
    size_t best = 0;
    int64_t mult = 0;
    for (size_t i = 0; i < countof(units); i++) {
      size_t n = strlen(units[i].name);
      if (n > best && strncmp(s, units[i].name, n) == 0) { best = n; mult = units[i].ns; }
    }
    if (!best) return -1;
    s += best;
    total += v * (double)mult;
  }
  if (total > 9.2e18) return -1;
  *ns = (int64_t)(neg ? -total : total);
  return 0;
}

int size_parse(const char *s, uint64_t *bytes) {
  static const char prefixes[] = "KMGT";
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !(v >= 0)) return -1;          /* NaN too */
  while (*end == ' ') end++;
  uint64_t mult = 1;
  const char *u = *end ? strchr(prefixes, *end & ~0x20) : NULL;
  if (u) {
    for (const char *k = prefixes; k <= u; k++) mult *= 1024;
    end++;
    if ((*end & ~0x20) == 'I') end++;
  }
  if ((*end & ~0x20) == 'B') end++;
  if (*end || !(v * (double)mult < 0x1p64)) return -1;   /* also NaN, inf: no undefined cast */
  *bytes = (uint64_t)(v * (double)mult);
  return 0;
}

int64_t clock_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

int64_t clock_wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

void cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &ca);
  pthread_condattr_destroy(&ca);
}

struct timespec ns_timespec(int64_t ns) {
  return (struct timespec){.tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S)};
}

char *file_read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  struct buf b;
  buf_init(&b);
  char tmp[8192];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(&b, tmp, n);
  int err = ferror(f);
  fclose(f);
  if (err) { buf_free(&b); errno = EIO; return NULL; }
  if (len) *len = b.len;
  return buf_steal(&b);
}
