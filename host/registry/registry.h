/*
** registry.h — a registry *generation*: every entry loaded from a project's source dir,
** validated against the kind descriptions of registry/kinds.yaml, immutable once built.
** A generation is built beside the running one (hot reload swaps pointers) and reference
** counted: registry_ref/registry_unref may be called from any thread; everything else reads
** an immutable structure and is safe from any thread.
*/
#ifndef TASKHOST_REGISTRY_H
#define TASKHOST_REGISTRY_H

#include <stddef.h>
#include "diag.h"
#include "value/val.h"

struct reg_entry {
  const char *id;          /* "ns:name" */
  const char *ns;
  const char *name;
  const char *kind;        /* e.g. "process.lua" */
  const struct val *data;  /* V_MAP: flat entry data, defaults of the kind filled in,
                              file:// inlined, ${env:..} resolved, bare refs qualified */
  const struct val *meta;  /* V_MAP (possibly empty): file meta merged with entry meta */
  const char *file;        /* registry file that defined it (path relative to the project) */
  int line;
};

struct reg_override {      /* -o ns:entry:field.path=value */
  const char *id;          /* "ns:entry" */
  const char *path;        /* "addr" or "lifecycle.auto_start" or "meta.x" */
  const char *value;       /* parsed as a YAML scalar: true/false/int/float/string */
};

struct reg_opts {
  const char *project_dir; /* paths in diagnostics and entry->file are relative to it */
  const struct reg_override *overrides;
  size_t n_overrides;
  int (*stop)(void *ud);   /* or NULL; polled while a file loads: nonzero stops the load */
  void *stop_ud;           /* (main.c: a pending SIGINT/SIGTERM) */
};

struct registry;

/* Loads every registry file under `srcdir`. Returns 0 and a generation (refcount 1) when
** there was no error; -1 otherwise (problems in d; *out is NULL). Warnings do not fail. */
int registry_load(const char *srcdir, const struct reg_opts *opts, struct registry **out,
                  struct diag *d);

/* Parses "ns:entry:field.path=value" into an override (pointers into a copy of `spec`
** owned by the caller through *storage, free() it). Returns 0 / -1. */
int registry_parse_override(const char *spec, struct reg_override *o, char **storage);

const struct reg_entry *registry_get(const struct registry *r, const char *id);
size_t registry_count(const struct registry *r);
const struct reg_entry *registry_at(const struct registry *r, size_t i);  /* load order */
uint64_t registry_version(const struct registry *r);

struct registry *registry_ref(struct registry *r);
void registry_unref(struct registry *r);

/* Qualifies a reference found in an entry of namespace `ns`: "relay" → "app:relay";
** "app:relay" is returned as given. Result is malloc'd. */
char *registry_qualify(const char *ns, const char *ref);

/* 1 when entry `id` differs between generations a and b: missing from one, another kind,
** other data or meta (inlined sources included), or — for entries that run Lua — a change
** in an entry it refers to (process, host, imports, func), followed recursively. */
int registry_entry_changed(const struct registry *a, const struct registry *b, const char *id);

/* The kind descriptions (registry/kinds.yaml), parsed once. */
const struct val *registry_kinds(void);
int registry_kind_known(const char *kind);

#endif
