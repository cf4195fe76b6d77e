/*
** errors.h — error objects (wippy-compat.md §3.4): userdata with metatable ERROR_MT and
** methods :message() :kind() :retryable() :details() :stack(); tostring() gives the message.
** All runtime APIs return these as the `err` of `nil, err`. Implemented by errors.c; the
** `errors` Lua module (errors.new, wrap, is, call_stack, the kinds) is lmod_errors.c.
** Threads: state-local and reentrant; the caller owns the lua_State.
*/
#ifndef TASKHOST_ERRORS_H
#define TASKHOST_ERRORS_H

typedef struct lua_State lua_State;

#define ERROR_MT "taskhost.error"

/* Kinds are strings equal to their names: errors.NOT_FOUND == "NOT_FOUND". */
#define EK_UNKNOWN "UNKNOWN"
#define EK_INVALID "INVALID"
#define EK_NOT_FOUND "NOT_FOUND"
#define EK_ALREADY_EXISTS "ALREADY_EXISTS"
#define EK_PERMISSION_DENIED "PERMISSION_DENIED"
#define EK_TIMEOUT "TIMEOUT"
#define EK_CANCELED "CANCELED"
#define EK_UNAVAILABLE "UNAVAILABLE"
#define EK_INTERNAL "INTERNAL"
#define EK_CONFLICT "CONFLICT"
#define EK_RATE_LIMITED "RATE_LIMITED"

/* Pushes a new error object (message formatted with printf rules). Returns 1. */
int errors_push(lua_State *L, const char *kind, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* Pushes nil and a new error object: the `nil, err` idiom. Returns 2. */
int errors_fail(lua_State *L, const char *kind, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* Pushes an error object built from the value at idx: an error object is pushed as it is,
** anything else becomes an error of kind UNKNOWN whose message is tostring(value). */
void errors_from_value(lua_State *L, int idx);

int errors_is(lua_State *L, int idx);                 /* 1 if an error object */
const char *errors_message(lua_State *L, int idx);    /* NULL if not an error object */
const char *errors_kind(lua_State *L, int idx);       /* NULL if not an error object */

/* Added for seri (copying error objects between states). errors_push_fields pushes the five
** fields of the error object at idx (which must be one): message, kind, retryable (boolean
** or nil), details (table or nil), stack (string or nil). errors_build pops those five values
** and pushes a new error object built from them, registering ERROR_MT on demand; it returns
** 0, or -1 when a field has the wrong type (the five values are popped, nothing pushed). */
void errors_push_fields(lua_State *L, int idx);
int errors_build(lua_State *L);

#endif
