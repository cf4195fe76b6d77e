/*
** events.h — the host's event bus (wippy-compat.md §3.16): best-effort notifications
** {system, kind, path, data} from any thread to the processes that subscribed to a system
** pattern (and optionally a kind). Delivery is a message to the subscriber's mailbox, so
** events from one sender reach each subscriber in the order they were sent. A subscriber
** holds at most `cap` events it has not taken yet; beyond that the bus drops (and counts)
** instead of making the sender wait. Nobody subscribed: a send costs one atomic load.
**
** The message: kind MK_USER, topic "@events:<subscription id>" (process.send refuses
** topics starting with '@', so user code cannot forge one), body as evbus_parse reads it.
** The subscriber's Lua side (lua/lmod_events.c) routes that topic to the subscription's
** channel with a process.listen-style listener and calls evsub_taken for every event its
** code takes off the channel.
**
** Threads: every function may be called from any thread. The subscription list is guarded
** by a rwlock (sends read it, subscribe/close write it); a subscription's counters are
** atomics; subscriptions are refcounted (the bus holds one reference, the subscriber one).
*/
#ifndef TASKHOST_EVENTS_H
#define TASKHOST_EVENTS_H

#include <stddef.h>
#include <stdint.h>

struct rt;
struct proc;
struct msg;
struct evbus;
struct evsub;

/* How an event's data is encoded in the message body. */
enum ev_data { EV_DATA_NONE, EV_DATA_SERI, EV_DATA_JSON };

/* Budgets: a system, kind or pattern over EV_NAME_MAX bytes, a path over EV_PATH_MAX or
** data over EV_DATA_MAX is refused by evbus_send / evbus_subscribe (-1, err). */
#define EV_NAME_MAX 128
#define EV_PATH_MAX 1024
#define EV_DATA_MAX (256u << 10)
#define EV_SUBS_MAX 10000            /* subscriptions in the whole host */
#define EV_CAP_DEFAULT 1024          /* events a subscriber may hold untaken */
#define EV_CAP_MAX 65536

struct evbus *evbus_new(struct rt *rt);
void evbus_free(struct evbus *b);     /* after every process has ended */

/* A subscription for process pid: systems matching `pattern` (a glob with * ? [..], or an
** exact name), kinds matching `kind` (the same; NULL = every kind). Returns it with two
** references (the bus's and the caller's), or NULL with the reason in err. */
struct evsub *evbus_subscribe(struct evbus *b, uint64_t pid, const char *pattern, const char *kind,
                              size_t cap, char *err, size_t errlen);
/* Takes s off the bus (no event is sent to it from now on) and drops the bus's reference. */
void evsub_close(struct evbus *b, struct evsub *s);
void evsub_unref(struct evsub *s);
uint64_t evsub_id(const struct evsub *s);
/* The subscriber took one event off its channel (frees one slot of its buffer). */
void evsub_taken(struct evsub *s);
uint64_t evsub_dropped(const struct evsub *s);

/* Sends one event to every matching subscription. data: `len` bytes encoded as `enc` (none,
** value/seri.h packing of one value, or JSON text). from: the sending pid (0 = the host);
** waker: the process running the sender, or NULL. Returns the number of subscriptions it
** was delivered to, or -1 with the reason in err (a budget). */
int evbus_send(struct evbus *b, uint64_t from, struct proc *waker, const char *system,
               const char *kind, const char *path, enum ev_data enc, const void *data,
               size_t len, char *err, size_t errlen);
/* An event of the host itself (from pid 0), data a JSON object's text (or NULL); the
** systems are "taskhost.<part>" (README lists them). Budget failures are ignored. */
void evbus_host(struct evbus *b, const char *system, const char *kind, const char *path,
                const char *json);
/* Anyone subscribed at all? (one relaxed atomic load: lets host code skip building data) */
int evbus_active(const struct evbus *b);

/* An event message's parts (pointers into m, valid while m lives). 0, or -1 if malformed. */
struct evparts {
  const char *system, *kind, *path;
  size_t nsystem, nkind, npath;
  enum ev_data enc;
  const void *data;
  size_t len;
};
int evbus_parse(const struct msg *m, struct evparts *out);
/* Appends the body evbus_send posts (evbus_parse reads it) to out; names within budgets. */
struct buf;
void evbus_format(struct buf *out, const char *system, const char *kind, const char *path,
                  enum ev_data enc, const void *data, size_t len);
/* "@events:<id>" → id; 0 when the topic is not an event's. */
uint64_t evbus_topic_sub(const char *topic);

struct evbus_stats { uint64_t sent, delivered, dropped; size_t subscriptions; };
void evbus_stats(struct evbus *b, struct evbus_stats *out);

#endif
