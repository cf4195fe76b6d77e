/* Unit tests for thstack.c: small stack requests (civetweb's) are raised to the Lua floor,
** big ones kept, and thstack_create's threads really get the floor. */
#define _GNU_SOURCE             /* pthread_getattr_np */
#include "t.h"
#include "base/thstack.h"

#include <pthread.h>

TEST(small_requests_are_raised_to_the_floor) {
  pthread_attr_t a;
  size_t got = 0;
  pthread_attr_init(&a);
  CHECK_INT(pthread_attr_setstacksize(&a, 100 * 1024), 0);
  pthread_attr_getstacksize(&a, &got);
  CHECK_INT(got, THSTACK_LUA);
  CHECK_INT(pthread_attr_setstacksize(&a, 4 * THSTACK_LUA), 0);
  pthread_attr_getstacksize(&a, &got);
  CHECK_INT(got, 4 * THSTACK_LUA);
  pthread_attr_destroy(&a);
}

static void *stack_size(void *arg) {
  pthread_attr_t a;
  if (pthread_getattr_np(pthread_self(), &a) == 0) {
    pthread_attr_getstacksize(&a, arg);
    pthread_attr_destroy(&a);
  }
  return NULL;
}

TEST(created_threads_get_the_floor) {
  pthread_t t;
  size_t got = 0;
  CHECK_INT(thstack_create(&t, stack_size, &got), 0);
  pthread_join(t, NULL);
  CHECK(got >= THSTACK_LUA);
}

int main(void) {
  RUN(small_requests_are_raised_to_the_floor);
  RUN(created_threads_get_the_floor);
  return T_DONE();
}
