/*
** msg.h — messages between processes and the FIFO they queue on (wippy-compat.md §3.1).
** A message is one malloc'd block: a header, its topic and its body (seri-packed values or
** raw text), built by msg_new on the sender's thread.
**
** Ownership and threads:
**  - A message has one owner at a time: the sender until it posts it (proc_post takes it),
**    then the queue it sits on, then whoever pops it, who frees it with msg_free().
**  - A msgq has no lock of its own: its owner serialises access (a process's `lock` for the
**    mailbox, the worker running the process for its feeds and stdin lines; proc.h).
*/
#ifndef TASKHOST_MSG_H
#define TASKHOST_MSG_H

#include <stddef.h>
#include <stdint.h>

typedef struct lua_State lua_State;

/* Message kinds. Payload layout: `data` holds `topic_len` bytes of topic (+ NUL) then
** `len` bytes of body (seri-packed values, or raw text for MK_LINE/MK_CANCEL reason). */
enum msg_kind {
  MK_USER,        /* process.send: topic + packed payloads */
  MK_EXIT,        /* a monitored process ended: body = packed (value, error) */
  MK_LINK_DOWN,   /* a linked process failed: body = packed (value, error) */
  MK_CANCEL,      /* graceful stop request: topic = reason */
  MK_TIMER,       /* a session's timer fired: token = session */
  MK_LINE,        /* terminal: one line of stdin in the topic */
  MK_EOF,         /* terminal: stdin closed */
  MK_KILL,        /* terminate now: topic = reason */
  MK_IO,          /* C code on another thread completed a session (task.h PEND_IO):
                  ** token = session, body = struct io_done */
};

/* A session completed by C code on another thread (an I/O engine): the hooks of its request.
** The message carrying a completion owns `req` from proc_post on: whoever consumes it hands
** req to exactly one hook — push when the session's waiter is found (on the process's
** thread), drop when it is not or the message is freed unread (msg_free). cancel is called
** by pending_free when the waiter goes away before any completion reached it (task killed,
** process ended, call deadline); the engine then owns the race between its completion and
** that cancel (see http/httpc.h for how its requests settle it with an atomic state). */
struct io_ops {
  int (*push)(lua_State *co, void *req);  /* push the results on co, return their count; frees req */
  void (*drop)(void *req);                /* a completion nobody waits for: free req */
  void (*cancel)(void *req);              /* the waiter is gone: the engine stops the work */
  /* A session no task is parked on (pending.t NULL, e.g. a future): deliver pushes the
  ** object the session anchors (pending.ref) on the process's main state L, then push's
  ** n results above it, and calls settle, which records them; deliver then clears L's stack
  ** back. NULL for hooks only used with parked tasks. */
  void (*settle)(lua_State *L, int n);
  /* Optional: the session's timer (pending_arm_timer on a PEND_IO session a task is parked
  ** on) fired before any completion. The session is freed first (so cancel ran and the
  ** request may be gone: expire gets none); expire pushes the task's results (a timeout
  ** error) on co and returns their count. */
  int (*expire)(lua_State *co);
};
struct io_done { const struct io_ops *ops; void *req; };

struct msg {
  struct msg *next;
  uint8_t kind;
  uint64_t from;      /* sender pid, 0 for the host */
  const char *from_host; /* sender's process host name (lives as long as the host), or NULL */
  uint64_t token;     /* MK_TIMER / MK_IO session */
  int64_t at;         /* wall clock ns when posted (events report it) */
  uint32_t topic_len;
  uint32_t len;
  char data[];        /* topic '\0' body */
};

/* A message with copies of topic and body; from_host, token and at start as NULL/0. */
struct msg *msg_new(int kind, uint64_t from, const char *topic, size_t topic_len,
                    const void *body, size_t len);
static inline const char *msg_topic(const struct msg *m) { return m->data; }
static inline const char *msg_body(const struct msg *m) { return m->data + m->topic_len + 1; }
/* An MK_IO message for session `session` carrying req (its hooks ops). */
struct msg *msg_new_io(uint64_t session, const struct io_ops *ops, void *req);
/* Frees a message; an unread MK_IO message hands its request to its drop hook. Every path
** that discards a message (queues cleared, posts to a dead process) goes through here. */
void msg_free(struct msg *m);

/* A FIFO of messages. push takes ownership of m; pop hands the oldest to the caller (NULL
** when empty); clear frees every message left. */
struct msgq { struct msg *head, *tail; size_t n; };
/* Inline: they sit on every send and receive (they were inlined inside proc.c before msg.c). */
static inline void msgq_push(struct msgq *q, struct msg *m) {
  m->next = NULL;
  if (q->tail) q->tail->next = m;
  else q->head = m;
  q->tail = m;
  q->n++;
}

static inline struct msg *msgq_pop(struct msgq *q) {
  struct msg *m = q->head;
  if (!m) return NULL;
  q->head = m->next;
  if (!q->head) q->tail = NULL;
  q->n--;
  m->next = NULL;
  return m;
}

void msgq_clear(struct msgq *q);

#endif
