/*
** regsvc.h — the registry service: what the `registry` Lua module (lua/lmod_registry.c)
** reaches through rt_find_service(rt, "registry") without naming the app, which implements
** it (app/app_registry.c) and registers it before any Lua runs.
**
** Threads: submit, versions and generation may be called from any thread. A submitted change set is
** applied on the app's main thread, one at a time and never beside a hot reload; the main
** thread then writes the results and calls req->done exactly once (on the main thread).
** Hand-off of a request (`claim`): the submitter owns it until submit returns 0, then the
** service until done; done moves WAITING → POSTED (the completion message owns it) or finds
** GONE (the waiter left: set by the submitter's cancel) and frees it. The service skips a
** request already GONE when its turn comes (it is not applied).
*/
#ifndef TASKHOST_REGSVC_H
#define TASKHOST_REGSVC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct reg_op;
struct registry;

#define REG_KEEP_VERSIONS 32    /* versions registry.versions() lists, the newest */
#define REG_KEEP_GENERATIONS 8  /* of them, the newest whose entries are kept (snapshot_at) */

/* One generation the host ran. source: "files" (the project loaded or hot-reloaded) or
** "runtime" (a change set); a static string. */
struct reg_version {
  uint64_t id;              /* registry_version of the generation */
  int64_t time_ns;          /* wall clock when it was adopted */
  const char *source;
  size_t entries;
};

enum { REQ_WAITING, REQ_POSTED, REQ_GONE };

struct reg_change_req {
  struct reg_op *ops;       /* owned by the request (reg_op_free each, then free) */
  size_t nops;
  _Atomic int claim;        /* REQ_* above */
  void (*done)(struct reg_change_req *q);
  void *ud;                 /* the submitter's (where to post the completion) */
  uint64_t pid, session;
  /* results, written by the service before done */
  int ok;
  struct reg_version version;   /* ok: the new generation */
  const char *kind;         /* !ok: an error kind (value/errors.h EK_*) */
  char *error;              /* !ok: every diagnostic, one a line (malloc'd) */
};

struct reg_service {
  void *ud;
  /* Queues q for the main thread. 0, or -1 when the host is stopping (q stays the caller's). */
  int (*submit)(void *ud, struct reg_change_req *q);
  /* Copies up to max of the kept versions, oldest first; returns how many. */
  size_t (*versions)(void *ud, struct reg_version *out, size_t max);
  /* A reference to kept generation `id` (registry_unref it), or NULL when it is not kept. */
  struct registry *(*generation)(void *ud, uint64_t id);
};

#endif
