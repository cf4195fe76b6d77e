/*
** reg_diff.c — comparing an entry between two registry generations (hot reload decides
** from it what to restart). See registry_entry_changed in registry.h.
** Threads: reads immutable generations; any thread.
*/
#include "registry.h"
#include "value/val.h"

#include <string.h>

/* The data fields that name entries whose change changes the referring entry's behaviour. */
static const char *const ref_fields[] = {"process", "host", "func", "queue"};

static int changed(const struct registry *a, const struct registry *b, const char *id, int depth);

static int refs_changed(const struct registry *a, const struct registry *b,
                        const struct reg_entry *e, int depth) {
  for (size_t i = 0; i < sizeof ref_fields / sizeof ref_fields[0]; i++) {
    const char *ref = val_str(val_get(e->data, ref_fields[i]), NULL);
    if (ref && changed(a, b, ref, depth + 1)) return 1;
  }
  const struct val *imports = val_get(e->data, "imports");
  for (size_t i = 0; i < val_len(imports); i++) {
    const char *ref = val_str(val_at(imports, i), NULL);
    if (ref && changed(a, b, ref, depth + 1)) return 1;
  }
  return 0;
}

static int changed(const struct registry *a, const struct registry *b, const char *id, int depth) {
  const struct reg_entry *x = registry_get(a, id), *y = registry_get(b, id);
  if (!x || !y) return x != y;
  if (depth > 16) return 0;                      /* a reference cycle: the rest was compared */
  if (strcmp(x->kind, y->kind) != 0 || !val_equal(x->data, y->data) || !val_equal(x->meta, y->meta))
    return 1;
  return refs_changed(a, b, x, depth);
}

int registry_entry_changed(const struct registry *a, const struct registry *b, const char *id) {
  return changed(a, b, id, 0);
}
