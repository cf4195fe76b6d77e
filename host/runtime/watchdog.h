/*
** watchdog.h — a thread that watches worker slots (struct worker, worker.h) and calls the
** interrupt callback on a slot whose coroutine has been inside one lua_resume for more than
** a slice (20 ms). Its users pass task_interrupt_worker (task.h), which arms the
** interrupt hook; the hook then preempts the coroutine, or ends it when a kill was requested
** or its call's deadline passed (task.c). Used by process hosts, HTTP servers and job
** consumers.
** Threads: the callback runs on the watchdog thread, following worker.h's protocol;
** watchdog_add may be called from any thread; slots must outlive the watchdog.
*/
#ifndef TASKHOST_WATCHDOG_H
#define TASKHOST_WATCHDOG_H

struct worker;
struct watchdog;

typedef void (*watchdog_fn)(struct worker *w);

/* Starts the thread, which calls interrupt (not NULL) for each slot stuck in one resume.
** NULL if the thread cannot start. */
struct watchdog *watchdog_new(watchdog_fn interrupt);
void watchdog_add(struct watchdog *wd, struct worker *w);
void watchdog_free(struct watchdog *wd);        /* stops the thread */

#endif
