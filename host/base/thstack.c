/*
** thstack.c — see thstack.h.
*/
#include "thstack.h"

#include <dlfcn.h>
#include <errno.h>
#include <sys/resource.h>

typedef int (*setstacksize_fn)(pthread_attr_t *, size_t);

/* Interposes libc's: every thread of the process (civetweb's included) gets THSTACK_LUA
** at least. Resolved on first use; dlsym is thread-safe. */
int pthread_attr_setstacksize(pthread_attr_t *attr, size_t size) {
  static _Atomic(setstacksize_fn) real;
  setstacksize_fn f = real;
  if (!f) {
    f = (setstacksize_fn)dlsym(RTLD_NEXT, "pthread_attr_setstacksize");
    if (!f) return ENOSYS;
    real = f;
  }
  return f(attr, size < THSTACK_LUA ? THSTACK_LUA : size);
}

int thstack_create(pthread_t *t, void *(*fn)(void *), void *arg) {
  pthread_attr_t a;
  int rc = pthread_attr_init(&a);
  if (rc) return rc;
  rc = pthread_attr_setstacksize(&a, THSTACK_LUA);
  if (!rc) rc = pthread_create(t, &a, fn, arg);
  pthread_attr_destroy(&a);
  return rc;
}

void thstack_main(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_STACK, &r) != 0 || r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= THSTACK_LUA)
    return;
  r.rlim_cur = r.rlim_max == RLIM_INFINITY || r.rlim_max >= THSTACK_LUA ? THSTACK_LUA : r.rlim_max;
  setrlimit(RLIMIT_STACK, &r);
}
