/*
** watchdog.h — a thread that watches worker slots (struct worker, worker.h) and arms the
** interrupt hook on a coroutine that has been inside one lua_resume for more than a slice
** (20 ms). The hook then preempts it, or ends it when a kill was requested or its call's
** deadline passed (task.c). Used by process hosts and by HTTP servers.
** Threads: watchdog_add may be called from any thread; slots must outlive the watchdog.
*/
#ifndef TASKHOST_WATCHDOG_H
#define TASKHOST_WATCHDOG_H

struct worker;
struct watchdog;

struct watchdog *watchdog_new(void);            /* starts the thread (NULL if it cannot) */
void watchdog_add(struct watchdog *wd, struct worker *w);
void watchdog_free(struct watchdog *wd);        /* stops the thread */

#endif
