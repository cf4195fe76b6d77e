/*
** proc.h — a process: one lua_State, its tasks (scheduler-managed coroutines), its mailbox,
** links, monitors and names (wippy-compat.md §3.1, §4); and function states, the processes
** that HTTP and job threads call inline (funcpool.c). Its parts have their own headers:
** messages and queues msg.h, tasks and sessions task.h, calls call.h, worker slots worker.h.
**
** Ownership and threads:
**  - `lock` guards the mailbox, `state`, the monitor/link sets and `flags`. Any thread may
**    post (proc_post) or add a monitor/link.
**  - Everything else (the lua_State, tasks, channels, sessions, feeds) belongs to the worker
**    that runs the process; only one worker runs it at a time (state RUNNING).
**  - State machine (skynet's in_global rule): a post to an IDLE process makes it QUEUED and
**    hands it to its scheduler; only the running worker turns RUNNING into IDLE, under
**    `lock`, and only when the mailbox and the ready list are both empty. So a wake-up is
**    never lost and a process never runs on two threads.
**  - Lifetime: refcounted; the pid table holds one reference until the process exits.
*/
#ifndef TASKHOST_PROC_H
#define TASKHOST_PROC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/hmap.h"
#include "msg.h"
#include "task.h"
#include "base/util.h"

typedef struct lua_State lua_State;
struct rt;
struct sched;
struct worker;
struct code;
struct chan;
struct call;

/* PS_INLINE: a function state, run by the thread that called it (funcpool.c); a post only
** signals `cv`. A function state whose call left coroutines running is detached to a process
** host and becomes an ordinary QUEUED process that ends when its last task ends. */
enum proc_state { PS_IDLE, PS_QUEUED, PS_RUNNING, PS_DONE, PS_INLINE };

/* Queue of C messages waiting to become Lua values on a channel (inbox, events). */
struct feed {
  struct msgq q;
  struct chan *ch;            /* the channel object, once created (anchored in the registry) */
  int chref;
};

/* A process.listen subscription: messages whose topic matches `pattern` (exact, or a glob
** with * ? [..]) go to its feed instead of the inbox. A glob never matches a reserved topic
** (starting with '@': events.subscribe's listeners are exact "@events:<id>" ones). */
struct listener {
  char *pattern;
  int glob;
  struct feed feed;
  void *ud;                   /* its owner's (events.subscribe: the struct evsub), or NULL */
};

/* Where a user message with this topic goes: a listener's feed, else the inbox. */
struct feed *proc_route(struct proc *p, const char *topic);

/* Who to tell when a process ends. A C watcher runs on the exiting worker's thread. */
struct exit_info {
  uint64_t pid;
  int failed;                 /* raised, or returned a second value that is an error/string */
  const char *error;          /* message when failed */
  int canceled;               /* ended by terminate / host shutdown */
  int exit_code;              /* wippy-compat.md §4.11 rules applied to main's first result */
  const char *out_text;       /* main returned a string: the text */
};
typedef void (*exit_fn)(void *ud, const struct exit_info *info);
struct watcher { uint64_t pid; exit_fn fn; void *ud; };

struct proc {
  uint64_t pid;
  char pidstr[96];            /* "{app:processes|0x00004}" */
  struct rt *rt;
  struct sched *sched;         /* NULL for an attached function state */
  const char *host_name;      /* shown in pids this process sends from */
  const struct code *code;    /* process entry code; holds the generation alive */
  _Atomic int refs;

  pthread_mutex_t lock;       /* guards the fields down to `flags` */
  int state;                  /* enum proc_state */
  struct msgq mailbox;
  struct watcher *watchers;   /* monitors: pids or C callbacks */
  size_t nwatchers, capwatchers;
  uint64_t *links;
  size_t nlinks, caplinks;
  int flags;                  /* PF_* */

