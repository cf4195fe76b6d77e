/*
** watch.c — see watch.h.
** Threads: the watcher thread owns the inotify fd and the wd → directory table; the mutex
** guards only the finished-burst record that watch_take reads.
*/
#include "watch.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#define EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF)

struct watch {
  char *root;
  int fd, stop_fd;
  int64_t quiet_ns;
  pthread_t thread;
  char **dirs;                 /* by wd: the directory relative to root ("" = root) */
  size_t ndirs;
  /* the burst being collected (watcher thread only) */
  char *first;
  size_t count;
  int64_t last_ns;
  /* a finished burst (under lock) */
  pthread_mutex_t lock;
  char *done_first;
  size_t done_count;
  int ready;
};

/* Editor droppings that are not sources: .swp files, backups~, vim's write test "4913". */
static int ignored(const char *name) {
  size_t n = strlen(name);
  return name[0] == '.' || (n && name[n - 1] == '~') || strcmp(name, "4913") == 0;
}

static void add_tree(struct watch *w, const char *rel);

static void add_dir(struct watch *w, const char *rel) {
  char path[4096];
  snprintf(path, sizeof path, "%s%s%s", w->root, rel[0] ? "/" : "", rel);
  int wd = inotify_add_watch(w->fd, path, EVENTS | IN_ONLYDIR);
  if (wd < 0) { log_warn("watch: %s: %s", path, strerror(errno)); return; }
  if ((size_t)wd >= w->ndirs) {
    size_t n = (size_t)wd + 16;
    w->dirs = xrealloc(w->dirs, n * sizeof *w->dirs);
    memset(w->dirs + w->ndirs, 0, (n - w->ndirs) * sizeof *w->dirs);
    w->ndirs = n;
  }
  free(w->dirs[wd]);
  w->dirs[wd] = xstrdup(rel);
}

/* Watches rel and every directory below it. */
static void add_tree(struct watch *w, const char *rel) {
  add_dir(w, rel);
  char path[4096];
  snprintf(path, sizeof path, "%s%s%s", w->root, rel[0] ? "/" : "", rel);
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_type != DT_DIR || ignored(de->d_name)) continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
    add_tree(w, sub);
  }
  closedir(d);
}

/* Remembers the burst's last path: tools that write a temp file and rename it over the
** real one (sed -i, many editors) end with the real name. */
static void note(struct watch *w, const char *dir, const char *name) {
  free(w->first);
  size_t n = strlen(dir) + strlen(name) + 2;
  w->first = xmalloc(n);
  snprintf(w->first, n, "%s%s%s", dir, dir[0] ? "/" : "", name);
  w->count++;
  w->last_ns = clock_mono_ns();
}

static void handle(struct watch *w, const struct inotify_event *ev) {
  const char *dir = ev->wd >= 0 && (size_t)ev->wd < w->ndirs && w->dirs[ev->wd] ? w->dirs[ev->wd] : "";
  const char *name = ev->len ? ev->name : "";
  if (ev->mask & IN_Q_OVERFLOW) { note(w, "", "(many files)"); return; }
  if (ev->len && ignored(name)) return;
  if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
    char sub[4096];
    snprintf(sub, sizeof sub, "%s%s%s", dir, dir[0] ? "/" : "", name);
    add_tree(w, sub);                 /* files already in it count as changed below */
  }
  note(w, dir, name);
}

/* A burst quiet for quiet_ns is handed over to watch_take. */
static void maybe_finish(struct watch *w) {
  if (!w->count || clock_mono_ns() - w->last_ns < w->quiet_ns) return;
  pthread_mutex_lock(&w->lock);
  free(w->done_first);
  w->done_first = w->first;
  w->done_count = w->count + (w->ready ? w->done_count : 0);
  w->ready = 1;
  pthread_mutex_unlock(&w->lock);
  w->first = NULL;
  w->count = 0;
}

static void *watch_main(void *arg) {
  struct watch *w = arg;
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  struct pollfd fds[2] = {{w->fd, POLLIN, 0}, {w->stop_fd, POLLIN, 0}};
  for (;;) {
    int timeout = w->count ? (int)(w->quiet_ns / NS_PER_MS) + 1 : -1;
    int n = poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) break;
    if (fds[1].revents) break;
    if (n > 0 && (fds[0].revents & POLLIN)) {
      ssize_t len;
      while ((len = read(w->fd, buf, sizeof buf)) > 0)
        for (char *p = buf; p < buf + len;) {
          const struct inotify_event *ev = (const struct inotify_event *)p;
          handle(w, ev);
          p += sizeof *ev + ev->len;
        }
    }
    maybe_finish(w);
  }
  return NULL;
}

struct watch *watch_start(const char *dir, int64_t quiet_ns, char *err, size_t errlen) {
  struct watch *w = xcalloc(1, sizeof *w);
  w->root = xstrdup(dir);
  w->quiet_ns = quiet_ns;
  w->fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  w->stop_fd = eventfd(0, EFD_CLOEXEC);
  pthread_mutex_init(&w->lock, NULL);
  if (w->fd < 0 || w->stop_fd < 0) {
    snprintf(err, errlen, "watch %s: %s", dir, strerror(errno));
    watch_stop(w);
    return NULL;
  }
  add_tree(w, "");
  if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
    snprintf(err, errlen, "watch %s: cannot start a thread", dir);
    close(w->stop_fd);
    w->stop_fd = -1;
    watch_stop(w);
    return NULL;
  }
  return w;
}

int watch_take(struct watch *w, char **first, size_t *count) {
  pthread_mutex_lock(&w->lock);
  int ready = w->ready;
  if (ready) {
    *first = w->done_first;
    *count = w->done_count;
    w->done_first = NULL;
    w->ready = 0;
  }
  pthread_mutex_unlock(&w->lock);
  return ready;
}

void watch_stop(struct watch *w) {
  if (!w) return;
  if (w->stop_fd >= 0 && w->thread) {
    uint64_t one = 1;
    if (write(w->stop_fd, &one, sizeof one) < 0) {}
    pthread_join(w->thread, NULL);
  }
  if (w->fd >= 0) close(w->fd);
  if (w->stop_fd >= 0) close(w->stop_fd);
  for (size_t i = 0; i < w->ndirs; i++) free(w->dirs[i]);
  free(w->dirs);
  free(w->first);
  free(w->done_first);
  pthread_mutex_destroy(&w->lock);
  free(w->root);
  free(w);
}
