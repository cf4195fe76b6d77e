/*
** rt.h — the runtime context shared by every scheduler: the pid table, the name registry,
** the timer thread, the current registry generation and its compiled code, and the process
** hosts by entry id. Threads: pid table and names have their own locks; the generation
** pointer is swapped under `gen_lock` (hot reload); the rest is set up once by main.
**
** runtime/ is the process engine. Its core — proc, task, chan, scheduler, rt, luaenv — is one
** knot on purpose (a process owns tasks that park on channels and are run by a scheduler
** that finds processes in the pid table), as Lua's core and skynet's are; the other files
** here (msg, watchdog, funcpool, term, supervise) sit on it. Nothing in runtime/ names a
** folder above it: Lua modules come in through `libs`, set by the app from lua/linit.c, and
** the queues (`queues`) and services (`services`) are opaque pointers the app registers.
*/
#ifndef TASKHOST_RT_H
#define TASKHOST_RT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/hmap.h"

struct proc;
struct sched;
struct timers;
struct registry;
struct codeset;
struct jobq;
struct luaenv_lib;
struct evbus;
struct exit_info;
struct strmap;

struct rt {
  struct timers *timers;
  const char *project_dir;
  size_t proc_mem_limit;      /* Lua heap limit per process, 0 = none */
  /* The built-in Lua modules of every state (luaenv.h), ended by a NULL name; set by whoever
  ** makes the rt (linit_libs()) before any Lua runs, read-only afterwards. NULL: none. */
  const struct luaenv_lib *libs;
  /* Lua heap bytes of the states closed since the last malloc_trim (scheduler.c): glibc
  ** keeps the freed pages of many closed states (in the middle of its arenas) otherwise. */
  _Atomic uint64_t heap_closed;
  _Atomic int64_t last_trim;   /* monotonic ns of the last malloc_trim */
  /* system.exit (lua/lmod_system.c): 0 = none, else the exit code asked for + 1; the app's
  ** wait loop polls it and shuts the host down with that code. */
  _Atomic int exit_request;
  _Atomic uint64_t messages_sent;   /* process.send calls delivered (metrics); relaxed */

  pthread_mutex_t gen_lock;
  struct registry *gen;       /* current generation */
  struct codeset *code;       /* its compiled Lua */

  pthread_rwlock_t pid_lock;
  struct hmap pids;           /* pid → struct proc * (one reference each) */
  _Atomic uint64_t next_pid;

  pthread_mutex_t name_lock;
  struct hmap names;          /* fnv(name) → struct name_ent * chain */

  /* Process hosts and queue.queue entries by id. Added on the main thread (at start and by
  ** hot reloads); read by any thread without a lock: an add publishes a new array (release)
  ** before the count and keeps the old one until rt_free, so a reader that loads the count
  ** (acquire) and then the array never walks freed memory or an entry not yet written. */
  struct sched_ent { char *id; struct sched *s; int terminal; } *_Atomic scheds;
  _Atomic size_t nscheds;
  struct queue_ent { char *id; struct jobq *q; } *_Atomic queues;
  _Atomic size_t nqueues;
  void **old_tables;          /* replaced arrays, freed by rt_free (main thread only) */
  size_t nold_tables;

  /* Engines of the layers above that Lua modules reach through the runtime without the
  ** runtime naming them (e.g. "http_client" → http/httpc.h's struct httpc), each an opaque
  ** pointer; registered by the app before any Lua runs, read-only afterwards. */
  struct service_ent { const char *name; void *ptr; } services[8];
  size_t nservices;

  /* env.storage.memory's values, "storage id\x1fkey" → value (base/strmap.h, its own lock):
  ** made by rt_new, kept for the host's life, so hot reloads keep what env.set wrote. */
  struct strmap *env_memory;

  /* The event bus (events.h), made and freed by the app; NULL until then. */
  struct evbus *events;
  /* Called on the exiting worker after a process (not a function state) ended and its
  ** watchers were told, or NULL; set by the app before any process runs. */
  void (*proc_exited)(struct rt *rt, const struct proc *p, const struct exit_info *info);
};

struct rt *rt_new(const char *project_dir);
void rt_free(struct rt *rt);

void rt_set_generation(struct rt *rt, struct registry *gen, struct codeset *code);
/* Takes references to the current generation's code: release with codeset_unref. */
struct codeset *rt_code(struct rt *rt);

void rt_add_sched(struct rt *rt, const char *id, struct sched *s, int terminal);
struct sched *rt_find_sched(struct rt *rt, const char *id);
/* Where a function call's leftover coroutines run: host `id`, or (id NULL) the first
** process host (not a terminal one) added; NULL when there is none. Any thread. */
struct sched *rt_background_sched(struct rt *rt, const char *id);
void rt_add_queue(struct rt *rt, const char *id, struct jobq *q);
struct jobq *rt_find_queue(struct rt *rt, const char *id);
/* Copies of the host and queue tables (a malloc'd array the caller frees; its id strings and
** objects live as long as the rt), taken under gen_lock, for readers on other threads (the
** admin listener, the system module) while a reload may add entries. */
size_t rt_list_scheds(struct rt *rt, struct sched_ent **out);
size_t rt_list_queues(struct rt *rt, struct queue_ent **out);
/* name must be a constant string; at most countof(services). find: NULL when absent. */
void rt_add_service(struct rt *rt, const char *name, void *ptr);
void *rt_find_service(struct rt *rt, const char *name);

uint64_t rt_next_pid(struct rt *rt);
void rt_pid_add(struct rt *rt, struct proc *p);
void rt_pid_remove(struct rt *rt, uint64_t pid);
struct proc *rt_pid_get(struct rt *rt, uint64_t pid);          /* with a reference, or NULL */
/* Calls fn for every live process of scheduler s (or all if s is NULL) under the pid lock. */
void rt_foreach_proc(struct rt *rt, struct sched *s, void (*fn)(struct proc *, void *), void *ud);

/* Writes "{host|0x0000f}" (the form rt_pid_parse reads) into buf; returns buf. */
char *rt_pid_format(char *buf, size_t len, const char *host, uint64_t pid);
/* "{app:processes|0x0000f}" → 15; 0 if malformed. */
uint64_t rt_pid_parse(const char *s);
/* Resolves a destination: a pid string or a registered name. 0 if unknown. */
uint64_t rt_resolve(struct rt *rt, const char *dest);

/* Names (LOCAL scope). register: 0 ok (also when already ours), -1 taken by another pid. */
int rt_name_register(struct rt *rt, const char *name, uint64_t pid, uint64_t *owner);
uint64_t rt_name_lookup(struct rt *rt, const char *name);
/* Removes name if owned by pid (any owner when pid == 0). Returns 1 if removed. */
int rt_name_unregister(struct rt *rt, const char *name, uint64_t pid);

#endif
