/* Unit tests for hmap.c: put/get/replace/delete with probe chains, growth. */
#include "base/hmap.h"
#include "t.h"

#include <stdint.h>

TEST(put_get_replace_delete) {
  struct hmap m;
  hmap_init(&m);
  CHECK(hmap_get(&m, 5) == NULL);
  CHECK(hmap_del(&m, 5) == NULL);
  hmap_put(&m, 5, (void *)50);
  hmap_put(&m, 5, (void *)55);
  CHECK_INT(m.n, 1);
  CHECK(hmap_get(&m, 5) == (void *)55);
  CHECK(hmap_del(&m, 5) == (void *)55);
  CHECK(hmap_get(&m, 5) == NULL);
  CHECK_INT(m.n, 0);
  hmap_free(&m);
}

TEST(many_keys_survive_growth_and_interleaved_deletes) {
  struct hmap m;
  hmap_init(&m);
  const uint64_t n = 20000;
  for (uint64_t k = 1; k <= n; k++) hmap_put(&m, k * 0x10000, (void *)(uintptr_t)k);
  for (uint64_t k = 1; k <= n; k += 2) CHECK(hmap_del(&m, k * 0x10000) == (void *)(uintptr_t)k);
  int bad = 0;
  for (uint64_t k = 1; k <= n; k++) {
    void *v = hmap_get(&m, k * 0x10000);
    if ((k % 2 == 1 && v) || (k % 2 == 0 && v != (void *)(uintptr_t)k)) bad++;
  }
  CHECK_INT(bad, 0);
  CHECK_INT(m.n, n / 2);
  hmap_free(&m);
}

int main(void) {
  RUN(put_get_replace_delete);
  RUN(many_keys_survive_growth_and_interleaved_deletes);
  return T_DONE();
}
