/*
** chan.h — channels: process-local userdata shared by the coroutines of one process
** (wippy-compat.md §3.2), plus the select machinery. No locks: only the worker running the
** process touches them. A channel may be fed by C messages (inbox, events), which become Lua
** values only when a receiver takes them.
**
** Waking protocol (the waker removes the waiter, Tarantool's rule; wakers never resume):
** firing a parked select pushes (case index, value, ok) onto the parked task's coroutine,
** unlinks the record from every channel and makes the task ready. The continuation of the
** blocked call turns those three values into its own results.
*/
#ifndef TASKHOST_CHAN_H
#define TASKHOST_CHAN_H

typedef struct lua_State lua_State;
struct proc;
struct msg;
struct feed;
struct chan;
struct sel;

#define CHAN_MT "taskhost.channel"
#define CASE_MT "taskhost.channel.case"

/* Converts a fed message into one Lua value pushed on L (takes ownership of m). */
typedef void (*feed_conv)(lua_State *L, struct proc *p, struct msg *m);

struct chan *chan_new(lua_State *L, int cap);           /* pushes the channel */
struct chan *chan_check(lua_State *L, int idx);          /* raises if not a channel */
void chan_set_feed(struct chan *c, struct feed *f, feed_conv conv);
/* Hands fed messages to parked receivers while both exist. */
void chan_pump(lua_State *L, struct chan *c);
/* Non-blocking send of the value on top of L (popped) on the channel at cidx: to a parked
** receiver, else into the buffer. Returns 0, or -1 if the channel is closed or full. */
int chan_offer(lua_State *L, int cidx);
/* Frees a parked select record (process exit). L may be NULL when the state is closing. */
void chan_sel_free(lua_State *L, struct sel *s);

/* Lua API (lmod_channel.c uses these). */
int chan_l_send(lua_State *L);
int chan_l_receive(lua_State *L);
int chan_l_close(lua_State *L);
int chan_l_case_send(lua_State *L);
int chan_l_case_receive(lua_State *L);
int chan_l_select(lua_State *L);
int chan_l_new(lua_State *L);
void chan_open_metatables(lua_State *L);

#endif
