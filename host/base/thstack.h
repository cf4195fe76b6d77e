/*
** thstack.h — stack sizes of the threads that run Lua.
**
** Why: Lua 5.4 lets a script nest 200 C-level calls (LUAI_MAXCCALLS: pcall, coroutine
** resume, string.gsub callbacks, metamethods such as __tostring and __concat) before it
** raises "C stack overflow"; 200 string.gsub levels take ~512 KB of C stack. Debian's
** libcivetweb creates its worker threads with an explicit pthread_attr_setstacksize of its
** build default (~100 KB) and has no option to change it, so a recursive handler crashed
** the host. This module (1) interposes pthread_attr_setstacksize: the definition in our
** executable wins over libc's for libcivetweb's call, raises a request below
** THSTACK_LUA to THSTACK_LUA and forwards through dlsym(RTLD_NEXT); (2) creates our own
** Lua-running threads (process-host workers, consumer threads) with THSTACK_LUA; and
** (3) lets the main thread (registry files, function-state boot) grow to THSTACK_LUA even
** under a small `ulimit -s`. Stacks are reserved address space; only touched pages cost
** memory.
** Threads: any.
*/
#ifndef TASKHOST_THSTACK_H
#define TASKHOST_THSTACK_H

#include <pthread.h>
#include <stddef.h>

/* 8x what the deepest measured chain needs; ASan/UBSan frames are several times larger. */
#ifdef TASKHOST_SANITIZE
#define THSTACK_LUA ((size_t)16 << 20)
#else
#define THSTACK_LUA ((size_t)4 << 20)
#endif

/* pthread_create with a THSTACK_LUA stack: 0 or an errno value. */
int thstack_create(pthread_t *t, void *(*fn)(void *), void *arg);
/* Raises the soft RLIMIT_STACK of the process to THSTACK_LUA when it is lower (the main
** thread's stack grows up to the current limit). Call early in main. */
void thstack_main(void);

#endif
