/*
** lfuture.h — the one Future type of the Lua modules that start work on another thread and
** hand back a handle (http_client.async, funcs.async). A future is a userdata anchored by a
** PEND_IO session with no parked task (task.h): the engine's completion reaches the process
** as an MK_IO message, its io_ops.push pushes the results and io_ops.settle (lfuture_settle)
** records them. Any number of coroutines may wait in :result(); :channel() is an ordinary
** channel (capacity 1), usable in channel.select.
** Two modes, because the two modules promise different things:
**   LF_VALUE   (http_client): the channel receives the value (the response) or, on failure,
**              the error object; :result() gives value | nil, err.
**   LF_PAYLOAD (funcs, Wippy's shape): the channel receives a Payload of the first result
**              (`:data()`) or, on failure, is closed without a value; :result() gives
**              Payload | nil, err.
** Both: :is_complete(), :is_canceled(), :error() → err, true | nil, false, :cancel().
** Owner: the thread running the process that made the future (it lives in that state).
*/
#ifndef TASKHOST_LFUTURE_H
#define TASKHOST_LFUTURE_H

#include <stdint.h>

typedef struct lua_State lua_State;
struct pending;

enum lfuture_mode { LF_VALUE, LF_PAYLOAD };

/* Pushes a new pending future. */
void lfuture_new(lua_State *L, int mode);
/* Binds the future at fidx to session pe: pe anchors it (pe->ref) until it completes, and
** :cancel() frees pe (its io_ops.cancel stops the work). */
void lfuture_bind(lua_State *L, int fidx, struct pending *pe);
/* io_ops.settle: the future at -(n+1), its n results above ((value...) or (nil, err)). Pops
** nothing. Also used to complete a future at once (a refused request). */
void lfuture_settle(lua_State *L, int n);
/* Registers the metatable (every opener of a module that makes futures calls it). */
void lfuture_open(lua_State *L);

#endif
