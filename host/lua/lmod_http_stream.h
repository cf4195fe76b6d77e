/*
** lmod_http_stream.h — http_client's streaming responses (`stream = true`), shared by
** lmod_http_client.c (which builds the request) and lmod_http_stream.c (the stream object).
** Threads: called on the thread running the calling state.
*/
#ifndef TASKHOST_LMOD_HTTP_STREAM_H
#define TASKHOST_LMOD_HTTP_STREAM_H

#include <stddef.h>

typedef struct lua_State lua_State;
struct task;
struct httpc;
struct httpc_req;

/* Bytes a stream buffers before the transfer pauses (back-pressure). A body piece curl
** hands over (up to 16 KiB, more when it decompresses) may pass it once. */
#define HSTREAM_WINDOW ((size_t)256 << 10)

/* Submits r as a stream for task t and parks t until the head is in; r->timeout_ms is the
** wait for the head and for each :read(). Returns lua_yield's, or pushes nil, err. */
int hstream_start(lua_State *L, struct task *t, struct httpc *h, struct httpc_req *r);
/* Registers the stream object's metatable in L. */
void hstream_open(lua_State *L);

/* lmod_http_client.c: nil, err for a failure kind (enum httpc_fail) and message; returns 2.
** refuse: marks r failed for httpc_submit's rc (HTTPC_BUSY / HTTPC_STOPPED). */
int lhttpc_push_fail(lua_State *L, int fail, const char *msg);
void lhttpc_refuse(struct httpc_req *r, int rc);
/* lmod_http_client.c: a call's deadline bounds r's timeout (function states). */
void lhttpc_clamp(struct task *t, struct httpc_req *r);

#endif
