/*
** code.h — the compiled Lua of one registry generation: every function.lua, process.lua and
** library.lua entry is stripped of type annotations and compiled once (in a scratch state)
** into bytecode; states then load the bytecode, never the source. Immutable after build;
** refcounted; readable from any thread.
*/
#ifndef TASKHOST_CODE_H
#define TASKHOST_CODE_H

#include <stddef.h>

typedef struct lua_State lua_State;
struct registry;
struct reg_entry;
struct diag;
struct codeset;

struct code {
  const struct reg_entry *e;
  struct codeset *set;
  char *bc;                /* bytecode */
  size_t bclen;
  char *chunkname;         /* "@src/relay.lua" */
  const char *method;      /* exported function name, NULL to use the chunk's return value */
};

/* Compiles every Lua entry of r. Returns a codeset (refcount 1; it holds a reference to r),
** or NULL with every compile error in d as "file:line: message". */
struct codeset *codeset_build(struct registry *r, const char *project_dir, struct diag *d);
const struct code *codeset_get(const struct codeset *cs, const char *id);
struct registry *codeset_registry(const struct codeset *cs);
struct codeset *codeset_ref(struct codeset *cs);
void codeset_unref(struct codeset *cs);

/* Pushes the chunk's function (mode "b"). 0, or -1 with the message pushed. */
int code_load(lua_State *L, const struct code *c);
/* Is `module` listed in the entry's `modules:`? Returns 1/0. */
int code_allows_module(const struct code *c, const char *module);
/* The entry id an `imports:` alias points to, or NULL. */
const char *code_import(const struct code *c, const char *alias);

#endif
