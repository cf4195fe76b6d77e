/* Fuzzes the registry file reader (reg_read_yaml in reg_read.c: YAML and JSON text → val
** tree) and, when the text holds entries of known kinds, the kinds validation of each entry
** (reg_check_entry: types, defaults, reference qualification) and ${env:..} substitution.
** Entry data and meta are split from an item the way registry.c does it. */
#include "registry/reg_internal.h"
#include "registry/registry.h"
#include "value/val.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void on_ref(void *ud, const struct val *ref, const char *path, const struct val *allowed) {
  (void)val_str(ref, NULL);
}

static char *env_lookup(void *ud, const char *name) {
  return strcmp(name, "SET") == 0 ? strdup("value") : NULL;
}

static int structural(const char *key) {
  return strcmp(key, "name") == 0 || strcmp(key, "kind") == 0 || strcmp(key, "meta") == 0;
}

static struct val *entry_data(const struct val *item) {
  const struct val *d = val_get(item, "data");
  if (d && d->type == V_MAP) return val_copy(d);
  struct val *data = val_new(V_MAP, item->file, item->line);
  for (size_t i = 0; i < val_len(item); i++)
    if (!structural(val_key_at(item, i))) val_map_set(data, val_key_at(item, i), val_copy(val_at(item, i)));
  return data;
}

static void check_entry(const struct val *item, const char *ns) {
  const char *kind = val_str(val_get(item, "kind"), NULL);
  const struct val *own = val_get(item, "meta");
  const struct val *spec = kind ? reg_kind_spec(kind) : NULL;
  if (item->type != V_MAP || !spec || (own && own->type != V_MAP)) return;
  struct val *data = entry_data(item);
  struct val *meta = own ? val_copy(own) : val_new(V_MAP, NULL, 0);
  struct diag d;
  diag_init(&d);
  reg_subst_env(data, env_lookup, NULL, &d);
  struct reg_check c = {&d, "fuzz:entry", ns, "fuzz.yaml", 1, on_ref, NULL};
  reg_check_entry(spec, data, meta, &c);
  diag_free(&d);
  val_free(data);
  val_free(meta);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  registry_kinds();            /* parse kinds.yaml once, outside the measured inputs */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size ? size : 1);     /* exact size: ASan sees any read past len */
  memcpy(text, data, size);
  int line = -1;
  char err[512];
  struct reg_budget b;
  reg_budget_init(&b, NULL);                 /* the loader's own budgets, as for a real file */
  struct val *root = reg_read_yaml(text, size, "fuzz.yaml", &b, &line, err, sizeof err);
  if (!root && (line < 0 || !memchr(err, '\0', sizeof err))) abort();
  const char *ns = val_str(val_get(root, "namespace"), "fuzz");
  const struct val *entries = val_get(root, "entries");
  if (root && root->type == V_MAP && entries && entries->type == V_LIST)
    for (size_t i = 0; i < val_len(entries); i++) check_entry(val_at(entries, i), ns);
  else if (root && root->type == V_MAP)
    check_entry(root, ns);
  val_free(root);
  free(text);
  return 0;
}
