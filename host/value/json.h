/*
** json.h — JSON for Lua values with wippy semantics (wippy-compat.md §3.8): decoding
** through lua-cjson (null → nil, integral numbers → Lua integers), encoding in C
** (empty table → [], integers stay integers, sequences → arrays, string keys → objects,
** mixed/sparse tables and cycles → error, depth limit 128, NaN/Inf → null, error objects →
** their message, functions/other userdata → null). Reentrant; state-local caches only.
*/
#ifndef TASKHOST_JSON_H
#define TASKHOST_JSON_H

#include <stddef.h>
#include "base/util.h"

typedef struct lua_State lua_State;

/* Appends the JSON text of the value at idx to out. Returns 0, or -1 with a message. */
int json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);
/* Appends s (n bytes) as a JSON string literal, quotes included (RFC 8259 escaping). */
void json_put_string(struct buf *b, const char *s, size_t n);

/* Decodes s[0..len) and pushes the value (pushes nothing on error). Returns 0, or -1 with
** a message (e.g. "invalid JSON at character 7: ..."). */
int json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen);

/* The Lua module: json.encode(v) → string | nil, err ; json.decode(s) → v | nil, err ;
** json.null, a value that encodes as null (a table field cannot hold nil). */
int luaopen_taskhost_json(lua_State *L);

/* The linked lua-cjson's version (its module table's _VERSION, read from a throwaway state)
** into buf. Returns 0, or -1 when the library does not say (buf then holds ""). */
int json_cjson_version(char *buf, size_t n);

#endif
