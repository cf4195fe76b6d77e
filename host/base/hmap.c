/* hmap.c — see hmap.h. */
#include "hmap.h"
#include "util.h"

#include <stdlib.h>

static size_t slot(uint64_t key, size_t cap) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return (size_t)key & (cap - 1);
}

void hmap_init(struct hmap *m) { m->keys = NULL; m->vals = NULL; m->n = m->cap = 0; }

void hmap_free(struct hmap *m) { free(m->keys); free(m->vals); hmap_init(m); }

void *hmap_get(const struct hmap *m, uint64_t key) {
  if (!m->cap) return NULL;
  for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == key) return m->vals[i];
    if (m->keys[i] == 0) return NULL;
  }
}

static void grow(struct hmap *m) {
  struct hmap old = *m;
  m->cap = old.cap ? old.cap * 2 : 16;
  m->keys = xcalloc(m->cap, sizeof *m->keys);
  m->vals = xcalloc(m->cap, sizeof *m->vals);
  m->n = 0;
  for (size_t i = 0; i < old.cap; i++)
    if (old.keys[i]) hmap_put(m, old.keys[i], old.vals[i]);
  free(old.keys);
  free(old.vals);
}

void hmap_put(struct hmap *m, uint64_t key, void *val) {
  if ((m->n + 1) * 4 > m->cap * 3) grow(m);
  size_t i = slot(key, m->cap);
  while (m->keys[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
  if (!m->keys[i]) m->n++;
  m->keys[i] = key;
  m->vals[i] = val;
}

void *hmap_del(struct hmap *m, uint64_t key) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1, i = slot(key, m->cap);
  while (m->keys[i] != key) {
    if (!m->keys[i]) return NULL;
    i = (i + 1) & mask;
  }
  void *val = m->vals[i];
  /* backward-shift: move later members of the probe chain into the hole */
  for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
    size_t home = slot(m->keys[j], m->cap);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->keys[i] = m->keys[j];
      m->vals[i] = m->vals[j];
      i = j;
    }
  }
  m->keys[i] = 0;
  m->vals[i] = NULL;
  m->n--;
  return val;
}