  /* worker-owned from here */
  struct proc *run_next;      /* scheduler queue link */
  struct worker *worker;      /* the worker running this process, while RUNNING */
  lua_State *L;
  _Atomic size_t mem;         /* bytes held by L (counting allocator): written by the owner
                                 only, relaxed; others may read it (metrics), relaxed */
  size_t mem_limit;
  struct blockcache *cache;   /* small-block free lists (function states only), or NULL */
  struct task root;           /* pseudo-task of the main thread: blocking calls refuse it */
  struct task *ready_head, *ready_tail;
  struct task *tasks;         /* all live tasks */
  struct task *main_task;
  char *args; size_t args_len; /* packed arguments for main, freed at boot */
  struct feed inbox, events;
  struct hmap sessions;       /* session → struct pending */
  uint64_t next_session;
  struct msgq lines;          /* terminal: lines read but not yet asked for */
  int stdin_eof;
  struct task *line_waiter;
  struct listener **listeners; /* process.listen subscriptions, in creation order */
  size_t nlisteners;
  _Atomic int kill;           /* terminate requested: the interrupt hook raises "terminated" */
  int preempted;              /* the interrupt hook yielded: end this step */
  int trap_links;
  int done;                   /* main finished or the process failed: exit at end of step */
  int exit_failed;
  char *exit_error;           /* failure message */
  struct buf exit_result;     /* packed (value, error) for EXIT events */
  int exit_code;
  char *exit_text;
  int terminal;               /* runs on a terminal host: io works */
  char **names;               /* names registered by this process */
  size_t nnames;
  struct buf scratch;         /* reused packing buffer for sends */
  /* function states */
  pthread_cond_t cv;          /* PS_INLINE: signalled by posts (guarded by `lock`; monotonic) */
  int is_function;
  int fn_ref;                 /* the entry's function, anchored */
  struct call *call;          /* the inline call in progress, or NULL */
  struct call_hook *call_hooks; /* run when that call ends (proc_on_call_end) */
  int detached;               /* a function state handed to a process host */
  struct task *free_tasks;    /* finished tasks whose coroutines are reused (linked by next) */
  int nfree_tasks;
  /* Messages in its feeds (inbox, events, listeners) not yet received, for the metrics'
  ** mailbox depth: written only by the thread running the process (proc_fed), read by any. */
  _Atomic size_t fed;
};

/* A feed of p gained (d > 0) or lost messages; on p's own thread (one writer: no RMW). */
static inline void proc_fed(struct proc *p, long d) {
  size_t n = atomic_load_explicit(&p->fed, memory_order_relaxed);
  atomic_store_explicit(&p->fed, n + (size_t)d, memory_order_relaxed);
}
/* Messages waiting for p: its mailbox (under its lock) plus its feeds. Any thread. */
size_t proc_queued(struct proc *p);

enum { PF_CANCELED = 1, PF_KILL = 2 };

/* ---- lifecycle ---- */
struct spawn_opts {
  const char *args; size_t args_len;   /* packed arguments (copied) */
  uint64_t monitor_by;                 /* pid that monitors the new process, or 0 */
  uint64_t link_with;                  /* pid linked with the new process, or 0 */
  exit_fn on_exit; void *on_exit_ud;   /* C watcher, or NULL */
  int terminal;
  struct proc *spawner;                /* the running process spawning it, or NULL */
};
/* Creates a process for `code` on `s` and queues its first step. Returns its pid, 0 on
** failure (scheduler stopping). */
uint64_t proc_spawn(struct rt *rt, struct sched *s, const struct code *code,
                    const struct spawn_opts *o);

/* Function states (funcpool.c owns them). new: a booted state in PS_INLINE, or NULL with
** the message in err; the chunk runs for call c on watchdog slot w (its deadline and cancel
** flag stop a chunk that never returns; c is marked interrupted then). call_inline runs the entry function with no arguments on the calling
** thread until it returns, fails or passes c->deadline; w is the caller's watchdog slot.
** detach hands a state whose call left tasks running to process host s. */
struct proc *proc_new_function(struct rt *rt, const struct code *code, struct worker *w,
                               struct call *c, char *err, size_t errlen);
void proc_call_inline(struct proc *p, struct worker *w, struct call *c);
/* A C hook a module arms for the end of the inline call in progress (p->call set): run once,
** on the calling thread, after the call's function returned, failed or was stopped, before
** the state goes back to its pool (lmod_sql.c rolls back transactions a handler left open).
** The hook's memory is the module's and must outlive the call; armed is set while queued. */
struct call_hook { void (*fn)(struct proc *p, struct call_hook *h); struct call_hook *next; int armed; };
void proc_on_call_end(struct proc *p, struct call_hook *h);
int proc_live_tasks(const struct proc *p);
void proc_detach(struct proc *p, struct sched *s);
void proc_free_function(struct proc *p);

/* Runs one step on worker w. Returns 1 if the process must be queued again. */
int proc_step(struct proc *p, struct worker *w);

void proc_ref(struct proc *p);
void proc_unref(struct proc *p);

/* Posts m to pid (takes ownership of m). `waker` is the running process posting it, or NULL
** from other threads. Returns 0, or -1 when no such live process exists (m is freed). */
int proc_post(struct rt *rt, uint64_t pid, struct msg *m, struct proc *waker);

/* Same as proc_post for a process the caller holds (a reference or the pid-table lock). */
int proc_deliver(struct proc *p, struct msg *m, struct proc *waker);

/* Adds a monitor/link on `pid`. Returns 0, -1 if pid is not alive. */
int proc_watch(struct rt *rt, uint64_t pid, const struct watcher *w);
int proc_unwatch(struct rt *rt, uint64_t pid, uint64_t watcher_pid);
int proc_link(struct rt *rt, uint64_t pid, uint64_t other);
int proc_unlink(struct rt *rt, uint64_t pid, uint64_t other);

/* Marks the process failed (message copied) and asks it to end at the end of this step. */
void proc_fail(struct proc *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
