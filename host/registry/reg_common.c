/*
** reg_common.c — what every stage of the registry loader shares (reg_internal.h): the
** generation's string pool, reference qualification, the budgets readers count down, and
** the one function that opens registry files and file:// targets.
** Reentrant; runs on the loading thread.
*/
#include "reg_internal.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- string pool ---- */

struct reg_pool *reg_pool_new(void) {
  struct reg_pool *p = xcalloc(1, sizeof *p);
  atomic_init(&p->refs, 1);
  return p;
}

/* An equal string already there is returned instead (`owned` freed): generations built
** one from another by change sets share one pool, so it grows only by new strings. */
const char *reg_pool_add(struct reg_pool *p, char *owned) {
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->s[i], owned) == 0) { free(owned); return p->s[i]; }
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 16;
    p->s = xrealloc(p->s, p->cap * sizeof *p->s);
  }
  return p->s[p->n++] = owned;
}

struct reg_pool *reg_pool_ref(struct reg_pool *p) {
  atomic_fetch_add(&p->refs, 1);
  return p;
}

void reg_pool_unref(struct reg_pool *p) {
  if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
  for (size_t i = 0; i < p->n; i++) free(p->s[i]);
  free(p->s);
  free(p);
}

/* ---- references ---- */

char *registry_qualify(const char *ns, const char *ref) {
  if (strchr(ref, ':')) return xstrdup(ref);
  struct buf b;
  buf_init(&b);
  buf_printf(&b, "%s:%s", ns, ref);
  return buf_steal(&b);
}

/* ---- budgets and files ---- */

void reg_budget_init(struct reg_budget *b, const struct reg_opts *o) {
  b->nodes = REG_MAX_NODES;
  b->bytes = REG_MAX_BYTES;
  b->lua_deadline_ns = clock_mono_ns() + (int64_t)REG_LUA_WALL_MS * 1000000;
  b->stop = o ? o->stop : NULL;
  b->stop_ud = o ? o->stop_ud : NULL;
}

int reg_budget_take(struct reg_budget *b, long n, size_t bytes) {
  if (n > b->nodes || bytes > b->bytes) return -1;
  b->nodes -= n;
  b->bytes -= bytes;
  return 0;
}

static const char *file_type(mode_t m) {
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  if (S_ISDIR(m)) return "a directory";
  return "not a regular file";
}

char *reg_file_read(const char *path, size_t *len, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, errlen, "cannot read: %s", strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode) || st.st_size > (off_t)REG_MAX_FILE_BYTES) {
    if (!S_ISREG(st.st_mode)) snprintf(err, errlen, "refused: %s, not a regular file", file_type(st.st_mode));
    else snprintf(err, errlen, "refused: larger than the file budget (%u MiB)", REG_MAX_FILE_BYTES >> 20);
    close(fd);
    return NULL;
  }
  struct buf b;
  buf_init(&b);
  buf_reserve(&b, (size_t)st.st_size + 1);
  char tmp[65536];
  ssize_t n = 0;
  while (b.len <= REG_MAX_FILE_BYTES && (n = read(fd, tmp, sizeof tmp)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    buf_add(&b, tmp, (size_t)n);
  }
  int e = errno;
  close(fd);
  if (n < 0 || b.len > REG_MAX_FILE_BYTES) {
    if (n < 0) snprintf(err, errlen, "cannot read: %s", strerror(e));
    else snprintf(err, errlen, "refused: larger than the file budget (%u MiB)", REG_MAX_FILE_BYTES >> 20);
    buf_free(&b);
    return NULL;
  }
  if (len) *len = b.len;
  return buf_steal(&b);
}
