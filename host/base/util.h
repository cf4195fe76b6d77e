/*
** util.h — small shared helpers: a growable byte buffer, durations, clocks.
** Thread-safety: every function here is reentrant; a struct buf belongs to its caller.
*/
#ifndef TASKHOST_UTIL_H
#define TASKHOST_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>

/* A growable byte buffer. `data` is always NUL-terminated (not counted in len). */
struct buf {
  char *data;
  size_t len, cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);                 /* len = 0, keeps memory */
void buf_grow(struct buf *b, size_t need);      /* cap >= need; aborts on OOM, like zmalloc */
void buf_adds(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
char *buf_steal(struct buf *b);                 /* hands data to the caller; b becomes empty */
char *xvasprintf(const char *fmt, va_list ap);  /* a malloc'd formatted string */

/* Room for extra more bytes plus the NUL. Inline: the JSON encoder and the HTTP path call
** these per byte or per field. */
static inline void buf_reserve(struct buf *b, size_t extra) {
  if (b->len + extra + 1 > b->cap) buf_grow(b, b->len + extra + 1);
}

static inline void buf_add(struct buf *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static inline void buf_addc(struct buf *b, char c) {
  buf_reserve(b, 1);
  b->data[b->len++] = c;
  b->data[b->len] = '\0';
}

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Writes v in decimal at the end of tmp (no NUL); returns where it starts, *len its length.
** For hot paths where snprintf costs more than the rest of the work. */
char *i64_dec(long long v, char tmp[24], size_t *len);

/* The value of one hex digit (either case), or -1. */
static inline int hex_digit(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* FNV-1a of a NUL-terminated string; never 0 (hmap keys must not be 0). */
uint64_t str_hash(const char *s);

/* Parses a Go-style duration ("300ms", "1h30m", "2.5s"; units ns us µs ms s m h).
** Returns 0 and the value in nanoseconds, or -1 on a malformed string. */
int duration_parse(const char *s, int64_t *ns);

/* Parses a size: "1048576", "512KB", "64MB", "1GiB" (K/M/G/T, powers of 1024, case-insensitive,
** optional B / iB). Returns 0, or -1 on a malformed string. */
int size_parse(const char *s, uint64_t *bytes);

/* Clocks, in nanoseconds. */
int64_t clock_mono_ns(void);
int64_t clock_wall_ns(void);

/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines. */
void cond_init_monotonic(pthread_cond_t *cv);
/* A CLOCK_MONOTONIC deadline in ns as the timespec pthread_cond_timedwait wants. */
struct timespec ns_timespec(int64_t ns);

/* Reads a whole file. Returns malloc'd NUL-terminated data or NULL (errno set). */
char *file_read_all(const char *path, size_t *len);

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define countof(a) (sizeof(a) / sizeof((a)[0]))

#endif
