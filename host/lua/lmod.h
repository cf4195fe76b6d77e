/*
** lmod.h — the openers of the Lua modules scripts see, one lmod_<name>.c each (as Lua's
** lualib.h declares its luaopen_*). Only linit.c, which lists them for the runtime, and
** tests name them; the runtime finds modules through rt->libs and names none of these.
** Threads: an opener runs on the thread that owns the lua_State it opens into.
*/
#ifndef TASKHOST_LMOD_H
#define TASKHOST_LMOD_H

typedef struct lua_State lua_State;

int luaopen_process(lua_State *L);      /* lmod_process.c */
int luaopen_channel(lua_State *L);      /* lmod_process.c */
int luaopen_payload(lua_State *L);      /* lmod_process.c */
int luaopen_time(lua_State *L);         /* lmod_time.c */
int luaopen_logger(lua_State *L);       /* lmod_logger.c */
int luaopen_tio(lua_State *L);          /* lmod_io.c */
int luaopen_env(lua_State *L);          /* lmod_env.c */
int luaopen_tcoroutine(lua_State *L);   /* lmod_coroutine.c */
int luaopen_http(lua_State *L);         /* lmod_http.c */
int luaopen_queue(lua_State *L);        /* lmod_queue.c */
int luaopen_http_client(lua_State *L);  /* lmod_http_client.c */
int luaopen_uuid(lua_State *L);         /* lmod_uuid.c */
int luaopen_hash(lua_State *L);         /* lmod_hash.c */
int luaopen_base64(lua_State *L);       /* lmod_base64.c */
int luaopen_crypto(lua_State *L);       /* lmod_crypto.c */
int luaopen_events(lua_State *L);       /* lmod_events.c */
int luaopen_registry(lua_State *L);     /* lmod_registry.c */
int luaopen_metrics(lua_State *L);      /* lmod_metrics.c */
int luaopen_system(lua_State *L);       /* lmod_system.c */
int luaopen_funcs(lua_State *L);        /* lmod_funcs.c */
int luaopen_ctx(lua_State *L);          /* lmod_funcs.c */
/* Pushes a Payload (`:data()`) holding the value at vidx (lmod_process.c). */
void lmod_push_payload(lua_State *L, int vidx);
int luaopen_sql(lua_State *L);          /* lmod_sql.c */
/* lmod_errors.c: errors_open sets the global `errors` table (new, wrap, is, call_stack and
** the kinds) in L; luaopen_errors does so and returns it. */
void errors_open(lua_State *L);
int luaopen_errors(lua_State *L);
/* string, with a fast string.format and stoppable patterns (lmod_string.c, lpattern.c); only
** for states made by luaenv_new (the pattern functions ask the state's process whether to
** stop) */
int luaopen_tstring(lua_State *L);

#endif
