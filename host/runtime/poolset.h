/*
** poolset.h — the function pools of one generation's code: one funcpool per function.lua
** entry, made on first use (pool.max_size states at most, leftover coroutines to pool.host
** or the first process host), freed with the set when its last reference goes. Route tables
** and consumers of a reloaded generation (app_reload.c) and the funcs engine (fcall.c) each
** hold sets this way, so a hot reload sends new work to new pools while work in flight ends
** on the old ones.
** Threads: any; the set's mutex guards its list and count of references.
*/
#ifndef TASKHOST_POOLSET_H
#define TASKHOST_POOLSET_H

#include <stddef.h>

struct rt;
struct codeset;
struct funcpool;
struct poolset;

/* A set with one reference; it takes its own reference on code. */
struct poolset *poolset_new(struct rt *rt, struct codeset *code);
/* func's pool, made now if needed; NULL when code has no function.lua entry of that id. */
struct funcpool *poolset_get(struct poolset *ps, const char *func);
void poolset_ref(struct poolset *ps);
/* Drops a reference; the last one frees the pools (no call may be running on them) and
** the code reference. Returns 1 when it freed the set. */
int poolset_unref(struct poolset *ps);
const struct codeset *poolset_code(const struct poolset *ps);
size_t poolset_pools(struct poolset *ps);

#endif
