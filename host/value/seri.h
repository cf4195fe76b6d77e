/*
** seri.h — copies Lua values between independent lua_States by serialising them into one
** flat buffer (skynet's lua-seri idea). nil, booleans, integers (stay integers), floats,
** strings, nested tables and error objects survive; functions, other userdata, threads and
** cyclic tables are refused with a clear message. A table referenced twice (not a cycle) is
** copied twice. Reentrant; the buffer belongs to the caller.
*/
#ifndef TASKHOST_SERI_H
#define TASKHOST_SERI_H

#include <stddef.h>
#include "base/util.h"

typedef struct lua_State lua_State;

/* Appends the `n` values starting at stack index `first` to `out`.
** Returns 0, or -1 with e.g. "cannot send a function (argument 2, field 'cb')" in err. */
int seri_pack(lua_State *L, int first, int n, struct buf *out, char *err, size_t errlen);

/* Pushes every value packed in data[0..len). Returns how many were pushed, or -1 on
** corrupt input (nothing pushed). */
int seri_unpack(lua_State *L, const void *data, size_t len);

#endif
