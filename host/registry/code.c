/*
** code.c — see code.h. Compilation runs on the thread that builds the generation (main, or
** the reload thread later); the result is immutable.
*/
#include "code.h"
#include "base/hmap.h"
#include "registry.h"
#include "strip.h"
#include "base/util.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct codeset {
  _Atomic int refs;
  struct registry *reg;
  struct code *codes;
  size_t n;
  struct hmap byid;        /* fnv(id) → struct code * ; collisions checked by strcmp */
  int collisions;          /* set if two ids hash alike: lookups fall back to a scan */
};

static const char *const lua_kinds[] = {"function.lua", "process.lua", "library.lua"};

static int is_lua_kind(const char *kind) {
  for (size_t i = 0; i < countof(lua_kinds); i++)
    if (strcmp(kind, lua_kinds[i]) == 0) return 1;
  return 0;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  buf_add(ud, p, n);
  return 0;
}

/* "src/relay.lua:12: msg" comes out of Lua when the chunk name is "@src/relay.lua". */
static char *chunk_name(const struct reg_entry *e, const struct val *src) {
  struct buf b;
  buf_init(&b);
  if (src->u.str.origin) buf_printf(&b, "@%s", src->u.str.origin);
  else buf_printf(&b, "=[%s]", e->id);
  return buf_steal(&b);
}

static int compile_one(lua_State *L, struct code *c, struct diag *d) {
  const struct reg_entry *e = c->e;
  const struct val *src = val_get(e->data, "source");
  if (!src || src->type != V_STR) {
    diag_add(d, 1, e->file, e->line, "%s: a %s entry needs a `source`", e->id, e->kind);
    return -1;
  }
  c->chunkname = chunk_name(e, src);
  char *plain = NULL, err[256];
  if (strip_types(src->u.str.s, src->u.str.len, &plain, err, sizeof err) != 0) {
    diag_add(d, 1, src->u.str.origin ? src->u.str.origin : e->file, 0, "%s", err);
    return -1;
  }
  int rc = luaL_loadbufferx(L, plain, src->u.str.len, c->chunkname, "t");
  free(plain);
  if (rc != LUA_OK) {
    diag_add(d, 1, NULL, 0, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  struct buf b;
  buf_init(&b);
  lua_dump(L, dump_writer, &b, 0);
  lua_pop(L, 1);
  c->bclen = b.len;
  c->bc = buf_steal(&b);
  return 0;
}

static void index_code(struct codeset *cs, struct code *c) {
  uint64_t h = str_hash(c->e->id);
  if (hmap_get(&cs->byid, h)) cs->collisions = 1;
  else hmap_put(&cs->byid, h, c);
}

struct codeset *codeset_build(struct registry *r, const char *project_dir, struct diag *d) {
  struct codeset *cs = xcalloc(1, sizeof *cs);
  atomic_store(&cs->refs, 1);
  cs->reg = registry_ref(r);
  cs->codes = xcalloc(registry_count(r), sizeof *cs->codes);
  hmap_init(&cs->byid);
  lua_State *L = luaL_newstate();
  int failed = 0;
  for (size_t i = 0; i < registry_count(r); i++) {
    const struct reg_entry *e = registry_at(r, i);
    if (!is_lua_kind(e->kind)) continue;
    struct code *c = &cs->codes[cs->n++];
    c->e = e;
    c->set = cs;
    c->method = val_str(val_get(e->data, "method"), NULL);
    if (compile_one(L, c, d) != 0) failed = 1;
    else index_code(cs, c);
  }
  lua_close(L);
  if (failed) { codeset_unref(cs); return NULL; }
  return cs;
}

const struct code *codeset_get(const struct codeset *cs, const char *id) {
  if (!cs->collisions) {
    const struct code *c = hmap_get(&cs->byid, str_hash(id));
    return c && strcmp(c->e->id, id) == 0 ? c : NULL;
  }
  for (size_t i = 0; i < cs->n; i++)
    if (strcmp(cs->codes[i].e->id, id) == 0) return &cs->codes[i];
  return NULL;
}

struct registry *codeset_registry(const struct codeset *cs) { return cs->reg; }

struct codeset *codeset_ref(struct codeset *cs) {
  atomic_fetch_add(&cs->refs, 1);
  return cs;
}

void codeset_unref(struct codeset *cs) {
  if (!cs || atomic_fetch_sub(&cs->refs, 1) != 1) return;
  for (size_t i = 0; i < cs->n; i++) {
    free(cs->codes[i].bc);
    free(cs->codes[i].chunkname);
  }
  free(cs->codes);
  hmap_free(&cs->byid);
  registry_unref(cs->reg);
  free(cs);
}

int code_load(lua_State *L, const struct code *c) {
  return luaL_loadbufferx(L, c->bc, c->bclen, c->chunkname, "b") == LUA_OK ? 0 : -1;
}

int code_allows_module(const struct code *c, const char *module) {
  const struct val *mods = val_get(c->e->data, "modules");
  for (size_t i = 0; i < val_len(mods); i++)
    if (strcmp(val_str(val_at(mods, i), ""), module) == 0) return 1;
  return 0;
}

const char *code_import(const struct code *c, const char *alias) {
  return val_str(val_get(val_get(c->e->data, "imports"), alias), NULL);
}
