/*
** retire.h — objects a hot reload replaced (route tables, function pools), kept until no
** reader still uses them, then released. Readers announce what they use through hazard
** pointers the owner can scan (http.c's threads, jobrun.c's runners); the owner sweeps.
** Threads: the caller guards a list (its own lock); release callbacks run in retire_sweep.
*/
#ifndef TASKHOST_RETIRE_H
#define TASKHOST_RETIRE_H

#include <stddef.h>

struct retired;
struct retire_list { struct retired *head; };

/* Queues obj for release(ud) once it is unused (release may be NULL: nothing to do). */
void retire_push(struct retire_list *l, const void *obj, void (*release)(void *ud), void *ud);
/* Releases every queued object in_use(ctx, obj) says nobody uses (in_use NULL: all of them);
** returns how many are still queued. */
size_t retire_sweep(struct retire_list *l, int (*in_use)(void *ctx, const void *obj), void *ctx);

#endif
