/*
** watch.h — watches a directory tree with inotify (subdirectories created later included)
** and reports a burst of changes once it has been quiet for a moment (editors save in
** several steps: a temp file, a rename, a chmod).
** Threads: one watcher thread of its own; watch_take may be called from any thread.
*/
#ifndef TASKHOST_WATCH_H
#define TASKHOST_WATCH_H

#include <stddef.h>
#include <stdint.h>

struct watch;

/* Starts watching dir. quiet_ns: how long a burst must be quiet before it is reported.
** NULL with a message in err. */
struct watch *watch_start(const char *dir, int64_t quiet_ns, char *err, size_t errlen);
/* 1 when a burst ended since the last call; *path gets the last path it touched
** (malloc'd, relative to dir) and *count how many events it had. Else 0. */
int watch_take(struct watch *w, char **path, size_t *count);
void watch_stop(struct watch *w);

#endif
