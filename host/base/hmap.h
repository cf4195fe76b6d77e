/*
** hmap.h — an open-addressing hash map from non-zero uint64 keys to pointers (linear
** probing, backward-shift deletion, power-of-two capacity). Not thread-safe: the owner
** guards it (the pid table with its lock, a process's session map by being the process).
*/
#ifndef TASKHOST_HMAP_H
#define TASKHOST_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap {
  uint64_t *keys;   /* 0 = empty slot */
  void **vals;
  size_t n, cap;
};

void hmap_init(struct hmap *m);
void hmap_free(struct hmap *m);
void *hmap_get(const struct hmap *m, uint64_t key);
void hmap_put(struct hmap *m, uint64_t key, void *val);   /* key != 0; replaces */
void *hmap_del(struct hmap *m, uint64_t key);             /* returns the removed value */
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->keys[i]) ... */

#endif
