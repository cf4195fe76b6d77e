/* test_strmap.c — the locked string map: get/set/replace, growth, writers on many threads. */
#include "base/strmap.h"
#include "t.h"

#include <pthread.h>

TEST(set_get_replace_and_grow) {
  struct strmap *m = strmap_new();
  CHECK(strmap_get(m, "a") == NULL);
  strmap_set(m, "a", "1");
  strmap_set(m, "a", "2");
  char *v = strmap_get(m, "a");
  CHECK_STR(v, "2");
  free(v);
  char k[32], want[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof k, "k%d", i);
    strmap_set(m, k, k + 1);
  }
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof k, "k%d", i);
    snprintf(want, sizeof want, "%d", i);
    v = strmap_get(m, k);
    CHECK_STR(v, want);
    free(v);
  }
  strmap_free(m);
}

static void *writer(void *ud) {
  char k[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(k, sizeof k, "w%d", i % 97);
    strmap_set(ud, k, "x");
    free(strmap_get(ud, k));
  }
  return NULL;
}

TEST(many_threads) {
  struct strmap *m = strmap_new();
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, writer, m);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  char *v = strmap_get(m, "w96");
  CHECK_STR(v, "x");
  free(v);
  strmap_free(m);
}

int main(void) {
  RUN(set_get_replace_and_grow);
  RUN(many_threads);
  return T_DONE();
}
