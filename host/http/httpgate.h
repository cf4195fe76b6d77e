/*
** httpgate.h — keeps slow request heads (slowloris) from taking every civetweb thread.
**
** civetweb 1.15 gives each connection a worker thread, and the thread blocks while the
** request head trickles in (bounded only by request_timeout_ms for the whole head). So a
** few thousand connections sending one byte a second hold all `threads`, and new clients
** wait in the accept queue behind them. The gate knows what each worker thread is doing (a
** gate_slot per thread, written only by that thread: no connection, waiting for a head, or
** serving a request from a given peer). A sweeper thread checks every SWEEP_MS whether fewer
** than a reserve of threads (threads/8, at least 1) is free while some thread has waited
** GRACE_MS or more for a request head; while that lasts it looks at the server's sockets
** open (seen by the sweeper) for GRACE_MS or more and shuts down
**   - a connection some request was served on, if its thread has been waiting GRACE_MS for
**     the next head (idle keep-alive; a busy keep-alive client sends its next request at
**     once and is never cut), and
**   - a connection no request was served on yet (its first head is trickling in, on a thread
**     or in line),
**   either unless a whole head is in its receive queue (a client waiting in line, or a busy
**   keep-alive client whose thread was slow to read its next head on a loaded machine).
** Their threads return to the pool at once and serve the connections waiting in line. A
** normal client sends its head in one packet, so only slow or idle connections are cut, and
** only under pressure (without it a slow client has the whole timeouts.read for its head).
** A connection whose head a thread has just read, in the microseconds before begin_request
** marks it serving, looks slow too; if it has been open GRACE_MS under pressure it can be cut.
**
** Finding sockets: civetweb exposes neither a connection's descriptor nor, before its head
** is read, its peer; so the sweeper scans /proc/self/fd for sockets bound to the server's
** port, remembers when it first saw each (by inode), and dups a descriptor before checking
** and shutting it down, so a descriptor number closed and reused meanwhile is never cut by
** mistake. The scan costs a few syscalls per descriptor, and runs only under pressure.
**
** Threads: gate_slot fields are stored by their worker thread and read by the sweeper.
*/
#ifndef TASKHOST_HTTPGATE_H
#define TASKHOST_HTTPGATE_H

#include <stdatomic.h>
#include <stdint.h>

enum { GATE_IDLE, GATE_HEAD, GATE_BUSY };   /* no connection / waiting for a head / serving */

struct gate_slot {
  _Atomic int state;
  _Atomic int64_t since;      /* monotonic ns when GATE_HEAD began */
  _Atomic uint64_t peer;      /* the connection's client (address, port) once a request came; 0 before */
};

struct httpgate;

/* threads: the server's worker count. Starts the sweeper. */
struct httpgate *httpgate_new(const char *id, int threads);
void httpgate_set_port(struct httpgate *g, int local_port);     /* before any sweep cuts */
void httpgate_add(struct httpgate *g, struct gate_slot *slot);  /* slot lives until free */
uint64_t httpgate_evicted(const struct httpgate *g);
void httpgate_free(struct httpgate *g);                          /* stops the sweeper */

/* Worker-thread transitions (a store or two). */
void gate_open(struct gate_slot *s);            /* a new connection: its first head is awaited */
void gate_busy(struct gate_slot *s, const char *remote_addr, int remote_port);   /* a request */
void gate_wait(struct gate_slot *s);            /* answered: the next head is awaited */
static inline void gate_set(struct gate_slot *s, int state) {
  atomic_store_explicit(&s->state, state, memory_order_release);
}

#endif
