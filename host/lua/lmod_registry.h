/*
** lmod_registry.h — what the two files of the `registry` module share: lmod_registry.c
** (reads, snapshots, versions, history) and lmod_regchange.c (change sets, apply,
** apply_version, build_delta). Threads: the calling state's (see the .c files).
*/
#ifndef TASKHOST_LMOD_REGISTRY_H
#define TASKHOST_LMOD_REGISTRY_H

#include <stdint.h>

typedef struct lua_State lua_State;
struct reg_entry;
struct reg_service;
struct reg_version;
struct registry;

#define SNAP_MT "taskhost.registry.snapshot"
#define CHANGES_MT "taskhost.registry.changes"
#define VERSION_MT "taskhost.registry.version"

/* The current generation, with a reference (raises when there is none). */
struct registry *lreg_current(lua_State *L);
/* The app's registry service, or NULL (the host is stopping, or a bare runtime). */
const struct reg_service *lreg_service(lua_State *L);
/* Pushes a copy of e as {id, kind, meta, data}. */
void lreg_push_entry(lua_State *L, const struct reg_entry *e);
void lreg_push_version(lua_State *L, const struct reg_version *v);
/* A userdata owning the reference r (released by the collector); returns its slot. */
struct registry **lreg_push_snapshot(lua_State *L, struct registry *r);
struct registry *lreg_check_snap(lua_State *L, int idx);
/* Registers metatable `name` with methods as __index (and gc as __gc unless NULL). */
struct luaL_Reg;
void lreg_new_mt(lua_State *L, const char *name, const struct luaL_Reg *methods, int (*gc)(lua_State *L));

/* lmod_regchange.c */
int lreg_changes_new(lua_State *L);       /* snapshot:changes() */
int lreg_apply_version(lua_State *L);     /* registry.apply_version(version) */
int lreg_build_delta(lua_State *L);       /* registry.build_delta(from, to) */
void lreg_open_changes(lua_State *L);     /* registers CHANGES_MT */

#endif
